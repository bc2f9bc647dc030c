package credits_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"luna"
	"luna/internal/credits"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// newUser inserts a user with no credits and returns its id.
func newUser(t *testing.T, db *store.DB, id string) string {
	t.Helper()
	_, err := db.ExecContext(context.Background(),
		`INSERT INTO users (id, provider, email, email_normalized, created_at, updated_at) VALUES ($1, 'local', $2, $2, 0, 0)`,
		id, id+"@example.com")
	if err != nil {
		t.Fatalf("insert user: %v", err)
	}
	return id
}

func grant(t *testing.T, l *credits.Ledger, userID string, amount int64) {
	t.Helper()
	if _, err := l.Grant(context.Background(), credits.GrantRequest{UserID: userID, Amount: amount}); err != nil {
		t.Fatalf("grant %d: %v", amount, err)
	}
}

func wantCredits(t *testing.T, l *credits.Ledger, userID string, want luna.Credits) {
	t.Helper()
	got, err := l.Balance(context.Background(), userID)
	if err != nil {
		t.Fatalf("balance: %v", err)
	}
	if got != want {
		t.Fatalf("credits = %+v, want %+v", got, want)
	}
}

func wantCleanAudit(t *testing.T, l *credits.Ledger) {
	t.Helper()
	report, err := l.Audit(context.Background())
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	for _, m := range report.Mismatches {
		t.Errorf("audit mismatch: %s", m)
	}
}

func TestConcurrentReservationsNeverOverdraw(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := credits.NewLedger(db)
		user := newUser(t, db, "u1")
		grant(t, l, user, 1000)

		// Watch available credits while the reservations race.
		stop := make(chan struct{})
		var minAvailable atomic.Int64
		minAvailable.Store(1000)
		watcherDone := make(chan struct{})
		go func() {
			defer close(watcherDone)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := l.Balance(ctx, user)
				if err == nil && c.Available < minAvailable.Load() {
					minAvailable.Store(c.Available)
				}
			}
		}()

		const attempts = 200
		var succeeded, insufficient atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, attempts)
		for i := range attempts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := l.Reserve(ctx, credits.ReserveRequest{
					UserID: user, Amount: 50, TTL: time.Hour,
					IdempotencyKey: fmt.Sprintf("reserve-%d", i), Reference: fmt.Sprintf("test:%d", i),
				})
				switch {
				case err == nil:
					succeeded.Add(1)
				case errors.Is(err, credits.ErrInsufficientCredits):
					insufficient.Add(1)
				default:
					errs <- err
				}
			}()
		}
		close(start)
		wg.Wait()
		close(stop)
		<-watcherDone
		close(errs)
		for err := range errs {
			t.Errorf("unexpected reserve error: %v", err)
		}
		if got, want := succeeded.Load(), int64(20); got != want {
			t.Errorf("succeeded = %d, want %d", got, want)
		}
		if got, want := insufficient.Load(), int64(180); got != want {
			t.Errorf("insufficient = %d, want %d", got, want)
		}
		if got := minAvailable.Load(); got < 0 {
			t.Errorf("available went down to %d", got)
		}
		wantCredits(t, l, user, luna.Credits{Balance: 1000, Reserved: 1000, Available: 0})
		wantCleanAudit(t, l)
	})
}

func TestIdempotentRetries(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := credits.NewLedger(db)
		user := newUser(t, db, "u1")

		// Grant twice with one key: once.
		for range 2 {
			if _, err := l.Grant(ctx, credits.GrantRequest{UserID: user, Amount: 100, IdempotencyKey: "g1"}); err != nil {
				t.Fatalf("grant: %v", err)
			}
		}
		wantCredits(t, l, user, luna.Credits{Balance: 100, Available: 100})
		_, err := l.Grant(ctx, credits.GrantRequest{UserID: user, Amount: 200, IdempotencyKey: "g1"})
		if !errors.Is(err, credits.ErrIdempotencyConflict) {
			t.Fatalf("grant with reused key and other amount: %v, want ErrIdempotencyConflict", err)
		}

		// Reserve twice with one key: one hold, the same reservation.
		first, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 30, TTL: time.Hour, IdempotencyKey: "r1", Reference: "m1"})
		if err != nil {
			t.Fatalf("reserve: %v", err)
		}
		again, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 30, TTL: time.Hour, IdempotencyKey: "r1", Reference: "m1"})
		if err != nil {
			t.Fatalf("retried reserve: %v", err)
		}
		if again.ID != first.ID {
			t.Fatalf("retried reserve returned reservation %s, want %s", again.ID, first.ID)
		}
		wantCredits(t, l, user, luna.Credits{Balance: 100, Reserved: 30, Available: 70})
		_, err = l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 40, TTL: time.Hour, IdempotencyKey: "r1", Reference: "m1"})
		if !errors.Is(err, credits.ErrIdempotencyConflict) {
			t.Fatalf("reserve with reused key and other amount: %v, want ErrIdempotencyConflict", err)
		}

		// Capture above the hold is refused and changes nothing.
		_, err = l.Capture(ctx, credits.CaptureRequest{ReservationID: first.ID, Amount: 31})
		if !errors.Is(err, credits.ErrCaptureExceedsHold) {
			t.Fatalf("capture above hold: %v, want ErrCaptureExceedsHold", err)
		}
		wantCredits(t, l, user, luna.Credits{Balance: 100, Reserved: 30, Available: 70})

		// Capture twice with one key: charged once, the rest released.
		for range 2 {
			r, err := l.Capture(ctx, credits.CaptureRequest{ReservationID: first.ID, Amount: 12, IdempotencyKey: "c1"})
			if err != nil {
				t.Fatalf("capture: %v", err)
			}
			if r.Status != credits.StatusCaptured || r.Captured != 12 {
				t.Fatalf("capture result = %+v", r)
			}
		}
		wantCredits(t, l, user, luna.Credits{Balance: 88, Available: 88})
		_, err = l.Capture(ctx, credits.CaptureRequest{ReservationID: first.ID, Amount: 13, IdempotencyKey: "c1"})
		if !errors.Is(err, credits.ErrIdempotencyConflict) {
			t.Fatalf("capture with reused key and other amount: %v, want ErrIdempotencyConflict", err)
		}
		// A different capture or a release of a settled hold is refused.
		_, err = l.Capture(ctx, credits.CaptureRequest{ReservationID: first.ID, Amount: 5, IdempotencyKey: "c2"})
		if !errors.Is(err, credits.ErrReservationSettled) {
			t.Fatalf("second capture: %v, want ErrReservationSettled", err)
		}
		_, err = l.Release(ctx, credits.ReleaseRequest{ReservationID: first.ID})
		if !errors.Is(err, credits.ErrReservationSettled) {
			t.Fatalf("release after capture: %v, want ErrReservationSettled", err)
		}
		wantCredits(t, l, user, luna.Credits{Balance: 88, Available: 88})

		// Release is idempotent with its default key.
		hold, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 50, TTL: time.Hour})
		if err != nil {
			t.Fatalf("reserve: %v", err)
		}
		for range 2 {
			if _, err := l.Release(ctx, credits.ReleaseRequest{ReservationID: hold.ID}); err != nil {
				t.Fatalf("release: %v", err)
			}
		}
		wantCredits(t, l, user, luna.Credits{Balance: 88, Available: 88})
		wantCleanAudit(t, l)
	})
}

func TestConcurrentRetriesWithOneKeyApplyOnce(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := credits.NewLedger(db)
		user := newUser(t, db, "u1")
		grant(t, l, user, 500)
		hold, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 100, TTL: time.Hour})
		if err != nil {
			t.Fatalf("reserve: %v", err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 60)
		for range 20 {
			wg.Add(3)
			go func() {
				defer wg.Done()
				_, err := l.Grant(ctx, credits.GrantRequest{UserID: user, Amount: 10, IdempotencyKey: "bonus"})
				errs <- err
			}()
			go func() {
				defer wg.Done()
				_, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 7, TTL: time.Hour, IdempotencyKey: "once"})
				errs <- err
			}()
			go func() {
				defer wg.Done()
				_, err := l.Capture(ctx, credits.CaptureRequest{ReservationID: hold.ID, Amount: 60})
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("retry failed: %v", err)
			}
		}
		// 500 + 10 granted once, 60 spent once, 7 held once.
		wantCredits(t, l, user, luna.Credits{Balance: 450, Reserved: 7, Available: 443})
		wantCleanAudit(t, l)
	})
}

func TestSweeperVoidsExpiredReservations(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
		l := credits.NewLedger(db, credits.WithClock(clock))
		user := newUser(t, db, "u1")
		grant(t, l, user, 100)

		short, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 60, TTL: time.Minute})
		if err != nil {
			t.Fatalf("reserve: %v", err)
		}
		long, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 40, TTL: time.Hour})
		if err != nil {
			t.Fatalf("reserve: %v", err)
		}
		if _, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 1, TTL: time.Hour}); !errors.Is(err, credits.ErrInsufficientCredits) {
			t.Fatalf("reserve beyond available: %v, want ErrInsufficientCredits", err)
		}
		if n, err := l.SweepExpired(ctx, 100); err != nil || n != 0 {
			t.Fatalf("early sweep = %d, %v; want 0", n, err)
		}

		advance(2 * time.Minute)
		if n, err := l.SweepExpired(ctx, 100); err != nil || n != 1 {
			t.Fatalf("sweep = %d, %v; want 1", n, err)
		}
		wantCredits(t, l, user, luna.Credits{Balance: 100, Reserved: 40, Available: 60})
		r, err := l.GetReservation(ctx, short.ID)
		if err != nil || r.Status != credits.StatusExpired {
			t.Fatalf("expired reservation = %+v, %v", r, err)
		}
		if _, err := l.Capture(ctx, credits.CaptureRequest{ReservationID: short.ID, Amount: 10}); !errors.Is(err, credits.ErrReservationSettled) {
			t.Fatalf("capture of an expired hold: %v, want ErrReservationSettled", err)
		}
		if _, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 60, TTL: time.Hour}); err != nil {
			t.Fatalf("credits not available again after sweep: %v", err)
		}
		if _, err := l.Capture(ctx, credits.CaptureRequest{ReservationID: long.ID, Amount: 40}); err != nil {
			t.Fatalf("capture: %v", err)
		}
		wantCredits(t, l, user, luna.Credits{Balance: 60, Reserved: 60, Available: 0})
		wantCleanAudit(t, l)
	})
}

// A capture racing the sweeper on the same hold settles it exactly once.
func TestCaptureRacingSweeperSettlesOnce(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var offset atomic.Int64
		clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		l := credits.NewLedger(db, credits.WithClock(clock))
		user := newUser(t, db, "u1")
		grant(t, l, user, 10_000)
		var holds []credits.Reservation
		for range 50 {
			r, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 100, TTL: time.Minute})
			if err != nil {
				t.Fatalf("reserve: %v", err)
			}
			holds = append(holds, r)
		}
		offset.Store(int64(2 * time.Minute))
		var wg sync.WaitGroup
		var captured atomic.Int64
		for _, h := range holds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := l.Capture(ctx, credits.CaptureRequest{ReservationID: h.ID, Amount: 30})
				if err == nil {
					captured.Add(1)
				} else if !errors.Is(err, credits.ErrReservationSettled) {
					t.Errorf("capture: %v", err)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.SweepExpired(ctx, 1000); err != nil {
				t.Errorf("sweep: %v", err)
			}
		}()
		wg.Wait()
		if _, err := l.SweepExpired(ctx, 1000); err != nil {
			t.Fatalf("sweep: %v", err)
		}
		n := captured.Load()
		wantCredits(t, l, user, luna.Credits{Balance: 10_000 - 30*n, Available: 10_000 - 30*n})
		wantCleanAudit(t, l)
	})
}

func TestAdjustAndValidation(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := credits.NewLedger(db)
		user := newUser(t, db, "u1")
		grant(t, l, user, 100)
		if _, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 80, TTL: time.Hour}); err != nil {
			t.Fatalf("reserve: %v", err)
		}
		tests := []struct {
			name string
			op   func() error
			want error
		}{
			{"adjust below reserved", func() error {
				_, err := l.Adjust(ctx, credits.AdjustRequest{UserID: user, Amount: -21})
				return err
			}, credits.ErrInsufficientCredits},
			{"adjust zero", func() error {
				_, err := l.Adjust(ctx, credits.AdjustRequest{UserID: user, Amount: 0})
				return err
			}, credits.ErrInvalidAmount},
			{"grant negative", func() error {
				_, err := l.Grant(ctx, credits.GrantRequest{UserID: user, Amount: -5})
				return err
			}, credits.ErrInvalidAmount},
			{"reserve zero", func() error {
				_, err := l.Reserve(ctx, credits.ReserveRequest{UserID: user, Amount: 0, TTL: time.Hour})
				return err
			}, credits.ErrInvalidAmount},
			{"grant unknown user", func() error {
				_, err := l.Grant(ctx, credits.GrantRequest{UserID: "nobody", Amount: 5})
				return err
			}, credits.ErrUserNotFound},
			{"reserve unknown user", func() error {
				_, err := l.Reserve(ctx, credits.ReserveRequest{UserID: "nobody", Amount: 5, TTL: time.Hour})
				return err
			}, credits.ErrUserNotFound},
			{"capture unknown reservation", func() error {
				_, err := l.Capture(ctx, credits.CaptureRequest{ReservationID: "nope", Amount: 5})
				return err
			}, credits.ErrReservationNotFound},
			{"adjust within available", func() error {
				_, err := l.Adjust(ctx, credits.AdjustRequest{UserID: user, Amount: -20, Note: "refund reversal"})
				return err
			}, nil},
		}
		for _, tt := range tests {
			if err := tt.op(); !errors.Is(err, tt.want) {
				t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
			}
		}
		wantCredits(t, l, user, luna.Credits{Balance: 80, Reserved: 80, Available: 0})
		wantCleanAudit(t, l)
	})
}

// The audit must notice a balance that was changed outside the ledger.
func TestAuditFindsTampering(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := credits.NewLedger(db)
		user := newUser(t, db, "u1")
		grant(t, l, user, 100)
		wantCleanAudit(t, l)
		if _, err := db.ExecContext(ctx, `UPDATE users SET credits_balance = 150 WHERE id = $1`, user); err != nil {
			t.Fatalf("tamper: %v", err)
		}
		report, err := l.Audit(ctx)
		if err != nil {
			t.Fatalf("audit: %v", err)
		}
		if len(report.Mismatches) != 1 || report.Mismatches[0].Stored != 150 || report.Mismatches[0].Computed != 100 {
			t.Fatalf("mismatches = %v, want one balance mismatch 150 vs 100", report.Mismatches)
		}
	})
}
