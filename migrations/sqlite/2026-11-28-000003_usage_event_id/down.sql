-- Back to request ids as the unique key (fails if a request id was billed more than once).
CREATE TABLE usage_events_old (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
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
INSERT INTO usage_events_old (id, request_id, key_id, model, service, endpoint, api,
    prompt_tokens, completion_tokens, estimated, cached, status, latency_ms, created_at)
SELECT id, request_id, key_id, model, service, endpoint, api,
    prompt_tokens, completion_tokens, estimated, cached, status, latency_ms, created_at
FROM usage_events;
DROP TABLE usage_events;
ALTER TABLE usage_events_old RENAME TO usage_events;
CREATE INDEX usage_events_key_time ON usage_events (key_id, created_at);
CREATE INDEX usage_events_time ON usage_events (created_at);
