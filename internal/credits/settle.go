package credits

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"luna/internal/store"
)

// SettleRequest ends a hold at the real cost of what it paid for.
type SettleRequest struct {
	ReservationID string
	Cost          int64 // what the reply or image really cost; >= 0, may exceed the hold
	Note          string
}

// Settlement is the outcome of SettleTx.
type Settlement struct {
	Reservation Reservation
	Charged     int64 // credits spent: captured from the hold plus taken from the available balance
	Shortfall   int64 // the part of Cost that the available balance could not pay
}

// Settle settles a hold at its real cost in its own transaction.
func (l *Ledger) Settle(ctx context.Context, req SettleRequest) (Settlement, error) {
	var s Settlement
	err := l.inTxReservation(ctx, req.ReservationID, func(tx *sql.Tx) (err error) {
		s, err = l.SettleTx(ctx, tx, req)
		return err
	})
	return s, err
}

// SettleTx settles a hold at the real cost of what it paid for, inside the
// caller's transaction (the one that marks the reply or image done):
//
//   - an active hold is captured up to Cost (released when Cost is 0); a
//     Cost above the hold captures it in full and charges the rest from
//     the available balance (a charge entry), never below zero;
//   - a hold voided meanwhile (released, or expired by the sweeper) is
//     charged Cost from the available balance, never below zero, so a late
//     completion still pays; with Cost 0 there is nothing to do;
//   - a hold already captured, or already charged after its void, is
//     refused with ErrReservationSettled, having written nothing.
//
// Whatever the balance cannot pay is returned as Shortfall and recorded on
// the charge entry and the hold. On any error the caller must roll back.
func (l *Ledger) SettleTx(ctx context.Context, tx *sql.Tx, req SettleRequest) (Settlement, error) {
	if req.Cost < 0 {
		return Settlement{}, ErrInvalidAmount
	}
	r, closed, err := l.closeActive(ctx, tx, req.ReservationID, req.Cost)
	if err != nil {
		return Settlement{}, err
	}
	if closed {
		kind, key := KindCapture, "capture:"+r.ID
		if r.Captured == 0 {
			kind, key = KindRelease, "release:"+r.ID
		}
		if err := l.recordSettlement(ctx, tx, r, kind, key, req.Note); err != nil {
			return Settlement{}, err
		}
		s := Settlement{Reservation: r, Charged: r.Captured}
		if over := req.Cost - r.Captured; over > 0 {
			if s.Reservation, err = l.charge(ctx, tx, r, over, "cost beyond the hold"); err != nil {
				return Settlement{}, err
			}
			s.Charged += s.Reservation.ExtraCharged
			s.Shortfall = s.Reservation.Shortfall
		}
		return s, nil
	}
	// Not active (a hold never becomes active again): voided meanwhile,
	// or settled already.
	if r, err = getReservation(ctx, tx, req.ReservationID); err != nil {
		return Settlement{}, err
	}
	switch r.Status {
	case StatusReleased, StatusExpired:
		if req.Cost == 0 {
			return Settlement{Reservation: r}, nil // voided already, nothing to pay
		}
		if r, err = l.charge(ctx, tx, r, req.Cost, "charged after the hold was "+r.Status); err != nil {
			return Settlement{}, err
		}
		return Settlement{Reservation: r, Charged: r.ExtraCharged, Shortfall: r.Shortfall}, nil
	default:
		return Settlement{}, ErrReservationSettled
	}
}

// closeActive captures an active hold up to cost (releases it when cost is
// 0) in one conditional update that returns it as changed; closed is false,
// and nothing written, when the hold is not active.
func (l *Ledger) closeActive(ctx context.Context, tx *sql.Tx, reservationID string, cost int64) (r Reservation, closed bool, err error) {
	status := StatusCaptured
	if cost == 0 {
		status = StatusReleased
	}
	now := l.now()
	r, err = scanReservation(tx.QueryRowContext(ctx, `UPDATE credit_reservations
		SET status = $3, captured = CASE WHEN amount < $2 THEN amount ELSE $2 END, settled_at = $4
		WHERE id = $1 AND status = 'active'
		RETURNING `+reservationColumns, reservationID, cost, status, store.NowMillis(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return Reservation{}, false, nil
	}
	if err != nil {
		return Reservation{}, false, fmt.Errorf("settle: update reservation: %w", err)
	}
	r.SettledAt = &now // as written, without the column's rounding to milliseconds
	return r, true, nil
}

// charge takes want credits for a settled hold's purpose from the user's
// available balance, as much as there is, and records the rest as the
// shortfall on the hold and on the entry. A hold is charged once: a second
// charge is refused with ErrReservationSettled before anything is written.
func (l *Ledger) charge(ctx context.Context, tx *sql.Tx, r Reservation, want int64, note string) (Reservation, error) {
	now := l.now()
	// Claim the hold's one charge first, with all of it unpaid for now, so
	// that a refusal writes nothing.
	res, err := tx.ExecContext(ctx, `UPDATE credit_reservations SET shortfall = $2
		WHERE id = $1 AND status <> 'active' AND extra_charged = 0 AND shortfall = 0`, r.ID, want)
	if err != nil {
		return Reservation{}, fmt.Errorf("charge: claim hold: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Reservation{}, ErrReservationSettled
	}
	// Lock the user's row (PostgreSQL) and read what is available.
	var available int64
	err = tx.QueryRowContext(ctx, `UPDATE users SET updated_at = $2 WHERE id = $1
		RETURNING credits_balance - credits_reserved`, r.UserID, store.NowMillis(now)).Scan(&available)
	if err != nil {
		return Reservation{}, fmt.Errorf("charge: read available credits: %w", err)
	}
	taken := min(want, max(available, 0))
	if taken > 0 {
		res, err := tx.ExecContext(ctx, `UPDATE users SET credits_balance = credits_balance - $2
			WHERE id = $1 AND credits_balance - $2 >= credits_reserved`, r.UserID, taken)
		if err != nil {
			return Reservation{}, fmt.Errorf("charge: update balance: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return Reservation{}, fmt.Errorf("charge: available credits changed under the row lock")
		}
	}
	r.ExtraCharged, r.Shortfall = taken, want-taken
	if _, err := tx.ExecContext(ctx, `UPDATE credit_reservations SET extra_charged = $2, shortfall = $3 WHERE id = $1`,
		r.ID, r.ExtraCharged, r.Shortfall); err != nil {
		return Reservation{}, fmt.Errorf("charge: record on hold: %w", err)
	}
	entry := Entry{
		UserID: r.UserID, Kind: KindCharge, BalanceDelta: -taken, ReservationID: r.ID,
		IdempotencyKey: "charge:" + r.ID, Reference: r.Reference, Note: note, Shortfall: r.Shortfall, CreatedAt: now,
	}
	fingerprint := KindCharge + "|" + r.ID + "|" + strconv.FormatInt(want, 10)
	if _, claimed, err := claimKey(ctx, tx, &entry, fingerprint); err != nil || !claimed {
		if err == nil {
			err = ErrIdempotencyConflict
		}
		return Reservation{}, err
	}
	return r, nil
}

// RenewHolds keeps active holds alive while their owner is: a reply or an
// image job renewing its lease calls it, so that only orphaned holds
// expire. A hold with less than half of ttl left gets ttl from now; the
// others are not written, so calling it on every lease renewal is cheap.
// It returns how many holds it renewed.
func (l *Ledger) RenewHolds(ctx context.Context, reservationIDs []string, ttl time.Duration) (int, error) {
	if len(reservationIDs) == 0 {
		return 0, nil
	}
	if ttl <= 0 {
		return 0, ErrInvalidAmount
	}
	now := l.now()
	until, due := store.NowMillis(now.Add(ttl)), store.NowMillis(now.Add(ttl/2))
	var res sql.Result
	var err error
	if l.db.Dialect == store.Postgres {
		res, err = l.db.ExecContext(ctx, `UPDATE credit_reservations SET expires_at = $2
			WHERE id = ANY($1) AND status = 'active' AND expires_at < $3`, reservationIDs, until, due)
	} else {
		var args store.Args
		q := `UPDATE credit_reservations SET expires_at = ` + args.Add(until) + `
			WHERE status = 'active' AND expires_at < ` + args.Add(due) + ` AND id IN (` + args.AddList(reservationIDs) + `)`
		res, err = l.db.ExecContext(ctx, q, args.Values()...)
	}
	if err != nil {
		return 0, fmt.Errorf("renew holds: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// SettleSteps is SettleTx's usual case, an active hold that covers the
// cost, written as clauses of one PostgreSQL statement, for a caller that
// completes what the hold paid for in the same statement, in one round
// trip (chat's completion). Its clauses, in this order:
//
//   - Lock, first: settle_hold, which locks the hold when it is active and
//     covers the cost, and is empty otherwise;
//   - the caller's own write, gated on EXISTS (SELECT 1 FROM settle_hold),
//     named gate;
//   - Settle, once gate has a row: the hold captured at the cost (released
//     when the cost is 0), its entry written, the user's balance and
//     reserved credits lowered, as SettleTx does.
//
// Done is true when all of that was written; a statement whose gate wrote
// must fail unless it is (the usual assertion: a cast of a message to an
// integer), so that it writes all or nothing. When settle_hold is empty
// nothing is written: settle with SettleTx instead. What is charged is the
// cost, with no shortfall.
type SettleSteps struct {
	Lock, Settle, Done string
}

// SettleSteps writes the steps that settle the hold reservationID at cost
// (>= 0) once the caller's CTE gate has a row, adding their arguments to
// args.
func (l *Ledger) SettleSteps(args *store.Args, reservationID string, cost int64, gate string) SettleSteps {
	now := l.now()
	kind, status := KindCapture, StatusCaptured
	if cost == 0 {
		kind, status = KindRelease, StatusReleased
	}
	id := args.Add(reservationID)
	at := args.Add(store.NowMillis(now))
	return SettleSteps{
		Lock: `settle_hold AS (SELECT id FROM credit_reservations
			WHERE id = ` + id + ` AND status = 'active' AND amount >= ` + args.Add(cost) + ` FOR UPDATE)`,
		Settle: `settle_capture AS (UPDATE credit_reservations SET status = ` + args.Add(status) + `, captured = ` + args.Add(cost) + `, settled_at = ` + at + `
			WHERE id = ` + id + ` AND status = 'active' AND EXISTS (SELECT 1 FROM ` + gate + `)
			RETURNING id, user_id, amount, reference),
		settle_entry AS (INSERT INTO credit_entries
				(user_id, kind, balance_delta, reserved_delta, reservation_id, idempotency_key, fingerprint, reference, note, shortfall, created_at)
			SELECT user_id, ` + args.Add(kind) + `, ` + args.Add(-cost) + `, -amount, id, ` + args.Add(kind+":"+reservationID) + `,
				` + args.Add(kind+"|"+reservationID+"|"+strconv.FormatInt(cost, 10)) + `, reference, '', 0, ` + at + `
			FROM settle_capture
			RETURNING id),
		settle_balance AS (UPDATE users SET credits_balance = credits_balance - ` + args.Add(cost) + `,
				credits_reserved = credits_reserved - c.amount, updated_at = ` + at + `
			FROM settle_capture c WHERE users.id = c.user_id
			RETURNING users.id)`,
		Done: `((SELECT COUNT(*) FROM settle_capture) = 1 AND (SELECT COUNT(*) FROM settle_entry) = 1
			AND (SELECT COUNT(*) FROM settle_balance) = 1)`,
	}
}
