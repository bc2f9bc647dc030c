package images

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"luna/internal/store"
)

// Recover takes over what a previous run left: call it once at start-up,
// before the credit expiry sweeper starts. With SQLite, one process owns
// the database, so every processing job not leased by this process is
// re-queued at once. On both databases the credit holds of the queued and
// processing jobs are renewed: those jobs will run, so an outage longer
// than a hold's lifetime must not void their holds.
func (s *Service) Recover(ctx context.Context) {
	if s.db.Dialect == store.SQLite {
		if n, err := s.requeueAllOthers(ctx); err != nil {
			s.logger.Error("re-queue orphaned image jobs", "err", err)
		} else if n > 0 {
			s.logger.Info("re-queued image jobs left by the previous run", "count", n)
		}
	}
	if err := s.renewQueuedHolds(ctx); err != nil {
		s.logger.Error("renew credit holds of queued image jobs", "err", err)
	}
}

func (s *Service) renewQueuedHolds(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `SELECT reservation_id FROM image_jobs
		WHERE status IN ('pending', 'processing') AND reservation_id IS NOT NULL`)
	if err != nil {
		return fmt.Errorf("list queued image jobs: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("list queued image jobs: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list queued image jobs: %w", err)
	}
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 500)]
		ids = ids[len(batch):]
		if _, err := s.ledger.RenewHolds(ctx, batch, s.cfg.HoldTTL); err != nil {
			return err
		}
	}
	return nil
}

// Run re-queues jobs whose processing instance died (their lease lapsed),
// until ctx ends. Call it once per process, after Recover.
func (s *Service) Run(ctx context.Context) {
	ticker := time.NewTicker(s.cfg.SweepInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			// Each run is bounded, so that a stuck query cannot hold up the
			// sweeper for long.
			runCtx, cancel := context.WithTimeout(ctx, max(s.cfg.SweepInterval, 10*time.Second))
			_, err := s.requeueExpired(runCtx)
			cancel()
			if err != nil && ctx.Err() == nil {
				s.logger.Error("re-queue orphaned image jobs", "err", err)
			}
		}
	}
}

// requeueExpired re-queues processing jobs whose lease lapsed: their
// instance died.
func (s *Service) requeueExpired(ctx context.Context) (int, error) {
	now := store.NowMillis(s.now())
	return s.requeue(ctx, `lease_expires_at < %s`, now, now)
}

// requeueAllOthers re-queues every processing job not leased by this
// process: with SQLite, one process owns the database, so they are all
// left by a previous run.
func (s *Service) requeueAllOthers(ctx context.Context) (int, error) {
	return s.requeue(ctx, `COALESCE(lease_owner, '') <> %s`, s.instanceID, store.NowMillis(s.now()))
}

// requeue re-queues the processing jobs that orphan selects (a condition
// on arg; %s is its placeholder).
func (s *Service) requeue(ctx context.Context, orphan string, arg any, now int64) (int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM image_jobs WHERE status = 'processing' AND `+fmt.Sprintf(orphan, "$1")+` LIMIT 100`, arg)
	if err != nil {
		return 0, fmt.Errorf("find orphaned image jobs: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	count := 0
	for _, id := range ids {
		err := s.db.InTx(ctx, func(tx *sql.Tx) error {
			// Free the lease (reserved for a moment, so that other
			// instances do not re-queue it too) and queue a fresh run.
			res, err := tx.ExecContext(ctx, `UPDATE image_jobs SET lease_owner = NULL, lease_expires_at = $3
				WHERE id = $1 AND status = 'processing' AND `+fmt.Sprintf(orphan, "$2"), id, arg, now+s.cfg.LeaseTTL.Milliseconds())
			if err != nil {
				return fmt.Errorf("release lease of image job %s: %w", id, err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return nil
			}
			if _, err := s.river.InsertTx(ctx, tx, JobArgs{JobID: id}, &river.InsertOpts{MaxAttempts: 20}); err != nil {
				return fmt.Errorf("re-queue image job %s: %w", id, err)
			}
			count++
			return nil
		})
		if err != nil {
			return count, err
		}
		s.logger.Info("re-queued an orphaned image job", "job_id", id)
	}
	return count, nil
}
