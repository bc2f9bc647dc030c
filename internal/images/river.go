package images

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"

	"luna/internal/store"
)

// driver returns River's driver for the database: both work on *sql.Tx,
// so jobs are enqueued inside Luna's own transactions.
func driver(db *store.DB) riverdriver.Driver[*sql.Tx] {
	if db.Dialect == store.Postgres {
		return riverdatabasesql.New(db.DB)
	}
	return riversqlite.New(db.DB)
}

// MigrateQueue applies River's own migrations (its job tables).
func MigrateQueue(ctx context.Context, db *store.DB) error {
	migrator, err := rivermigrate.New(driver(db), nil)
	if err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	if db.Dialect == store.Postgres {
		// Instances starting together take turns.
		conn, err := db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("river migrations: %w", err)
		}
		defer conn.Close()
		const lockID = 7_345_118_001
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, lockID); err != nil {
			return fmt.Errorf("river migrations lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, lockID) // released with the connection anyway
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	return nil
}

func newRiverClient(db *store.DB, s *Service, logger *slog.Logger) (*river.Client[*sql.Tx], error) {
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &worker{s: s}); err != nil {
		return nil, fmt.Errorf("river worker: %w", err)
	}
	cfg := &river.Config{
		Logger:  logger.With("component", "river"),
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: s.cfg.Workers}},
		Workers: workers,
		// A job whose instance died is picked up again after this long; it
		// then follows its recorded upstream job.
		JobTimeout:           s.cfg.Timeout + time.Minute,
		RescueStuckJobsAfter: s.cfg.Timeout + 2*time.Minute,
		FetchPollInterval:    500 * time.Millisecond,
	}
	client, err := river.NewClient(driver(db), cfg)
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	return client, nil
}

// Start processes jobs until Stop.
func (s *Service) Start(ctx context.Context) error {
	if err := s.river.Start(ctx); err != nil {
		return fmt.Errorf("start image worker: %w", err)
	}
	return nil
}

// Stop lets running jobs finish until ctx ends, then cancels them (they
// are retried after the restart, following their upstream jobs).
func (s *Service) Stop(ctx context.Context) error {
	if err := s.river.Stop(ctx); err != nil {
		return s.river.StopAndCancel(context.WithoutCancel(ctx))
	}
	return nil
}
