-- +goose Up
-- Messages form a tree through parent_id: an assistant message answers the
-- user message in parent_id, and a user message follows the assistant
-- message in parent_id (none for the first). Versions of a message
-- (regenerated replies, edited questions) are siblings: they share a
-- parent. The conversation records the leaf it shows; its messages are the
-- path from that leaf up to the root.
ALTER TABLE conversations ADD COLUMN leaf_message_id TEXT;

-- Existing conversations are one line: each user message follows the reply
-- before it, and the newest message is the leaf.
UPDATE messages SET parent_id = (
    SELECT a.id FROM messages a
    WHERE a.conversation_id = messages.conversation_id AND a.role = 'assistant'
      AND (a.created_at < messages.created_at OR (a.created_at = messages.created_at AND a.id < messages.id))
    ORDER BY a.created_at DESC, a.id DESC LIMIT 1)
WHERE role = 'user' AND parent_id IS NULL;
UPDATE conversations SET leaf_message_id = (
    SELECT m.id FROM messages m WHERE m.conversation_id = conversations.id
    ORDER BY m.created_at DESC, m.id DESC LIMIT 1);

-- The per-message actions (regenerate, continue, edit) a client sent with
-- its own request id: a retry with the same id answers with the first
-- result. The rows go with their conversation.
CREATE TABLE message_actions (
    user_id           TEXT NOT NULL REFERENCES users (id),
    client_request_id TEXT NOT NULL,
    conversation_id   TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    action            TEXT NOT NULL CHECK (action IN ('regenerate', 'continue', 'edit')),
    target_id         TEXT NOT NULL,
    content           TEXT NOT NULL DEFAULT '',
    user_message_id   TEXT,
    reply_id          TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_request_id)
);
CREATE INDEX message_actions_conversation ON message_actions (conversation_id);

-- +goose Down
DROP TABLE message_actions;
ALTER TABLE conversations DROP COLUMN leaf_message_id;
