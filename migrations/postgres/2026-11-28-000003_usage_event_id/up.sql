-- Usage rows are made idempotent by an id the gateway makes (`event_id`, a time-ordered
-- UUIDv7), no longer by the request id: a client may send the same `x-request-id` twice, and
-- each request must still be billed. Existing rows keep their request id as their event id.
ALTER TABLE usage_events ADD COLUMN event_id TEXT;
UPDATE usage_events SET event_id = request_id;
ALTER TABLE usage_events ALTER COLUMN event_id SET NOT NULL;
ALTER TABLE usage_events ADD CONSTRAINT usage_events_event_id_key UNIQUE (event_id);
ALTER TABLE usage_events DROP CONSTRAINT usage_events_request_id_key;
