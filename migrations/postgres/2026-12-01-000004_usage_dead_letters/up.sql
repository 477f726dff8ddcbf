-- Usage events the database refused for themselves (not for being away): the writer sets them
-- aside here so one bad row never blocks the others. `event` is the row as JSON (control
-- characters escaped), `error` what the database said; an operator inspects and replays them.
CREATE TABLE usage_dead_letters (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    error TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
