-- +goose Up
-- A send counts its user's running replies (--max-replies-per-user): find
-- them by user among the running ones, instead of scanning every running
-- reply of every user.
CREATE INDEX messages_running_user ON messages (user_id) WHERE status IN ('pending', 'streaming');

-- +goose Down
DROP INDEX messages_running_user;
