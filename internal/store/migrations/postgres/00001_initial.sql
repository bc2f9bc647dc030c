-- +goose Up
-- Users of the app. Local users sign up with email + password; Clerk users
-- are keyed by their Clerk id. A deleted user keeps its row (a tombstone) so
-- that a late webhook cannot bring it back and the ledger stays whole.
CREATE TABLE users (
    id                  TEXT PRIMARY KEY,
    provider            TEXT NOT NULL CHECK (provider IN ('local', 'clerk')),
    external_id         TEXT,
    email               TEXT,
    email_normalized    TEXT,
    name                TEXT NOT NULL DEFAULT '',
    password_hash       TEXT,
    credits_balance     BIGINT NOT NULL DEFAULT 0,
    credits_reserved    BIGINT NOT NULL DEFAULT 0,
    external_updated_at BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    deleted_at          BIGINT,
    CONSTRAINT users_credits_never_negative CHECK (credits_reserved >= 0 AND credits_balance >= credits_reserved)
);
CREATE UNIQUE INDEX users_provider_external_id ON users (provider, external_id) WHERE external_id IS NOT NULL;
CREATE UNIQUE INDEX users_local_email ON users (email_normalized) WHERE provider = 'local';
CREATE INDEX users_email_normalized ON users (email_normalized);

-- Bearer sessions of local accounts. Only the SHA-256 of the token is kept.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Invite codes for invite-only sign-up, made with `luna invites create`.
CREATE TABLE invites (
    code          TEXT PRIMARY KEY,
    max_uses      INTEGER NOT NULL CHECK (max_uses > 0),
    uses          INTEGER NOT NULL DEFAULT 0,
    extra_credits BIGINT NOT NULL DEFAULT 0 CHECK (extra_credits >= 0),
    note          TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    CONSTRAINT invites_uses_within_limit CHECK (uses >= 0 AND uses <= max_uses)
);
CREATE TABLE invite_redemptions (
    invite_code TEXT NOT NULL REFERENCES invites (code),
    user_id     TEXT NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (invite_code, user_id)
);

-- Two-phase credit holds: a reservation is active until it is captured,
-- released, or voided by the expiry sweeper.
CREATE TABLE credit_reservations (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id),
    amount          BIGINT NOT NULL CHECK (amount > 0),
    captured        BIGINT,
    status          TEXT NOT NULL CHECK (status IN ('active', 'captured', 'released', 'expired')),
    reference       TEXT NOT NULL DEFAULT '',
    expires_at      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    settled_at      BIGINT,
    CONSTRAINT credit_reservations_capture_within_amount CHECK (captured IS NULL OR (captured >= 0 AND captured <= amount))
);
CREATE INDEX credit_reservations_active_expiry ON credit_reservations (expires_at) WHERE status = 'active';
CREATE INDEX credit_reservations_user ON credit_reservations (user_id);

-- The append-only credit ledger. Every change of a user's balance or
-- reserved amount is one row; users.credits_* are the running sums and
-- `luna credits audit` proves they match.
CREATE TABLE credit_entries (
    id              BIGSERIAL PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id),
    kind            TEXT NOT NULL CHECK (kind IN ('grant', 'reserve', 'capture', 'release', 'expire', 'adjust')),
    balance_delta   BIGINT NOT NULL,
    reserved_delta  BIGINT NOT NULL,
    reservation_id  TEXT REFERENCES credit_reservations (id),
    idempotency_key TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    reference       TEXT NOT NULL DEFAULT '',
    note            TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    CONSTRAINT credit_entries_idempotency UNIQUE (user_id, idempotency_key)
);
CREATE INDEX credit_entries_user ON credit_entries (user_id, id);
CREATE INDEX credit_entries_reservation ON credit_entries (reservation_id);

-- +goose StatementBegin
CREATE FUNCTION credit_entries_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'credit_entries is append-only';
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
CREATE TRIGGER credit_entries_no_update BEFORE UPDATE OR DELETE ON credit_entries
    FOR EACH ROW EXECUTE FUNCTION credit_entries_append_only();

-- Operator-defined models, synced from the models file at start-up.
CREATE TABLE models (
    id                     TEXT PRIMARY KEY,
    display_name           TEXT NOT NULL,
    description            TEXT NOT NULL DEFAULT '',
    base_url               TEXT NOT NULL,
    api_key                TEXT NOT NULL DEFAULT '',
    served_model_name      TEXT NOT NULL,
    context_tokens         INTEGER NOT NULL CHECK (context_tokens > 0),
    max_output_tokens      INTEGER NOT NULL CHECK (max_output_tokens > 0),
    millicredits_per_1k    BIGINT NOT NULL CHECK (millicredits_per_1k >= 0),
    system_prompt          TEXT NOT NULL DEFAULT '',
    connect_timeout_ms     BIGINT NOT NULL DEFAULT 0,
    first_token_timeout_ms BIGINT NOT NULL DEFAULT 0,
    demo                   BOOLEAN NOT NULL DEFAULT FALSE,
    active                 BOOLEAN NOT NULL DEFAULT TRUE,
    sort_order             INTEGER NOT NULL DEFAULT 0,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);

CREATE TABLE conversations (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    model_id   TEXT NOT NULL REFERENCES models (id),
    title      TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conversations_user_updated ON conversations (user_id, updated_at DESC, id DESC);

CREATE TABLE messages (
    id                TEXT PRIMARY KEY,
    conversation_id   TEXT NOT NULL REFERENCES conversations (id),
    user_id           TEXT NOT NULL REFERENCES users (id),
    role              TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content           TEXT NOT NULL DEFAULT '',
    status            TEXT NOT NULL CHECK (status IN ('complete', 'pending', 'streaming', 'error', 'interrupted', 'cancelled')),
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    credits_charged   BIGINT NOT NULL DEFAULT 0,
    error_code        TEXT NOT NULL DEFAULT '',
    error_message     TEXT NOT NULL DEFAULT '',
    reservation_id    TEXT REFERENCES credit_reservations (id),
    client_message_id TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX messages_conversation_created ON messages (conversation_id, created_at, id);
CREATE UNIQUE INDEX messages_client_id ON messages (conversation_id, client_message_id) WHERE client_message_id IS NOT NULL;

CREATE TABLE image_jobs (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id),
    conversation_id   TEXT REFERENCES conversations (id),
    prompt            TEXT NOT NULL,
    resolution        INTEGER NOT NULL CHECK (resolution IN (512, 768, 1024)),
    status            TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    cost              BIGINT NOT NULL,
    reservation_id    TEXT REFERENCES credit_reservations (id),
    client_request_id TEXT,
    upstream_id       TEXT,
    storage_key       TEXT,
    content_type      TEXT,
    size_bytes        BIGINT,
    width             INTEGER,
    height            INTEGER,
    sha256            TEXT,
    error_message     TEXT NOT NULL DEFAULT '',
    created_at        BIGINT NOT NULL,
    started_at        BIGINT,
    completed_at      BIGINT
);
CREATE INDEX image_jobs_user_created ON image_jobs (user_id, created_at DESC, id DESC);
CREATE UNIQUE INDEX image_jobs_client_request ON image_jobs (user_id, client_request_id) WHERE client_request_id IS NOT NULL;

-- Svix message ids already processed, so a redelivered webhook is a no-op.
CREATE TABLE webhook_deliveries (
    message_id  TEXT PRIMARY KEY,
    event_type  TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE image_jobs;
DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE models;
DROP TRIGGER credit_entries_no_update ON credit_entries;
DROP FUNCTION credit_entries_append_only();
DROP TABLE credit_entries;
DROP TABLE credit_reservations;
DROP TABLE invite_redemptions;
DROP TABLE invites;
DROP TABLE sessions;
DROP TABLE users;
