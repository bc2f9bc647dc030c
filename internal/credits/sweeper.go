package credits

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"luna/internal/store"
)

// SweepExpired voids up to limit active reservations whose expiry has
// passed, each in its own transaction, and returns how many it voided. It is
// safe to run on every instance at once: settling is a conditional update,
// so a reservation is voided (or captured) exactly once.
func (l *Ledger) SweepExpired(ctx context.Context, limit int) (int, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT id FROM credit_reservations
		WHERE status = 'active' AND expires_at <= $1 ORDER BY expires_at LIMIT $2`,
		store.NowMillis(l.now()), limit)
	if err != nil {
		return 0, fmt.Errorf("list expired reservations: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("list expired reservations: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("list expired reservations: %w", err)
	}
	voided := 0
	for _, id := range ids {
		err := l.inTxReservation(ctx, id, func(tx *sql.Tx) error {
			r, err := getReservation(ctx, tx, id)
			if err != nil {
				return err
			}
			_, err = l.settle(ctx, tx, r, KindExpire, StatusExpired, 0, "expire:"+id, "reservation expired", false)
			return err
		})
		if errors.Is(err, ErrReservationSettled) {
			continue // captured or released meanwhile
		}
		if err != nil {
			return voided, fmt.Errorf("void reservation %s: %w", id, err)
		}
		voided++
	}
	return voided, nil
}

// DefaultSweepInterval is how often a Sweeper runs when its Interval is zero.
const DefaultSweepInterval = 30 * time.Second

// Sweeper voids expired reservations periodically.
type Sweeper struct {
	Ledger   *Ledger
	Interval time.Duration // default 30s
	Batch    int           // reservations per run; default 500
	Logger   *slog.Logger
}

// Run sweeps until ctx is cancelled.
func (s *Sweeper) Run(ctx context.Context) {
	interval, batch, logger := s.Interval, s.Batch, s.Logger
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	if batch <= 0 {
		batch = 500
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		runCtx, cancel := context.WithTimeout(ctx, interval)
		n, err := s.Ledger.SweepExpired(runCtx, batch)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Error("credit sweeper failed", "err", err)
		case n > 0:
			logger.Info("voided expired credit reservations", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
