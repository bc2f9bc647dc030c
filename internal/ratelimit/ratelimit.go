// Package ratelimit counts requests per key (a user, a client address) in
// fixed windows kept in the database, so that a limit holds for the whole
// deployment: every instance on one PostgreSQL shares the counters, without
// a cache server. SQLite (one instance) takes the same path.
//
// Counting a request is one statement, an atomic upsert of the key's row
// that returns the new count; inside a caller's transaction it commits or
// rolls back with the work it counts.
package ratelimit

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"luna"
	"luna/internal/store"
)

// Querier runs the counting statement: a *sql.DB, or a *sql.Tx to count
// inside a transaction.
type Querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ExceededError is the answer to a request over its limit: it carries the
// stable code rate_limited (through luna.ErrorCode) and how long until the
// window ends, for Retry-After.
type ExceededError struct {
	Message string
	Wait    time.Duration
}

func (e *ExceededError) Error() string {
	return fmt.Sprintf("%s: %s (retry in %s)", luna.CodeRateLimited, e.Message, e.Wait)
}

// Unwrap gives the user-facing error, so that luna.ErrorCode and
// luna.ErrorMessage see rate_limited and the message.
func (e *ExceededError) Unwrap() error {
	return &luna.Error{Code: luna.CodeRateLimited, Message: e.Message}
}

// Limiter allows Limit requests per key in each Window.
type Limiter struct {
	db      *store.DB
	scope   string // keeps limiters' keys apart in the shared table
	limit   int64
	window  time.Duration
	message string
	now     func() time.Time
}

// Config describes a limit.
type Config struct {
	Scope   string        // names the limit; keys of different scopes never collide
	Limit   int           // requests per key per window; at least 1
	Window  time.Duration // default one minute
	Message string        // shown to a limited client
	Now     func() time.Time
}

// New returns a Limiter counting in db.
func New(db *store.DB, cfg Config) *Limiter {
	l := &Limiter{db: db, scope: cfg.Scope, limit: int64(max(cfg.Limit, 1)), window: cfg.Window,
		message: cfg.Message, now: cfg.Now}
	if l.window <= 0 {
		l.window = time.Minute
	}
	if l.message == "" {
		l.message = "Too many requests; try again later."
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l
}

// countSQL counts one hit for a key: a new key, or one whose window has
// ended ($3 is the start of the oldest window still running), starts a
// window at $2 with one hit; otherwise the hit is added to the running
// window. Concurrent upserts of one key serialise on its row, on both
// databases, so no hit is lost.
const countSQL = `INSERT INTO rate_limits AS r (bucket, window_start, hits) VALUES ($1, $2, 1)
	ON CONFLICT (bucket) DO UPDATE SET
		hits = CASE WHEN r.window_start > $3 THEN r.hits + 1 ELSE 1 END,
		window_start = CASE WHEN r.window_start > $3 THEN r.window_start ELSE $2 END
	RETURNING hits, window_start`

// Allow counts one request for key and returns nil when it is within the
// limit, or an *ExceededError.
func (l *Limiter) Allow(ctx context.Context, key string) error {
	return l.AllowTx(ctx, l.db, key)
}

// AllowTx is Allow inside q: in a transaction, the hit is counted only if
// the transaction commits.
func (l *Limiter) AllowTx(ctx context.Context, q Querier, key string) error {
	now := store.NowMillis(l.now())
	window := l.window.Milliseconds()
	var hits, start int64
	if err := q.QueryRowContext(ctx, countSQL, l.scope+":"+key, now, now-window).Scan(&hits, &start); err != nil {
		return fmt.Errorf("count request for the %s rate limit: %w", l.scope, err)
	}
	if hits <= l.limit {
		return nil
	}
	wait := time.Duration(min(max(start+window-now, 0), window)) * time.Millisecond
	return &ExceededError{Message: l.message, Wait: wait}
}

// Counter counts one key's requests inside the transaction of the work
// they ask for (a send, an image): step by step with AllowTx, or, on
// PostgreSQL, as a clause of the caller's statement with Steps.
// A nil *Counter counts nothing.
type Counter struct {
	l   *Limiter
	key string
}

// Counter returns key's counter.
func (l *Limiter) Counter(key string) *Counter { return &Counter{l: l, key: key} }

// AllowTx counts one request inside tx, as Limiter.AllowTx does.
func (c *Counter) AllowTx(ctx context.Context, tx *sql.Tx) error {
	if c == nil {
		return nil
	}
	return c.l.AllowTx(ctx, tx, c.key)
}

// Steps writes the count of one request as a clause of a PostgreSQL
// statement, "rate_count AS (…)", and within, a condition that holds when
// the count is within the limit (a statement that writes only when it
// holds, and fails otherwise, leaves the refusal to AllowTx); their
// arguments are added to args.
func (c *Counter) Steps(args *store.Args) (clause, within string) {
	now := store.NowMillis(c.l.now())
	q := strings.NewReplacer("$1", args.Add(c.l.scope+":"+c.key), "$2", args.Add(now),
		"$3", args.Add(now-c.l.window.Milliseconds())).Replace(countSQL)
	return "rate_count AS (" + q + ")", "(SELECT hits FROM rate_count) <= " + args.Add(c.l.limit)
}

// Prune deletes the counters whose window started before cutoff; a
// cutoff at least one (longest) window ago deletes only ended windows.
func Prune(ctx context.Context, db *store.DB, cutoff time.Time) (int64, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM rate_limits WHERE window_start < $1`, store.NowMillis(cutoff))
	if err != nil {
		return 0, fmt.Errorf("prune rate limits: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// Pruner deletes ended windows periodically, so the table holds only the
// keys seen recently.
type Pruner struct {
	DB       *store.DB
	Interval time.Duration // default one minute
	// Keep is how long a window's counter is kept after it started; at
	// least the longest limiter window. Default ten minutes.
	Keep   time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// Run prunes until ctx is cancelled.
func (p *Pruner) Run(ctx context.Context) {
	interval, keep, logger, now := p.Interval, p.Keep, p.Logger, p.Now
	if interval <= 0 {
		interval = time.Minute
	}
	if keep <= 0 {
		keep = 10 * time.Minute
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		runCtx, cancel := context.WithTimeout(ctx, interval)
		_, err := Prune(runCtx, p.DB, now().Add(-keep))
		cancel()
		if err != nil && ctx.Err() == nil {
			logger.Error("rate limit pruner failed", "err", err)
		}
	}
}
