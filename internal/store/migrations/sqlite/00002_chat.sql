-- +goose Up
-- One generation at a time per conversation: the assistant message being
-- generated, set and cleared with conditional updates.
ALTER TABLE conversations ADD COLUMN generating_message_id TEXT;
ALTER TABLE conversations ADD COLUMN last_message_preview TEXT NOT NULL DEFAULT '';
ALTER TABLE conversations ADD COLUMN title_generated INTEGER NOT NULL DEFAULT 0;

-- An assistant message answers the user message in parent_id. A running
-- generation holds a lease that its instance renews; the sweeper of any
-- instance interrupts generations whose lease expired (their instance died).
ALTER TABLE messages ADD COLUMN parent_id TEXT;
ALTER TABLE messages ADD COLUMN max_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN finish_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN lease_owner TEXT;
ALTER TABLE messages ADD COLUMN lease_expires_at BIGINT;
ALTER TABLE messages ADD COLUMN completed_at BIGINT;
-- A stop asked on another instance; the generating instance polls for it.
ALTER TABLE messages ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_running_lease ON messages (lease_expires_at) WHERE status IN ('pending', 'streaming');
CREATE INDEX messages_parent ON messages (parent_id);

-- +goose Down
DROP INDEX messages_parent;
DROP INDEX messages_running_lease;
ALTER TABLE messages DROP COLUMN cancel_requested;
ALTER TABLE messages DROP COLUMN completed_at;
ALTER TABLE messages DROP COLUMN lease_expires_at;
ALTER TABLE messages DROP COLUMN lease_owner;
ALTER TABLE messages DROP COLUMN finish_reason;
ALTER TABLE messages DROP COLUMN max_tokens;
ALTER TABLE messages DROP COLUMN parent_id;
ALTER TABLE conversations DROP COLUMN title_generated;
ALTER TABLE conversations DROP COLUMN last_message_preview;
ALTER TABLE conversations DROP COLUMN generating_message_id;
