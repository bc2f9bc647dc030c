package ratelimit_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"luna"
	"luna/internal/ratelimit"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// clock is a settable time source.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func wantExceeded(t *testing.T, err error, wait time.Duration) {
	t.Helper()
	var ex *ratelimit.ExceededError
	if !errors.As(err, &ex) {
		t.Fatalf("err = %v, want *ExceededError", err)
	}
	if ex.Wait != wait {
		t.Fatalf("wait = %s, want %s", ex.Wait, wait)
	}
	if luna.ErrorCode(err) != luna.CodeRateLimited || luna.ErrorMessage(err) != "slow down" {
		t.Fatalf("code %q message %q", luna.ErrorCode(err), luna.ErrorMessage(err))
	}
}

func TestLimiterWindows(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk := newClock()
		l := ratelimit.New(db, ratelimit.Config{Scope: "user", Limit: 3, Window: time.Minute, Message: "slow down", Now: clk.now})
		other := ratelimit.New(db, ratelimit.Config{Scope: "auth", Limit: 1, Window: time.Minute, Message: "slow down", Now: clk.now})
		for i := range 3 {
			if err := l.Allow(ctx, "alice"); err != nil {
				t.Fatalf("hit %d: %v", i, err)
			}
			clk.advance(10 * time.Second)
		}
		wantExceeded(t, l.Allow(ctx, "alice"), 30*time.Second)
		// Other keys and other scopes count separately.
		if err := l.Allow(ctx, "bob"); err != nil {
			t.Fatalf("bob: %v", err)
		}
		if err := other.Allow(ctx, "alice"); err != nil {
			t.Fatalf("other scope: %v", err)
		}
		// Refused hits count too, and the window does not move.
		clk.advance(29 * time.Second)
		wantExceeded(t, l.Allow(ctx, "alice"), time.Second)
		// A new window starts with the first hit after the old one ended.
		clk.advance(time.Second)
		for i := range 3 {
			if err := l.Allow(ctx, "alice"); err != nil {
				t.Fatalf("new window, hit %d: %v", i, err)
			}
		}
		wantExceeded(t, l.Allow(ctx, "alice"), time.Minute)
	})
}

// Counted inside a transaction, a hit exists only if it commits.
func TestLimiterInTransaction(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := ratelimit.New(db, ratelimit.Config{Scope: "user", Limit: 1, Message: "slow down"})
		rollback := errors.New("rolled back")
		for range 3 {
			err := db.InTx(ctx, func(tx *sql.Tx) error {
				if err := l.AllowTx(ctx, tx, "alice"); err != nil {
					return err
				}
				return rollback
			})
			if !errors.Is(err, rollback) {
				t.Fatalf("err = %v", err)
			}
		}
		if err := db.InTx(ctx, func(tx *sql.Tx) error { return l.AllowTx(ctx, tx, "alice") }); err != nil {
			t.Fatalf("first committed hit: %v", err)
		}
		if err := l.Allow(ctx, "alice"); luna.ErrorCode(err) != luna.CodeRateLimited {
			t.Fatalf("second hit: %v", err)
		}
	})
}

// However the hits interleave, exactly Limit of them are allowed.
func TestLimiterUnderConcurrency(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		// Three limiters on one database stand for three instances.
		var limiters []*ratelimit.Limiter
		for range 3 {
			limiters = append(limiters, ratelimit.New(db, ratelimit.Config{Scope: "user", Limit: 20}))
		}
		var allowed, refused atomic.Int64
		var wg sync.WaitGroup
		for i := range 60 {
			wg.Go(func() {
				err := limiters[i%3].Allow(ctx, "alice")
				switch luna.ErrorCode(err) {
				case luna.CodeRateLimited:
					refused.Add(1)
				case luna.CodeInternal:
					if err != nil {
						t.Errorf("hit %d: %v", i, err)
						return
					}
					allowed.Add(1)
				}
			})
		}
		wg.Wait()
		if allowed.Load() != 20 || refused.Load() != 40 {
			t.Fatalf("allowed %d, refused %d; want 20 and 40", allowed.Load(), refused.Load())
		}
	})
}

func TestPruneDeletesEndedWindows(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk := newClock()
		l := ratelimit.New(db, ratelimit.Config{Scope: "user", Limit: 1, Message: "slow down", Now: clk.now})
		if err := l.Allow(ctx, "old"); err != nil {
			t.Fatal(err)
		}
		clk.advance(2 * time.Minute)
		if err := l.Allow(ctx, "new"); err != nil {
			t.Fatal(err)
		}
		n, err := ratelimit.Prune(ctx, db, clk.now().Add(-time.Minute))
		if err != nil || n != 1 {
			t.Fatalf("pruned %d, %v; want 1", n, err)
		}
		// The recent window survived: its key is still limited.
		wantExceeded(t, l.Allow(ctx, "new"), time.Minute)
		if err := l.Allow(ctx, "old"); err != nil {
			t.Fatalf("pruned key: %v", err)
		}
	})
}

// A Counter counts the same whether a request is counted step by step
// (AllowTx) or as a clause of the caller's statement (Steps, on
// PostgreSQL), in one window, so the two can take turns; Steps' condition
// holds exactly when AllowTx allows.
func TestCounterStepsCountAsAllowTx(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t, store.Postgres)
	clk := newClock()
	l := ratelimit.New(db, ratelimit.Config{Scope: "user", Limit: 3, Window: time.Minute, Message: "slow down", Now: clk.now})
	c := l.Counter("u1")
	bySteps := func() bool {
		var args store.Args
		clause, within := c.Steps(&args)
		var ok bool
		if err := db.QueryRowContext(ctx, `WITH `+clause+` SELECT `+within, args.Values()...).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	byTx := func() error {
		var err error
		if txErr := db.InTx(ctx, func(tx *sql.Tx) error { err = c.AllowTx(ctx, tx); return nil }); txErr != nil {
			t.Fatal(txErr)
		}
		return err
	}
	if !bySteps() {
		t.Fatal("request 1 by steps: over the limit")
	}
	clk.advance(10 * time.Second)
	if err := byTx(); err != nil {
		t.Fatalf("request 2: %v", err)
	}
	clk.advance(10 * time.Second)
	if !bySteps() {
		t.Fatal("request 3 by steps: over the limit")
	}
	clk.advance(10 * time.Second)
	if bySteps() {
		t.Fatal("request 4 by steps: within the limit of 3")
	}
	wantExceeded(t, byTx(), 30*time.Second)
	clk.advance(30 * time.Second) // a new window
	if !bySteps() {
		t.Fatal("first request of the next window: over the limit")
	}
	var none *ratelimit.Counter
	if err := db.InTx(ctx, func(tx *sql.Tx) error { return none.AllowTx(ctx, tx) }); err != nil {
		t.Fatalf("a nil counter counts nothing: %v", err)
	}
}
