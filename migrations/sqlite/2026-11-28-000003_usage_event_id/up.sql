-- Usage rows are made idempotent by an id the gateway makes (`event_id`, a time-ordered
-- UUIDv7), no longer by the request id: a client may send the same `x-request-id` twice, and
-- each request must still be billed. Time-ordered ids also append to their index instead of
-- touching a random page per row. SQLite cannot drop a column's UNIQUE, so the table is rebuilt.
CREATE TABLE usage_events_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    request_id TEXT NOT NULL,
    key_id BIGINT REFERENCES api_keys(id),
    model TEXT NOT NULL,
    service TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    api TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    estimated BOOLEAN NOT NULL,
    cached BOOLEAN NOT NULL,
    status INTEGER NOT NULL,
    latency_ms BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO usage_events_new (id, event_id, request_id, key_id, model, service, endpoint, api,
    prompt_tokens, completion_tokens, estimated, cached, status, latency_ms, created_at)
SELECT id, request_id, request_id, key_id, model, service, endpoint, api,
    prompt_tokens, completion_tokens, estimated, cached, status, latency_ms, created_at
FROM usage_events;
DROP TABLE usage_events;
ALTER TABLE usage_events_new RENAME TO usage_events;
CREATE INDEX usage_events_key_time ON usage_events (key_id, created_at);
CREATE INDEX usage_events_time ON usage_events (created_at);
