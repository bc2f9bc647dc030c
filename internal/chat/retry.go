package chat

import (
	"context"
	"time"
)

// maxRetryDelay caps the wait before a retry, whatever the attempt.
const maxRetryDelay = 30 * time.Second

// retryDelay returns the wait before retry number attempt (1 for the first)
// of an upstream request that failed before its first token: base, doubled
// for each earlier retry and capped at maxRetryDelay, then jittered
// uniformly to between half and one and a half times that, so that replies
// that failed together (a model server restarting) do not all come back at
// the same instant. rnd(n) returns a number in [0, n), e.g. rand.Int64N.
func retryDelay(base time.Duration, attempt int, rnd func(n int64) int64) time.Duration {
	d := base
	for i := 1; i < attempt && d < maxRetryDelay; i++ {
		d *= 2
	}
	d = min(d, maxRetryDelay)
	if d <= 0 {
		return 0
	}
	return d/2 + time.Duration(rnd(int64(d)))
}

// sleepCtx waits for d, or until ctx ends and then returns ctx.Err().
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
