-- +goose Up
-- True charges. A hold is a bound, not a cap on the price: what a reply
-- costs beyond its hold, or what a reply or image costs after its hold was
-- voided, is taken from the available balance as a 'charge' entry (never
-- below zero). The part that could not be taken is the shortfall, recorded
-- on the entry, on the hold and on the message.
ALTER TABLE credit_entries DROP CONSTRAINT credit_entries_kind_check;
ALTER TABLE credit_entries ADD CONSTRAINT credit_entries_kind_check
    CHECK (kind IN ('grant', 'reserve', 'capture', 'release', 'expire', 'adjust', 'charge'));
ALTER TABLE credit_entries ADD COLUMN shortfall BIGINT NOT NULL DEFAULT 0 CHECK (shortfall >= 0);

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
ALTER TABLE credit_entries DROP COLUMN shortfall;
ALTER TABLE credit_entries DROP CONSTRAINT credit_entries_kind_check;
ALTER TABLE credit_entries ADD CONSTRAINT credit_entries_kind_check
    CHECK (kind IN ('grant', 'reserve', 'capture', 'release', 'expire', 'adjust'));
