package images

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"luna/internal/credits"
	"luna/internal/imagegen"
	"luna/internal/store"
)

// JobArgs is the River job that processes one image job.
type JobArgs struct {
	JobID string `json:"job_id"`
}

// Kind names the River job kind.
func (JobArgs) Kind() string { return "luna_image" }

type worker struct {
	river.WorkerDefaults[JobArgs]
	s *Service
}

// Timeout leaves the job a margin beyond its own budget, which process
// enforces from the job's start time.
func (w *worker) Timeout(*river.Job[JobArgs]) time.Duration { return w.s.cfg.Timeout + time.Minute }

func (w *worker) Work(ctx context.Context, job *river.Job[JobArgs]) error {
	return w.s.process(ctx, job.Args.JobID)
}

// process runs one image job to its end. Returning an error makes River try
// again later (used when this instance shuts down mid-job): the next attempt
// follows the recorded upstream job instead of submitting again.
func (s *Service) process(ctx context.Context, jobID string) error {
	j, err := s.get(ctx, jobID)
	if err != nil {
		return err
	}
	if j.Status == StatusCompleted || j.Status == StatusFailed {
		return nil
	}
	started, outcome, err := s.start(ctx, j)
	if err != nil {
		return err
	}
	switch outcome {
	case slotBusy:
		// The user already has an image processing: wait for it.
		return river.JobSnooze(s.cfg.SlotWait)
	case leasedElsewhere:
		return nil // another live instance is processing it
	}
	// The job is alive under its lease from now on: so is its credit hold
	// (renewed with the lease), which may have waited long in the queue.
	s.renewHold(ctx, j)
	stopRenewing := s.renewLease(ctx, j)
	defer stopRenewing()
	j.Status, j.StartedAt = StatusProcessing, &started
	s.published(ctx, j)

	// The budget counts from the first start, across restarts.
	budgetCtx, cancel := context.WithDeadline(ctx, started.Add(s.cfg.Timeout))
	defer cancel()
	req := imagegen.Request{PromptID: uuid.NewString(), Prompt: j.Prompt, Width: j.Resolution, Height: j.Resolution, Seed: j.Seed}
	record := func(ctx context.Context, upstreamID string) error {
		_, err := s.db.ExecContext(ctx, `UPDATE image_jobs SET upstream_id = $2 WHERE id = $1`, j.ID, upstreamID)
		if err != nil {
			return fmt.Errorf("record upstream id: %w", err)
		}
		return nil
	}
	result, runErr := s.backend.Run(budgetCtx, req, j.UpstreamID, record)
	if runErr != nil && ctx.Err() != nil && budgetCtx.Err() != nil && time.Now().Before(started.Add(s.cfg.Timeout)) {
		// Shutting down, not timed out: leave the job processing; River
		// retries it after the restart.
		return fmt.Errorf("image job %s interrupted: %w", j.ID, runErr)
	}
	if runErr != nil {
		return s.fail(ctx, j, runErr)
	}
	ext := map[string]string{"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}[result.ContentType]
	key := fmt.Sprintf("images/%s/%s%s", j.UserID, j.ID, ext)
	if err := s.store.Put(ctx, key, result.Data, result.ContentType); err != nil {
		return fmt.Errorf("store image: %w", err) // retried: the upstream job is followed again
	}
	sum := sha256.Sum256(result.Data)
	return s.complete(ctx, j, key, result, hex.EncodeToString(sum[:]))
}

// Outcomes of start.
const (
	startedOK       = iota
	slotBusy        // another of the user's jobs is processing
	leasedElsewhere // another live instance holds this job's lease
)

// start marks the job processing, taking the user's one processing slot
// and the job's lease.
func (s *Service) start(ctx context.Context, j Job) (startedAt time.Time, outcome int, err error) {
	now := s.now()
	outcome = slotBusy
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		took, err := takeSlotTx(ctx, tx, j)
		if err != nil || !took {
			return err
		}
		var at int64
		err = tx.QueryRowContext(ctx, `UPDATE image_jobs SET status = 'processing', started_at = COALESCE(started_at, $2),
				lease_owner = $3, lease_expires_at = $4
			WHERE id = $1 AND status IN ('pending', 'processing')
				AND (lease_owner IS NULL OR lease_owner = $3 OR lease_expires_at < $2)
			RETURNING started_at`, j.ID, store.NowMillis(now), s.instanceID, store.NowMillis(now.Add(s.cfg.LeaseTTL))).Scan(&at)
		if errors.Is(err, sql.ErrNoRows) {
			outcome = leasedElsewhere
			return nil
		}
		if err != nil {
			return fmt.Errorf("mark processing: %w", err)
		}
		startedAt, outcome = store.Time(at), startedOK
		return nil
	})
	return startedAt, outcome, err
}

// renewLease keeps this instance's lease on a job, and the job's credit
// hold, fresh until stopped.
func (s *Service) renewLease(ctx context.Context, j Job) (stop func()) {
	jobID := j.ID
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ticker := time.NewTicker(s.cfg.LeaseTTL / 3)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				now := s.now()
				if _, err := s.db.ExecContext(ctx, `UPDATE image_jobs SET lease_expires_at = $3
					WHERE id = $1 AND lease_owner = $2 AND status = 'processing'`,
					jobID, s.instanceID, store.NowMillis(now.Add(s.cfg.LeaseTTL))); err != nil && ctx.Err() == nil {
					s.logger.Warn("renew image job lease", "job_id", jobID, "err", err)
				}
				s.renewHold(ctx, j)
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// renewHold keeps a running job's credit hold from expiring, so that only
// the holds of orphaned jobs do.
func (s *Service) renewHold(ctx context.Context, j Job) {
	if j.ReservationID == "" {
		return
	}
	if _, err := s.ledger.RenewHolds(ctx, []string{j.ReservationID}, s.cfg.HoldTTL); err != nil && ctx.Err() == nil {
		s.logger.Warn("renew image job credit hold", "job_id", j.ID, "err", err)
	}
}

// complete stores the finished job and captures its credits in one step.
func (s *Service) complete(ctx context.Context, j Job, key string, r imagegen.Result, sum string) error {
	now := s.now()
	finished := false
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE image_jobs SET status = 'completed', storage_key = $2, content_type = $3,
				size_bytes = $4, width = $5, height = $6, sha256 = $7, completed_at = $8
			WHERE id = $1 AND status = 'processing'`,
			j.ID, key, r.ContentType, len(r.Data), r.Width, r.Height, sum, store.NowMillis(now))
		if err != nil {
			return fmt.Errorf("complete image job: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // finished already (a second attempt)
		}
		finished = true
		// Captures the hold; one voided meanwhile is charged from the
		// available balance instead (never below zero): the image is kept.
		if _, err := s.settle(ctx, tx, j, j.Cost); err != nil {
			return fmt.Errorf("charge image credits: %w", err)
		}
		return releaseSlot(ctx, tx, j)
	})
	if err != nil || !finished {
		return err
	}
	done, err := s.get(ctx, j.ID)
	if err == nil {
		s.published(ctx, done)
	}
	s.logger.Info("image completed", "job_id", j.ID, "bytes", len(r.Data))
	return nil
}

// fail marks the job failed with a readable message and releases its
// credits.
func (s *Service) fail(ctx context.Context, j Job, cause error) error {
	code, message := "upstream_failed", "The image could not be generated."
	var genErr *imagegen.Error
	if errors.As(cause, &genErr) {
		code, message = string(genErr.Kind), genErr.Message
	}
	if errors.Is(cause, context.DeadlineExceeded) && (genErr == nil || genErr.Kind == imagegen.KindTimeout) {
		code, message = "timeout", fmt.Sprintf("The image was not ready after %s.", s.cfg.Timeout)
	}
	s.logger.Warn("image failed", "job_id", j.ID, "err", cause)
	now := s.now()
	failed := false
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE image_jobs SET status = 'failed', error_code = $2, error_message = $3, completed_at = $4
			WHERE id = $1 AND status IN ('pending', 'processing')`, j.ID, code, message, store.NowMillis(now))
		if err != nil {
			return fmt.Errorf("fail image job: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		failed = true
		if _, err := s.settle(ctx, tx, j, 0); err != nil {
			return fmt.Errorf("release image credits: %w", err)
		}
		return releaseSlot(ctx, tx, j)
	})
	if err != nil || !failed {
		return err
	}
	if done, err := s.get(ctx, j.ID); err == nil {
		s.published(ctx, done)
	}
	return nil
}

// settle settles the job's hold at cost inside tx (all or nothing: an
// error rolls the job's update back).
func (s *Service) settle(ctx context.Context, tx *sql.Tx, j Job, cost int64) (credits.Settlement, error) {
	if j.ReservationID == "" {
		return credits.Settlement{}, nil
	}
	return s.ledger.SettleTx(ctx, tx, credits.SettleRequest{ReservationID: j.ReservationID, Cost: cost})
}

// takeSlotTx takes the user's one processing slot for j, or finds it
// already j's; false when another job holds it. One statement, so two
// jobs racing for a free slot cannot both take it: on PostgreSQL the
// second insert waits for the first's row and then finds it taken (or
// free again, if the first rolled back or released it); SQLite has one
// writer.
func takeSlotTx(ctx context.Context, tx *sql.Tx, j Job) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO image_slots (user_id, job_id) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET job_id = excluded.job_id WHERE image_slots.job_id = excluded.job_id`, j.UserID, j.ID)
	if err != nil {
		return false, fmt.Errorf("take processing slot: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("take processing slot: %w", err)
	}
	return n == 1, nil
}

// releaseSlot frees the user's processing slot if j holds it.
func releaseSlot(ctx context.Context, tx *sql.Tx, j Job) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM image_slots WHERE user_id = $1 AND job_id = $2`, j.UserID, j.ID); err != nil {
		return fmt.Errorf("release processing slot: %w", err)
	}
	return nil
}
