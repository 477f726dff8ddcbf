-- Back to request ids as the unique key (fails if a request id was billed more than once).
ALTER TABLE usage_events ADD CONSTRAINT usage_events_request_id_key UNIQUE (request_id);
ALTER TABLE usage_events DROP CONSTRAINT usage_events_event_id_key;
ALTER TABLE usage_events DROP COLUMN event_id;
