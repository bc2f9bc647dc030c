-- +goose Up
-- True charges. A hold is a bound, not a cap on the price: what a reply
-- costs beyond its hold, or what a reply or image costs after its hold was
-- voided, is taken from the available balance as a 'charge' entry (never
-- below zero). The part that could not be taken is the shortfall, recorded
-- on the entry, on the hold and on the message.
--
-- SQLite cannot change a CHECK constraint in place: credit_entries is
-- rebuilt with the new kind and column (no table references it; its
-- AUTOINCREMENT sequence continues above the copied ids).
CREATE TABLE credit_entries_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         TEXT NOT NULL REFERENCES users (id),
    kind            TEXT NOT NULL CHECK (kind IN ('grant', 'reserve', 'capture', 'release', 'expire', 'adjust', 'charge')),
    balance_delta   BIGINT NOT NULL,
    reserved_delta  BIGINT NOT NULL,
    reservation_id  TEXT REFERENCES credit_reservations (id),
    idempotency_key TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    reference       TEXT NOT NULL DEFAULT '',
    note            TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    shortfall       BIGINT NOT NULL DEFAULT 0 CHECK (shortfall >= 0),
    CONSTRAINT credit_entries_idempotency UNIQUE (user_id, idempotency_key)
);
INSERT INTO credit_entries_new (id, user_id, kind, balance_delta, reserved_delta, reservation_id, idempotency_key,
        fingerprint, reference, note, created_at)
    SELECT id, user_id, kind, balance_delta, reserved_delta, reservation_id, idempotency_key,
        fingerprint, reference, note, created_at
    FROM credit_entries;
DROP TABLE credit_entries;
ALTER TABLE credit_entries_new RENAME TO credit_entries;
CREATE INDEX credit_entries_user ON credit_entries (user_id, id);
CREATE INDEX credit_entries_reservation ON credit_entries (reservation_id);

-- +goose StatementBegin
CREATE TRIGGER credit_entries_no_update BEFORE UPDATE ON credit_entries
BEGIN
    SELECT RAISE(ABORT, 'credit_entries is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER credit_entries_no_delete BEFORE DELETE ON credit_entries
BEGIN
    SELECT RAISE(ABORT, 'credit_entries is append-only');
END;
-- +goose StatementEnd

-- What a hold's purpose cost beyond the hold (taken from the available
-- balance) and what could not be taken.
ALTER TABLE credit_reservations ADD COLUMN extra_charged BIGINT NOT NULL DEFAULT 0 CHECK (extra_charged >= 0);
ALTER TABLE credit_reservations ADD COLUMN shortfall BIGINT NOT NULL DEFAULT 0 CHECK (shortfall >= 0);

-- What a reply cost that the user's credits could not pay.
ALTER TABLE messages ADD COLUMN credits_shortfall BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE messages DROP COLUMN credits_shortfall;
ALTER TABLE credit_reservations DROP COLUMN shortfall;
ALTER TABLE credit_reservations DROP COLUMN extra_charged;
CREATE TABLE credit_entries_old (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO credit_entries_old (id, user_id, kind, balance_delta, reserved_delta, reservation_id, idempotency_key,
        fingerprint, reference, note, created_at)
    SELECT id, user_id, kind, balance_delta, reserved_delta, reservation_id, idempotency_key,
        fingerprint, reference, note, created_at
    FROM credit_entries;
DROP TABLE credit_entries;
ALTER TABLE credit_entries_old RENAME TO credit_entries;
CREATE INDEX credit_entries_user ON credit_entries (user_id, id);
CREATE INDEX credit_entries_reservation ON credit_entries (reservation_id);
-- +goose StatementBegin
CREATE TRIGGER credit_entries_no_update BEFORE UPDATE ON credit_entries
BEGIN
    SELECT RAISE(ABORT, 'credit_entries is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER credit_entries_no_delete BEFORE DELETE ON credit_entries
BEGIN
    SELECT RAISE(ABORT, 'credit_entries is append-only');
END;
-- +goose StatementEnd
