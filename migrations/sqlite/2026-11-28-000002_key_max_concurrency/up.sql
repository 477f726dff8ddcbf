-- Per-key limit on requests in flight at once (NULL: unlimited).
ALTER TABLE api_keys ADD COLUMN max_concurrency BIGINT;
