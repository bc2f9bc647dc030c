-- +goose Up
-- Request-rate counters shared by every instance: one row per limited key
-- (a user, a client address), counting the hits of its current fixed
-- window. Each request updates its row with one atomic upsert; rows whose
-- window has passed are pruned.
CREATE TABLE rate_limits (
    bucket TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    hits BIGINT NOT NULL
);
CREATE INDEX rate_limits_window_start ON rate_limits (window_start);

-- +goose Down
DROP TABLE rate_limits;
