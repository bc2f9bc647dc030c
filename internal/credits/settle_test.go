package credits_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"luna"
	"luna/internal/credits"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// countEntries returns how many ledger entries a reservation has.
func countEntries(t *testing.T, db *store.DB, reservationID string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM credit_entries WHERE reservation_id = $1`,
		reservationID).Scan(&n); err != nil {
		t.Fatalf("count entries: %v", err)
	}
	return n
}

// A settlement of a hold that is no longer active is refused and writes
// nothing, so that a caller that commits anyway (as chat and images used
// to, treating the refusal as "already done") leaves the ledger whole.
func TestRefusedSettlementWritesNothing(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		l := credits.NewLedger(db, credits.WithClock(func() time.Time { return now }))
		later := credits.NewLedger(db, credits.WithClock(func() time.Time { return now.Add(time.Hour) }))
		user := newUser(t, db, "u1")
		grant(t, l, user, 1000)

		settlements := []struct {
			name string
			do   func(tx *sql.Tx, id, key string) error
		}{
			{"capture", func(tx *sql.Tx, id, key string) error {
				_, err := l.CaptureTx(ctx, tx, credits.CaptureRequest{ReservationID: id, Amount: 7, IdempotencyKey: key})
				return err
			}},
			{"release", func(tx *sql.Tx, id, key string) error {
				_, err := l.ReleaseTx(ctx, tx, credits.ReleaseRequest{ReservationID: id, IdempotencyKey: key})
				return err
			}},
			{"expire", nil}, // the sweeper, in its own transactions
		}
		sweep := func() error {
			_, err := later.SweepExpired(ctx, 100)
			return err
		}
		charged := int64(0)
		for _, first := range settlements {
			for _, second := range settlements {
				if first.name == "expire" && second.name == "expire" {
					continue
				}
				t.Run(first.name+" then "+second.name, func(t *testing.T) {
					hold, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 20, TTL: time.Minute,
						Reference: fmt.Sprintf("%s-%s", first.name, second.name)})
					if err != nil {
						t.Fatalf("reserve: %v", err)
					}
					if first.do == nil {
						err = sweep()
					} else {
						err = db.InTx(ctx, func(tx *sql.Tx) error { return first.do(tx, hold.ID, "first:"+hold.ID) })
					}
					if err != nil {
						t.Fatalf("first settlement: %v", err)
					}
					if first.name == "capture" {
						charged += 7
					}
					before := countEntries(t, db, hold.ID)
					// The caller commits whatever the second settlement answered.
					var refused error
					if second.do == nil {
						if err := sweep(); err != nil {
							t.Fatalf("sweep: %v", err)
						}
					} else {
						if err := db.InTx(ctx, func(tx *sql.Tx) error {
							refused = second.do(tx, hold.ID, "second:"+hold.ID)
							return nil
						}); err != nil {
							t.Fatalf("commit: %v", err)
						}
						if !errors.Is(refused, credits.ErrReservationSettled) {
							t.Errorf("second settlement: %v, want ErrReservationSettled", refused)
						}
					}
					if got := countEntries(t, db, hold.ID); got != before {
						t.Errorf("entries of the hold: %d after the refused settlement, want %d", got, before)
					}
					wantCredits(t, l, user, luna.Credits{Balance: 1000 - charged, Available: 1000 - charged})
					wantCleanAudit(t, l)
				})
			}
		}
	})
}

func settle(t *testing.T, l *credits.Ledger, id string, cost int64) credits.Settlement {
	t.Helper()
	s, err := l.Settle(context.Background(), credits.SettleRequest{ReservationID: id, Cost: cost})
	if err != nil {
		t.Fatalf("settle %s at %d: %v", id, cost, err)
	}
	return s
}

// A hold is a bound, not a cap: a cost beyond it is charged from the
// available balance, never below zero, and the rest is a shortfall.
func TestSettleChargesTheTrueCost(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := credits.NewLedger(db)
		user := newUser(t, db, "u1")
		grant(t, l, user, 100)
		reserve := func(amount int64) credits.Reservation {
			t.Helper()
			r, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: amount, TTL: time.Hour})
			if err != nil {
				t.Fatalf("reserve %d: %v", amount, err)
			}
			return r
		}
		tests := []struct {
			name                 string
			hold, cost           int64
			wantCharged, wantOut int64
			want                 luna.Credits // after, with another 10 held throughout
		}{
			{"below the hold", 20, 12, 12, 0, luna.Credits{Balance: 88, Reserved: 10, Available: 78}},
			{"nothing", 20, 0, 0, 0, luna.Credits{Balance: 88, Reserved: 10, Available: 78}},
			{"the hold exactly", 20, 20, 20, 0, luna.Credits{Balance: 68, Reserved: 10, Available: 58}},
			{"beyond the hold", 20, 50, 50, 0, luna.Credits{Balance: 18, Reserved: 10, Available: 8}},
			{"beyond the balance", 5, 40, 8, 32, luna.Credits{Balance: 10, Reserved: 10, Available: 0}},
		}
		reserve(10)
		for _, tt := range tests {
			id := reserve(tt.hold).ID
			s := settle(t, l, id, tt.cost)
			if s.Charged != tt.wantCharged || s.Shortfall != tt.wantOut {
				t.Errorf("%s: charged %d, shortfall %d; want %d, %d", tt.name, s.Charged, s.Shortfall, tt.wantCharged, tt.wantOut)
			}
			if s.Reservation.Shortfall != tt.wantOut {
				t.Errorf("%s: hold's shortfall %d, want %d", tt.name, s.Reservation.Shortfall, tt.wantOut)
			}
			wantCredits(t, l, user, tt.want)
			wantCleanAudit(t, l)
			// Settling twice is refused and changes nothing.
			if tt.cost > 0 {
				if _, err := l.Settle(ctx, credits.SettleRequest{ReservationID: id, Cost: tt.cost}); !errors.Is(err, credits.ErrReservationSettled) {
					t.Errorf("%s: second settlement: %v, want ErrReservationSettled", tt.name, err)
				}
				wantCredits(t, l, user, tt.want)
			}
		}
	})
}

// A completion that comes after its hold was voided still pays, from the
// available balance and never below zero; a free one writes nothing.
func TestSettleAfterTheHoldWasVoided(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		l := credits.NewLedger(db, credits.WithClock(clock))
		user := newUser(t, db, "u1")
		grant(t, l, user, 100)
		var holds []credits.Reservation
		for _, amount := range []int64{30, 30, 30} {
			r, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: amount, TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			holds = append(holds, r)
		}
		if _, err := l.Release(ctx, credits.ReleaseRequest{ReservationID: holds[2].ID}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		now = now.Add(time.Hour)
		mu.Unlock()
		if n, err := l.SweepExpired(ctx, 10); err != nil || n != 2 {
			t.Fatalf("sweep = %d, %v; want 2", n, err)
		}
		wantCredits(t, l, user, luna.Credits{Balance: 100, Available: 100})

		entries := countEntries(t, db, holds[0].ID)
		if s := settle(t, l, holds[0].ID, 0); s.Charged != 0 || s.Shortfall != 0 {
			t.Fatalf("free settlement of a voided hold = %+v", s)
		}
		if got := countEntries(t, db, holds[0].ID); got != entries {
			t.Fatalf("a free settlement of a voided hold wrote %d entries", got-entries)
		}
		if s := settle(t, l, holds[0].ID, 70); s.Charged != 70 || s.Shortfall != 0 {
			t.Fatalf("late settlement = %+v, want 70 charged", s)
		}
		if s := settle(t, l, holds[1].ID, 45); s.Charged != 30 || s.Shortfall != 15 {
			t.Fatalf("late settlement beyond the balance = %+v, want 30 charged, 15 short", s)
		}
		if s := settle(t, l, holds[2].ID, 5); s.Charged != 0 || s.Shortfall != 5 {
			t.Fatalf("late settlement with nothing available = %+v, want 5 short", s)
		}
		wantCredits(t, l, user, luna.Credits{Balance: 0, Available: 0})
		for _, h := range holds {
			if _, err := l.Settle(ctx, credits.SettleRequest{ReservationID: h.ID, Cost: 1}); !errors.Is(err, credits.ErrReservationSettled) {
				t.Errorf("second late settlement: %v, want ErrReservationSettled", err)
			}
		}
		grant(t, l, user, 10)
		wantCredits(t, l, user, luna.Credits{Balance: 10, Available: 10})
		wantCleanAudit(t, l)
	})
}

// Holds renewed by their owner do not expire; the others do.
func TestRenewedHoldsDoNotExpire(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
		l := credits.NewLedger(db, credits.WithClock(clock))
		user := newUser(t, db, "u1")
		grant(t, l, user, 100)
		alive, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 10, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		orphan, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 20, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		// Early renewals write nothing; due ones push the expiry.
		if n, err := l.RenewHolds(ctx, []string{alive.ID}, time.Minute); err != nil || n != 0 {
			t.Fatalf("early renewal = %d, %v; want 0", n, err)
		}
		for range 10 {
			advance(40 * time.Second)
			if n, err := l.RenewHolds(ctx, []string{alive.ID, "no-such-hold"}, time.Minute); err != nil || n != 1 {
				t.Fatalf("renewal = %d, %v; want 1", n, err)
			}
			if _, err := l.SweepExpired(ctx, 10); err != nil {
				t.Fatal(err)
			}
		}
		for id, want := range map[string]string{alive.ID: credits.StatusActive, orphan.ID: credits.StatusExpired} {
			if r, err := l.GetReservation(ctx, id); err != nil || r.Status != want {
				t.Errorf("hold %s: %+v, %v; want %s", id, r, err, want)
			}
		}
		// A settled hold is not renewed.
		if n, err := l.RenewHolds(ctx, []string{orphan.ID}, time.Hour); err != nil || n != 0 {
			t.Fatalf("renewal of an expired hold = %d, %v; want 0", n, err)
		}
		wantCredits(t, l, user, luna.Credits{Balance: 100, Reserved: 10, Available: 90})
		wantCleanAudit(t, l)
	})
}

// The audit understands charges: a hold's extra charge and shortfall must
// match its charge entry, and every entry must have its kind's shape.
func TestAuditChecksCharges(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := credits.NewLedger(db)
		user := newUser(t, db, "u1")
		grant(t, l, user, 100)
		hold, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 10, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		settle(t, l, hold.ID, 150) // 10 from the hold, 90 beyond, 50 short
		wantCleanAudit(t, l)

		tampered := []struct {
			name, sql string
			want      string
		}{
			{"extra charge changed", `UPDATE credit_reservations SET extra_charged = 80 WHERE id = $1`, "spent amount differs"},
			{"shortfall changed", `UPDATE credit_reservations SET shortfall = 0 WHERE id = $1`, "shortfall differs"},
			{"a charge that adds", `INSERT INTO credit_entries (user_id, kind, balance_delta, reserved_delta, reservation_id,
				idempotency_key, fingerprint, created_at) VALUES ('u1', 'charge', 5, 0, $1, 'bogus', 'f', 0)`, "is not a valid charge"},
		}
		for _, tt := range tampered {
			if _, err := db.ExecContext(ctx, tt.sql, hold.ID); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			report, err := l.Audit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, m := range report.Mismatches {
				found = found || strings.Contains(m.String(), tt.want)
			}
			if !found {
				t.Errorf("%s: audit mismatches %v, want one saying %q", tt.name, report.Mismatches, tt.want)
			}
		}
	})
}
