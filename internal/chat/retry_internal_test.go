package chat

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	lowest := func(int64) int64 { return 0 }
	highest := func(n int64) int64 { return n - 1 }
	tests := []struct {
		base     time.Duration
		attempt  int
		rnd      func(int64) int64
		min, max time.Duration
	}{
		{time.Second, 1, lowest, 500 * time.Millisecond, 500 * time.Millisecond},
		{time.Second, 1, highest, 1500*time.Millisecond - 1, 1500*time.Millisecond - 1},
		{time.Second, 2, lowest, time.Second, time.Second},
		{time.Second, 3, highest, 6*time.Second - 1, 6*time.Second - 1},
		{time.Second, 50, highest, 45*time.Second - 1, 45*time.Second - 1}, // capped at 30 s before jitter
		{0, 1, highest, 0, 0},
	}
	for _, tt := range tests {
		got := retryDelay(tt.base, tt.attempt, tt.rnd)
		if got < tt.min || got > tt.max {
			t.Errorf("retryDelay(%v, %d) = %v, want within [%v, %v]", tt.base, tt.attempt, got, tt.min, tt.max)
		}
	}
	// The jitter spreads retries: 100 draws from a seeded source are not all equal.
	seen := map[time.Duration]bool{}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		seen[retryDelay(time.Second, 1, rnd.Int64N)] = true
	}
	if len(seen) < 50 {
		t.Errorf("%d distinct delays in 100 draws, want them spread", len(seen))
	}
}

func TestSleepCtxEndsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	done := make(chan error, 1)
	go func() { done <- sleepCtx(ctx, time.Hour) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("sleepCtx = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sleepCtx did not end with its context")
	}
	if err := sleepCtx(t.Context(), 0); err != nil {
		t.Fatalf("sleepCtx(0) = %v", err)
	}
}
