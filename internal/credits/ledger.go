// Package credits is Luna's credit ledger: an append-only list of entries
// per user, with two-phase holds modelled on TigerBeetle's pending transfers.
//
// A reply or an image first Reserves what it should cost at most; when it is
// done it Settles at what it really cost: the hold is captured (the rest
// released in the same step), a cost beyond the hold is charged from the
// available balance, never below zero, and what the balance lacks is
// recorded as a shortfall. Settling is all or nothing: a settlement either
// changes the hold and writes its entries, or is refused and writes
// nothing. Holds expire unless their owner renews them (RenewHolds, while
// its lease is alive); Sweeper voids the expired ones so a crash never
// locks credits forever, and a completion that comes after its hold was
// voided is charged from the available balance.
//
// users.credits_balance and users.credits_reserved are running sums of the
// entries, kept in the same transaction as each entry. A CHECK constraint in
// the schema keeps balance >= reserved >= 0, so available credits can never go
// below zero whatever the concurrency; Audit recomputes every sum from the
// entries.
//
// Every operation carries an idempotency key, unique per user. Repeating an
// operation with the same key and the same request returns the first result
// without changing anything; the same key with a different request fails with
// ErrIdempotencyConflict.
package credits

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"luna"
	"luna/internal/store"
)

// Errors returned by the ledger. Those that are *luna.Error map directly to
// API errors.
var (
	ErrInsufficientCredits = &luna.Error{Code: luna.CodeInsufficientCredits, Message: "Not enough credits."}
	ErrIdempotencyConflict = &luna.Error{Code: luna.CodeConflict, Message: "This idempotency key was already used for a different request."}
	ErrCaptureExceedsHold  = &luna.Error{Code: luna.CodeInvalidRequest, Message: "Capture amount exceeds the reserved amount."}
	ErrReservationSettled  = &luna.Error{Code: luna.CodeConflict, Message: "The reservation is already settled."}
	ErrInvalidAmount       = &luna.Error{Code: luna.CodeInvalidRequest, Message: "Invalid credit amount."}
	ErrUserNotFound        = &luna.Error{Code: luna.CodeNotFound, Message: "User not found."}
	ErrReservationNotFound = &luna.Error{Code: luna.CodeNotFound, Message: "Reservation not found."}
)

// Entry kinds, as stored in credit_entries.kind.
const (
	KindGrant   = "grant"   // credits added (sign-up, invite, operator grant)
	KindReserve = "reserve" // a hold placed
	KindCapture = "capture" // a hold settled: part or all of it spent, the rest released
	KindRelease = "release" // a hold voided
	KindExpire  = "expire"  // a hold voided by the sweeper after its expiry
	KindAdjust  = "adjust"  // an operator correction, positive or negative
	KindCharge  = "charge"  // spent straight from the available balance: a cost beyond its hold, or after its hold was voided
)

// Reservation statuses.
const (
	StatusActive   = "active"
	StatusCaptured = "captured"
	StatusReleased = "released"
	StatusExpired  = "expired"
)

// Entry is one row of the ledger.
type Entry struct {
	ID             int64
	UserID         string
	Kind           string
	BalanceDelta   int64
	ReservedDelta  int64
	ReservationID  string
	IdempotencyKey string
	Reference      string
	Note           string
	Shortfall      int64 // for a charge: what the available balance could not pay
	CreatedAt      time.Time
}

// Reservation is a hold on credits.
type Reservation struct {
	ID       string
	UserID   string
	Amount   int64
	Captured int64 // meaningful when Status is captured
	// ExtraCharged is what the hold's purpose cost beyond the hold, taken
	// from the available balance (SettleTx); Shortfall is what it cost
	// that the balance could not pay.
	ExtraCharged int64
	Shortfall    int64
	Status       string
	Reference    string
	ExpiresAt    time.Time
	CreatedAt    time.Time
	SettledAt    *time.Time
}

// ChangeFunc is told after a commit that a user's credits changed.
type ChangeFunc func(ctx context.Context, userID string)

// Ledger runs credit operations against the database.
type Ledger struct {
	db       *store.DB
	now      func() time.Time
	onChange ChangeFunc
}

// Option configures a Ledger.
type Option func(*Ledger)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(l *Ledger) { l.now = now } }

// WithChangeHook registers fn to be called after each committed change of a
// user's credits (for live balance events).
func WithChangeHook(fn ChangeFunc) Option { return func(l *Ledger) { l.onChange = fn } }

// NewLedger returns a ledger on db.
func NewLedger(db *store.DB, opts ...Option) *Ledger {
	l := &Ledger{db: db, now: time.Now}
	for _, opt := range opts {
		opt(l)
	}
	return l
}

// Balance returns a user's credits.
func (l *Ledger) Balance(ctx context.Context, userID string) (luna.Credits, error) {
	return BalanceTx(ctx, l.db.DB, userID)
}

// Querier is what read helpers need: a *sql.DB or a *sql.Tx.
type Querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// LockUserTx locks the user's row until tx ends, so that this user's
// requests that count their work in progress (running replies, queued
// images) and then hold credits do so one after the other. PostgreSQL
// takes the row lock; SQLite serialises writers anyway.
func LockUserTx(ctx context.Context, tx *sql.Tx, userID string) error {
	_, err := LockBalanceTx(ctx, tx, userID)
	return err
}

// LockBalanceTx locks the user's row like LockUserTx and returns the
// user's credits as they stand under the lock, in the same statement.
func LockBalanceTx(ctx context.Context, tx *sql.Tx, userID string) (luna.Credits, error) {
	return scanCredits(tx.QueryRowContext(ctx, `UPDATE users SET updated_at = updated_at WHERE id = $1
		RETURNING credits_balance, credits_reserved`, userID), "lock user")
}

// LockUserStatement is LockUserTx as the first statement of a batch
// (store.RunBatch, PostgreSQL): the batch's statements after it see what
// the user's requests before it committed.
func LockUserStatement(userID string) store.BatchStatement {
	return store.BatchStatement{SQL: `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, Args: []any{userID}}
}

// BalanceTx returns a user's credits as seen by q.
func BalanceTx(ctx context.Context, q Querier, userID string) (luna.Credits, error) {
	return scanCredits(q.QueryRowContext(ctx, `SELECT credits_balance, credits_reserved FROM users WHERE id = $1`, userID),
		"read balance")
}

// scanCredits reads a user's balance and reserved credits from row;
// doing names the query in an error.
func scanCredits(row *sql.Row, doing string) (luna.Credits, error) {
	var c luna.Credits
	err := row.Scan(&c.Balance, &c.Reserved)
	if errors.Is(err, sql.ErrNoRows) {
		return c, ErrUserNotFound
	}
	if err != nil {
		return c, fmt.Errorf("%s: %w", doing, err)
	}
	c.Available = c.Balance - c.Reserved
	return c, nil
}

// GrantRequest adds credits to a user.
type GrantRequest struct {
	UserID         string
	Amount         int64 // > 0
	IdempotencyKey string
	Reference      string
	Note           string
}

// Grant adds credits in its own transaction.
func (l *Ledger) Grant(ctx context.Context, req GrantRequest) (Entry, error) {
	var entry Entry
	err := l.inTx(ctx, req.UserID, func(tx *sql.Tx) (err error) {
		entry, err = l.GrantTx(ctx, tx, req)
		return err
	})
	return entry, err
}

// GrantTx adds credits inside the caller's transaction.
func (l *Ledger) GrantTx(ctx context.Context, tx *sql.Tx, req GrantRequest) (Entry, error) {
	if req.Amount <= 0 {
		return Entry{}, ErrInvalidAmount
	}
	return l.applyBalanceChange(ctx, tx, KindGrant, req.UserID, req.Amount, req.IdempotencyKey, req.Reference, req.Note)
}

// AdjustRequest corrects a user's balance by a signed amount.
type AdjustRequest struct {
	UserID         string
	Amount         int64 // != 0; negative removes credits, never below what is reserved
	IdempotencyKey string
	Note           string
}

// Adjust applies an operator correction in its own transaction.
func (l *Ledger) Adjust(ctx context.Context, req AdjustRequest) (Entry, error) {
	if req.Amount == 0 {
		return Entry{}, ErrInvalidAmount
	}
	var entry Entry
	err := l.inTx(ctx, req.UserID, func(tx *sql.Tx) (err error) {
		entry, err = l.applyBalanceChange(ctx, tx, KindAdjust, req.UserID, req.Amount, req.IdempotencyKey, "", req.Note)
		return err
	})
	return entry, err
}

func (l *Ledger) applyBalanceChange(ctx context.Context, tx *sql.Tx, kind, userID string, amount int64, key, reference, note string) (Entry, error) {
	if key == "" {
		key = uuid.NewString()
	}
	now := l.now()
	entry := Entry{
		UserID: userID, Kind: kind, BalanceDelta: amount, IdempotencyKey: key,
		Reference: reference, Note: note, CreatedAt: now,
	}
	fingerprint := kind + "|" + strconv.FormatInt(amount, 10) + "|" + reference
	if first, found, err := findKey(ctx, tx, userID, key, fingerprint); err != nil || found {
		return first, err
	}
	// The conditional update goes first: when it is refused, nothing has
	// been written.
	res, err := tx.ExecContext(ctx, `UPDATE users SET credits_balance = credits_balance + $2, updated_at = $3
		WHERE id = $1 AND credits_balance + $2 >= credits_reserved`, userID, amount, store.NowMillis(now))
	if err != nil {
		return Entry{}, fmt.Errorf("%s: update balance: %w", kind, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Entry{}, l.whyNoUpdate(ctx, tx, userID)
	}
	first, claimed, err := claimKey(ctx, tx, &entry, fingerprint)
	if err != nil || claimed {
		return first, err
	}
	// A concurrent retry with the same key committed first: undo ours.
	if _, err := tx.ExecContext(ctx, `UPDATE users SET credits_balance = credits_balance - $2 WHERE id = $1`, userID, amount); err != nil {
		return Entry{}, fmt.Errorf("%s: undo duplicate: %w", kind, err)
	}
	return first, nil
}

// ReserveRequest places a hold.
type ReserveRequest struct {
	UserID         string
	Amount         int64         // > 0
	TTL            time.Duration // how long the hold lives unless renewed (RenewHolds) before the sweeper voids it
	IdempotencyKey string
	Reference      string // what the hold is for, e.g. "message:<id>"
}

// Reserve places a hold in its own transaction.
func (l *Ledger) Reserve(ctx context.Context, req ReserveRequest) (Reservation, error) {
	var r Reservation
	err := l.inTx(ctx, req.UserID, func(tx *sql.Tx) (err error) {
		r, err = l.ReserveTx(ctx, tx, req)
		return err
	})
	return r, err
}

// ReserveTx places a hold inside the caller's transaction. It fails with
// an *InsufficientError (errors.Is ErrInsufficientCredits) when the user's
// available credits are below the amount; nothing is written then.
func (l *Ledger) ReserveTx(ctx context.Context, tx *sql.Tx, req ReserveRequest) (Reservation, error) {
	if req.Amount <= 0 || req.TTL <= 0 {
		return Reservation{}, ErrInvalidAmount
	}
	key := req.IdempotencyKey
	if key == "" {
		key = uuid.NewString()
	}
	fingerprint := KindReserve + "|" + strconv.FormatInt(req.Amount, 10) + "|" + req.Reference
	now := l.now()
	// The conditional update goes first: when it is refused (not enough
	// credits), nothing has been written. A retry under a key already used
	// is found by claimKey below (the usual case, fresh keys, costs no
	// lookup), or here when the update is refused.
	res, err := tx.ExecContext(ctx, `UPDATE users SET credits_reserved = credits_reserved + $2, updated_at = $3
		WHERE id = $1 AND deleted_at IS NULL AND credits_balance - credits_reserved >= $2`,
		req.UserID, req.Amount, store.NowMillis(now))
	if err != nil {
		return Reservation{}, fmt.Errorf("reserve: update user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if first, found, err := findKey(ctx, tx, req.UserID, key, fingerprint); err != nil || found {
			if err != nil {
				return Reservation{}, err
			}
			return getReservation(ctx, tx, first.ReservationID)
		}
		err := l.whyNoUpdate(ctx, tx, req.UserID)
		if errors.Is(err, ErrInsufficientCredits) {
			// Say what is missing: the hold and what the user has.
			if b, berr := BalanceTx(ctx, tx, req.UserID); berr == nil {
				return Reservation{}, &InsufficientError{Needed: req.Amount, Available: max(b.Available, 0)}
			}
		}
		return Reservation{}, err
	}
	r := Reservation{
		ID: uuid.NewString(), UserID: req.UserID, Amount: req.Amount, Status: StatusActive,
		Reference: req.Reference, ExpiresAt: now.Add(req.TTL), CreatedAt: now,
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO credit_reservations (id, user_id, amount, status, reference, expires_at, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		r.ID, r.UserID, r.Amount, r.Status, r.Reference, store.NowMillis(r.ExpiresAt), store.NowMillis(now))
	if err != nil {
		return Reservation{}, fmt.Errorf("reserve: insert reservation: %w", err)
	}
	entry := Entry{
		UserID: req.UserID, Kind: KindReserve, ReservedDelta: req.Amount, ReservationID: r.ID,
		IdempotencyKey: key, Reference: req.Reference, CreatedAt: now,
	}
	first, claimed, err := claimKey(ctx, tx, &entry, fingerprint)
	if err != nil {
		return Reservation{}, err
	}
	if !claimed {
		// An earlier request with the same key (or a concurrent one that
		// committed first) holds already: undo ours and answer with its hold.
		if _, err := tx.ExecContext(ctx, `DELETE FROM credit_reservations WHERE id = $1`, r.ID); err != nil {
			return Reservation{}, fmt.Errorf("reserve: drop duplicate reservation: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET credits_reserved = credits_reserved - $2 WHERE id = $1`,
			req.UserID, req.Amount); err != nil {
			return Reservation{}, fmt.Errorf("reserve: undo duplicate: %w", err)
		}
		return getReservation(ctx, tx, first.ReservationID)
	}
	return r, nil
}

// CaptureRequest settles a hold: Amount is spent, the rest is released.
type CaptureRequest struct {
	ReservationID  string
	Amount         int64  // 0 <= Amount <= reserved
	IdempotencyKey string // defaults to "capture:<reservation id>"
	Note           string
}

// Capture settles a hold in its own transaction.
func (l *Ledger) Capture(ctx context.Context, req CaptureRequest) (Reservation, error) {
	var r Reservation
	err := l.inTxReservation(ctx, req.ReservationID, func(tx *sql.Tx) (err error) {
		r, err = l.CaptureTx(ctx, tx, req)
		return err
	})
	return r, err
}

// CaptureTx settles a hold inside the caller's transaction. A hold that is
// no longer active is refused with ErrReservationSettled, and nothing is
// written (a retry with the same key and amount returns the first result).
func (l *Ledger) CaptureTx(ctx context.Context, tx *sql.Tx, req CaptureRequest) (Reservation, error) {
	if req.Amount < 0 {
		return Reservation{}, ErrInvalidAmount
	}
	key := req.IdempotencyKey
	if key == "" {
		key = "capture:" + req.ReservationID
	}
	r, err := getReservation(ctx, tx, req.ReservationID)
	if err != nil {
		return Reservation{}, err
	}
	return l.settle(ctx, tx, r, KindCapture, StatusCaptured, req.Amount, key, req.Note, true)
}

// ReleaseRequest voids a hold.
type ReleaseRequest struct {
	ReservationID  string
	IdempotencyKey string // defaults to "release:<reservation id>"
	Note           string
}

// Release voids a hold in its own transaction.
func (l *Ledger) Release(ctx context.Context, req ReleaseRequest) (Reservation, error) {
	var r Reservation
	err := l.inTxReservation(ctx, req.ReservationID, func(tx *sql.Tx) (err error) {
		r, err = l.ReleaseTx(ctx, tx, req)
		return err
	})
	return r, err
}

// ReleaseTx voids a hold inside the caller's transaction. Like CaptureTx,
// it writes nothing when it refuses.
func (l *Ledger) ReleaseTx(ctx context.Context, tx *sql.Tx, req ReleaseRequest) (Reservation, error) {
	key := req.IdempotencyKey
	if key == "" {
		key = "release:" + req.ReservationID
	}
	r, err := getReservation(ctx, tx, req.ReservationID)
	if err != nil {
		return Reservation{}, err
	}
	return l.settle(ctx, tx, r, KindRelease, StatusReleased, 0, key, req.Note, true)
}

// settle moves an active reservation, r as the caller read it in tx, to a
// final status, spending `spend` credits of it and releasing the rest, and
// appends the entry. It is all or nothing: when the hold is no longer
// active it returns ErrReservationSettled having written nothing, so whichever settlement
// comes first (a capture, a release, the expiry sweeper) wins and the
// others change nothing. With retry, a settlement whose key and request
// were already applied returns that result instead (Capture and Release
// with the caller's key); without, every settlement but the first is
// refused.
func (l *Ledger) settle(ctx context.Context, tx *sql.Tx, r Reservation, kind, status string, spend int64, key, note string, retry bool) (Reservation, error) {
	if spend > r.Amount {
		return Reservation{}, ErrCaptureExceedsHold
	}
	fingerprint := kind + "|" + r.ID + "|" + strconv.FormatInt(spend, 10)
	retried := func() (Reservation, bool, error) {
		if !retry {
			return Reservation{}, false, nil
		}
		_, found, err := findKey(ctx, tx, r.UserID, key, fingerprint)
		if err != nil || !found {
			return Reservation{}, false, err
		}
		r, err := getReservation(ctx, tx, r.ID)
		return r, true, err
	}
	// A retry of this very settlement returns its result, writing nothing.
	if first, found, err := retried(); err != nil || found {
		return first, err
	}
	// The conditional update is what makes settling happen once: of two
	// concurrent settlements (capture vs. sweeper, say) only one finds the
	// reservation still active; on PostgreSQL the other waits for it here.
	now := l.now()
	onlyIfDue := ""
	if kind == KindExpire {
		onlyIfDue = " AND expires_at <= $4" // a renewal that came first keeps the hold
	}
	res, err := tx.ExecContext(ctx, `UPDATE credit_reservations SET status = $2, captured = $3, settled_at = $4
		WHERE id = $1 AND status = 'active'`+onlyIfDue, r.ID, status, spend, store.NowMillis(now))
	if err != nil {
		return Reservation{}, fmt.Errorf("%s: update reservation: %w", kind, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// Settled meanwhile, perhaps by a concurrent retry of this one.
		if first, found, err := retried(); err != nil || found {
			return first, err
		}
		return Reservation{}, ErrReservationSettled
	}
	r.Status, r.Captured, r.SettledAt = status, spend, &now
	if err := l.recordSettlement(ctx, tx, r, kind, key, note); err != nil {
		return Reservation{}, err
	}
	return r, nil
}

// recordSettlement writes what settling r (its status and Captured
// already changed in tx) does to the ledger: the entry under key, and the
// user's balance and reserved credits.
func (l *Ledger) recordSettlement(ctx context.Context, tx *sql.Tx, r Reservation, kind, key, note string) error {
	now := *r.SettledAt
	entry := Entry{
		UserID: r.UserID, Kind: kind, BalanceDelta: -r.Captured, ReservedDelta: -r.Amount,
		ReservationID: r.ID, IdempotencyKey: key, Note: note, Reference: r.Reference, CreatedAt: now,
	}
	fingerprint := kind + "|" + r.ID + "|" + strconv.FormatInt(r.Captured, 10)
	if _, claimed, err := claimKey(ctx, tx, &entry, fingerprint); err != nil || !claimed {
		if err == nil {
			err = ErrIdempotencyConflict // the key belongs to another operation; the caller rolls back
		}
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE users SET credits_balance = credits_balance - $2,
		credits_reserved = credits_reserved - $3, updated_at = $4 WHERE id = $1`,
		r.UserID, r.Captured, r.Amount, store.NowMillis(now))
	if err != nil {
		return fmt.Errorf("%s: update user: %w", kind, err)
	}
	return nil
}

// findKey looks for the entry a user already wrote under an idempotency
// key. found is false when there is none; a different request under the
// key is ErrIdempotencyConflict.
func findKey(ctx context.Context, tx *sql.Tx, userID, key, fingerprint string) (first Entry, found bool, err error) {
	var firstFingerprint string
	var firstReservation sql.NullString
	var createdAt int64
	err = tx.QueryRowContext(ctx, `SELECT id, kind, balance_delta, reserved_delta, reservation_id, fingerprint, reference, note, shortfall, created_at
		FROM credit_entries WHERE user_id = $1 AND idempotency_key = $2`, userID, key).
		Scan(&first.ID, &first.Kind, &first.BalanceDelta, &first.ReservedDelta, &firstReservation,
			&firstFingerprint, &first.Reference, &first.Note, &first.Shortfall, &createdAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("read entry for idempotency key: %w", err)
	}
	if firstFingerprint != fingerprint {
		return Entry{}, false, ErrIdempotencyConflict
	}
	first.UserID, first.IdempotencyKey = userID, key
	first.ReservationID, first.CreatedAt = firstReservation.String, store.Time(createdAt)
	return first, true, nil
}

// claimKey inserts entry unless its idempotency key is already used by the
// same user. It returns claimed=true when the entry was inserted; otherwise
// the first entry with that key, or ErrIdempotencyConflict when the first
// request differs. On PostgreSQL a concurrent insert of the same key waits
// for the other transaction and then sees its row.
func claimKey(ctx context.Context, tx *sql.Tx, entry *Entry, fingerprint string) (first Entry, claimed bool, err error) {
	var reservationID any
	if entry.ReservationID != "" {
		reservationID = entry.ReservationID
	}
	err = tx.QueryRowContext(ctx, `INSERT INTO credit_entries
		(user_id, kind, balance_delta, reserved_delta, reservation_id, idempotency_key, fingerprint, reference, note, shortfall, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (user_id, idempotency_key) DO NOTHING
		RETURNING id`,
		entry.UserID, entry.Kind, entry.BalanceDelta, entry.ReservedDelta, reservationID,
		entry.IdempotencyKey, fingerprint, entry.Reference, entry.Note, entry.Shortfall, store.NowMillis(entry.CreatedAt),
	).Scan(&entry.ID)
	if err == nil {
		return *entry, true, nil
	}
	if store.IsForeignKeyViolation(err) {
		return Entry{}, false, ErrUserNotFound
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return Entry{}, false, fmt.Errorf("%s: insert entry: %w", entry.Kind, err)
	}
	first, found, err := findKey(ctx, tx, entry.UserID, entry.IdempotencyKey, fingerprint)
	if err == nil && !found {
		err = fmt.Errorf("%s: entry for idempotency key %q vanished", entry.Kind, entry.IdempotencyKey)
	}
	return first, false, err
}

// whyNoUpdate explains a conditional user update that matched no row.
func (l *Ledger) whyNoUpdate(ctx context.Context, tx *sql.Tx, userID string) error {
	var deleted sql.NullInt64
	err := tx.QueryRowContext(ctx, `SELECT deleted_at FROM users WHERE id = $1`, userID).Scan(&deleted)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && deleted.Valid) {
		return ErrUserNotFound
	}
	if err != nil {
		return fmt.Errorf("read user: %w", err)
	}
	return ErrInsufficientCredits
}

// reservationColumns are the columns scanReservation reads.
const reservationColumns = `id, user_id, amount, captured, extra_charged, shortfall, status, reference,
	expires_at, created_at, settled_at`

func scanReservation(row *sql.Row) (Reservation, error) {
	var r Reservation
	var captured, settled sql.NullInt64
	var expires, created int64
	err := row.Scan(&r.ID, &r.UserID, &r.Amount, &captured, &r.ExtraCharged, &r.Shortfall, &r.Status, &r.Reference,
		&expires, &created, &settled)
	if err != nil {
		return r, err
	}
	r.Captured, r.ExpiresAt, r.CreatedAt, r.SettledAt = captured.Int64, store.Time(expires), store.Time(created), store.NullTime(settled)
	return r, nil
}

func getReservation(ctx context.Context, q Querier, id string) (Reservation, error) {
	r, err := scanReservation(q.QueryRowContext(ctx, `SELECT `+reservationColumns+` FROM credit_reservations WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrReservationNotFound
	}
	if err != nil {
		return r, fmt.Errorf("read reservation: %w", err)
	}
	return r, nil
}

// GetReservation returns a reservation by id.
func (l *Ledger) GetReservation(ctx context.Context, id string) (Reservation, error) {
	return getReservation(ctx, l.db.DB, id)
}

// inTx runs fn in a transaction and reports the change on success.
func (l *Ledger) inTx(ctx context.Context, userID string, fn func(tx *sql.Tx) error) error {
	if err := l.db.InTx(ctx, fn); err != nil {
		return err
	}
	l.changed(ctx, userID)
	return nil
}

func (l *Ledger) inTxReservation(ctx context.Context, reservationID string, fn func(tx *sql.Tx) error) error {
	var userID string
	err := l.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT user_id FROM credit_reservations WHERE id = $1`, reservationID).Scan(&userID)
	})
	if err != nil {
		return err
	}
	l.changed(ctx, userID)
	return nil
}

func (l *Ledger) changed(ctx context.Context, userID string) {
	if l.onChange != nil && userID != "" {
		l.onChange(ctx, userID)
	}
}

// ReserveSteps is ReserveTx's usual case, a fresh idempotency key and
// enough available credits, written as clauses of one PostgreSQL
// statement, for a caller that stores what the hold pays for in the same
// statement (chat's send): reserve_user raises the user's reserved
// credits when the caller's condition holds and the credits suffice,
// reserve_hold inserts the hold and reserve_entry its entry, each only
// when the one before wrote. The caller gates its own writes on
// EXISTS (SELECT 1 FROM reserve_entry). When reserve_user writes nothing,
// neither do the others: the caller's transaction then places the hold
// with ReserveTx, which says why it cannot. The user's row must be locked
// already (a statement's snapshot would otherwise miss what a transaction
// it waited for wrote).
type ReserveSteps struct {
	Clauses string
	HoldID  string // the hold's id when it is placed
}

// ReserveSteps writes the steps that hold req.Amount for req.UserID (a
// positive amount, a fresh key) when condition (an SQL boolean) holds,
// adding their arguments to args.
func (l *Ledger) ReserveSteps(args *store.Args, req ReserveRequest, condition string) ReserveSteps {
	now := l.now()
	holdID := uuid.NewString()
	user, amount, at := args.Add(req.UserID), args.Add(req.Amount), args.Add(store.NowMillis(now))
	reference := args.Add(req.Reference)
	return ReserveSteps{HoldID: holdID, Clauses: `reserve_user AS (UPDATE users SET credits_reserved = credits_reserved + ` + amount + `, updated_at = ` + at + `
			WHERE id = ` + user + ` AND deleted_at IS NULL AND credits_balance - credits_reserved >= ` + amount + ` AND ` + condition + `
			RETURNING id),
		reserve_hold AS (INSERT INTO credit_reservations (id, user_id, amount, status, reference, expires_at, created_at)
			SELECT ` + args.Add(holdID) + `, id, ` + amount + `, 'active', ` + reference + `, ` + args.Add(store.NowMillis(now.Add(req.TTL))) + `, ` + at + `
			FROM reserve_user
			RETURNING id, user_id),
		reserve_entry AS (INSERT INTO credit_entries
				(user_id, kind, balance_delta, reserved_delta, reservation_id, idempotency_key, fingerprint, reference, note, shortfall, created_at)
			SELECT user_id, '` + KindReserve + `', 0, ` + amount + `, id, ` + args.Add(req.IdempotencyKey) + `,
				` + args.Add(KindReserve+"|"+strconv.FormatInt(req.Amount, 10)+"|"+req.Reference) + `, ` + reference + `, '', 0, ` + at + `
			FROM reserve_hold
			RETURNING id)`}
}
