package images

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"luna"
	"luna/internal/chat"
	"luna/internal/credits"
	"luna/internal/cursor"
	"luna/internal/events"
	"luna/internal/ratelimit"
	"luna/internal/store"
)

// Service creates, lists and processes image jobs.
type Service struct {
	db      *store.DB
	ledger  *credits.Ledger
	bus     *events.Bus
	backend Backend
	store   Store
	cfg     Config
	logger  *slog.Logger
	now     func() time.Time
	river   *river.Client[*sql.Tx]
	// instanceID names this process in job leases.
	instanceID string
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the Service's logger (default: discard).
func WithLogger(logger *slog.Logger) Option { return func(s *Service) { s.logger = logger } }

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// NewService returns a Service; Start must be called to process jobs.
func NewService(db *store.DB, ledger *credits.Ledger, bus *events.Bus, backend Backend, blobs Store, instanceID string, cfg Config, opts ...Option) (*Service, error) {
	cfg.setDefaults()
	s := &Service{db: db, ledger: ledger, bus: bus, backend: backend, store: blobs, cfg: cfg,
		logger: slog.New(slog.DiscardHandler), now: time.Now, instanceID: instanceID}
	for _, opt := range opts {
		opt(s)
	}
	client, err := newRiverClient(db, s, s.logger)
	if err != nil {
		return nil, err
	}
	s.river = client
	return s, nil
}

// Cost is the price of an image in credits.
func (s *Service) Cost() int64 { return s.cfg.Cost }

// CreateRequest is a user's image request.
type CreateRequest struct {
	UserID          string
	Prompt          string
	Resolution      int
	ConversationID  string // optional; must be the user's
	ClientRequestID string // optional; a retried request with the same id returns the first job
	// RateLimit, if set, counts the request against the user's request
	// rate inside its transaction, once it is known not to be a retry:
	// retries are never counted, and neither are requests refused later
	// in the transaction (it rolls back).
	RateLimit *ratelimit.Counter
}

// errRetried ends a request's transaction when it turns out to be a retry
// of a request committed meanwhile.
var errRetried = errors.New("retried image request")

// Create reserves the image's credits and queues its job in one
// transaction, and returns the job (status pending). A retry of an earlier
// request (same ClientRequestID) returns that request's job instead.
func (s *Service) Create(ctx context.Context, req CreateRequest) (Job, error) {
	prompt, err := checkRequest(req)
	if err != nil {
		return Job{}, err
	}
	if req.ClientRequestID != "" {
		if j, err := s.retried(ctx, s.db, req, prompt); err == nil || !errors.Is(err, ErrNotFound) {
			return j, err
		}
	}
	if req.ConversationID != "" {
		// The conversations table is chat's: ask it.
		if err := chat.CheckConversationOwner(ctx, s.db, req.UserID, req.ConversationID); err != nil {
			return Job{}, err
		}
	}
	job := s.newJob(req, prompt)
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		// Lock the user's row so that concurrent requests count the queue
		// one after the other (SQLite serialises anyway).
		if err := credits.LockUserTx(ctx, tx, req.UserID); err != nil {
			return err
		}
		earlier, found, err := s.findRequestTx(ctx, tx, req, prompt)
		if err != nil {
			return err
		}
		if found {
			job = earlier
			return errRetried
		}
		if err := s.checkLimitsTx(ctx, tx, req); err != nil {
			return err
		}
		if job.ReservationID, err = s.holdTx(ctx, tx, job); err != nil {
			return err
		}
		if err := insertJobTx(ctx, tx, job); err != nil {
			return err
		}
		return s.enqueueTx(ctx, tx, job)
	})
	if errors.Is(err, errRetried) {
		return job, nil
	}
	if store.IsUniqueViolation(err) && req.ClientRequestID != "" {
		// A retry committed between this request's check and its insert.
		if j, ferr := s.retried(ctx, s.db, req, prompt); !errors.Is(ferr, ErrNotFound) {
			return j, ferr
		}
	}
	if err != nil {
		return Job{}, err
	}
	s.published(ctx, job)
	return job, nil
}

// checkRequest validates a request and returns its trimmed prompt.
func checkRequest(req CreateRequest) (prompt string, err error) {
	prompt = strings.TrimSpace(req.Prompt)
	switch {
	case prompt == "":
		return "", luna.Errorf(luna.CodeInvalidRequest, "The prompt is empty.")
	case utf8.RuneCountInString(prompt) > MaxPromptChars:
		return "", luna.Errorf(luna.CodeInvalidRequest, "The prompt is longer than %d characters.", MaxPromptChars)
	case !slices.Contains(Resolutions, req.Resolution):
		return "", luna.Errorf(luna.CodeInvalidRequest, "resolution must be 512, 768 or 1024.")
	case len(req.ClientRequestID) > 100:
		return "", luna.Errorf(luna.CodeInvalidRequest, "clientRequestId must be at most 100 characters.")
	}
	return prompt, nil
}

// newJob is the pending job a request asks for, not yet stored.
func (s *Service) newJob(req CreateRequest, prompt string) Job {
	return Job{
		ID: uuid.Must(uuid.NewV7()).String(), UserID: req.UserID, ConversationID: req.ConversationID, Prompt: prompt,
		Resolution: req.Resolution, Status: StatusPending, Cost: s.cfg.Cost, ClientRequestID: req.ClientRequestID,
		Seed: randomSeed(), CreatedAt: s.now().UTC(),
	}
}

// findRequestTx finds the job of an earlier request with req's client id
// that committed while this one waited for the user's lock, so that the
// retry is answered with it before any limit counts it.
func (s *Service) findRequestTx(ctx context.Context, tx *sql.Tx, req CreateRequest, prompt string) (Job, bool, error) {
	if req.ClientRequestID == "" {
		return Job{}, false, nil
	}
	j, err := s.retried(ctx, tx, req, prompt)
	if errors.Is(err, ErrNotFound) {
		return Job{}, false, nil
	}
	if err != nil {
		return Job{}, false, err
	}
	return j, true, nil
}

// checkLimitsTx counts the request against the user's request rate and
// refuses it when the user's queue is full.
func (s *Service) checkLimitsTx(ctx context.Context, tx *sql.Tx, req CreateRequest) error {
	if req.RateLimit != nil {
		if err := req.RateLimit.AllowTx(ctx, tx); err != nil {
			return err
		}
	}
	var queued int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM image_jobs WHERE user_id = $1 AND status IN ('pending', 'processing')`,
		req.UserID).Scan(&queued); err != nil {
		return fmt.Errorf("count queued images: %w", err)
	}
	if queued >= s.cfg.MaxQueuedPerUser {
		return ErrQueueFull
	}
	return nil
}

// holdTx reserves the job's credits and returns the hold's id.
func (s *Service) holdTx(ctx context.Context, tx *sql.Tx, job Job) (string, error) {
	hold, err := s.ledger.ReserveTx(ctx, tx, credits.ReserveRequest{
		UserID: job.UserID, Amount: job.Cost, TTL: s.cfg.HoldTTL,
		IdempotencyKey: "image:" + job.ID, Reference: "image:" + job.ID,
	})
	if err != nil {
		return "", err
	}
	return hold.ID, nil
}

// insertJobTx stores the pending job.
func insertJobTx(ctx context.Context, tx *sql.Tx, job Job) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO image_jobs (id, user_id, conversation_id, prompt, resolution, status, cost,
			reservation_id, client_request_id, seed, created_at)
		VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10)`,
		job.ID, job.UserID, nullString(job.ConversationID), job.Prompt, job.Resolution, job.Cost, job.ReservationID,
		nullString(job.ClientRequestID), job.Seed, store.NowMillis(job.CreatedAt))
	if store.IsForeignKeyViolation(err) && job.ConversationID != "" {
		return &luna.Error{Code: luna.CodeNotFound, Message: "Conversation not found."} // deleted meanwhile
	}
	if err != nil {
		return fmt.Errorf("insert image job: %w", err)
	}
	return nil
}

// enqueueTx queues the River job that processes the image job, in the
// transaction that stores it.
func (s *Service) enqueueTx(ctx context.Context, tx *sql.Tx, job Job) error {
	if _, err := s.river.InsertTx(ctx, tx, JobArgs{JobID: job.ID}, &river.InsertOpts{MaxAttempts: 20}); err != nil {
		return fmt.Errorf("enqueue image job: %w", err)
	}
	return nil
}

func randomSeed() int64 {
	var b [8]byte
	rand.Read(b[:]) // crypto/rand does not fail
	return int64(binary.BigEndian.Uint64(b[:]) >> 1 % 1_000_000_000_000)
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

const jobColumns = `id, user_id, COALESCE(conversation_id, ''), prompt, resolution, status, cost, COALESCE(reservation_id, ''),
	COALESCE(client_request_id, ''), COALESCE(upstream_id, ''), seed, COALESCE(storage_key, ''), COALESCE(content_type, ''),
	COALESCE(size_bytes, 0), COALESCE(width, 0), COALESCE(height, 0), COALESCE(sha256, ''), error_code, error_message,
	created_at, started_at, completed_at`

func scanJob(row interface{ Scan(...any) error }) (Job, error) {
	var j Job
	var created int64
	var started, completed sql.NullInt64
	err := row.Scan(&j.ID, &j.UserID, &j.ConversationID, &j.Prompt, &j.Resolution, &j.Status, &j.Cost, &j.ReservationID,
		&j.ClientRequestID, &j.UpstreamID, &j.Seed, &j.StorageKey, &j.ContentType, &j.SizeBytes, &j.Width, &j.Height,
		&j.SHA256, &j.ErrorCode, &j.ErrorMessage, &created, &started, &completed)
	j.CreatedAt, j.StartedAt, j.CompletedAt = store.Time(created), store.NullTime(started), store.NullTime(completed)
	return j, err
}

// retried returns the job of an earlier request with req's client id,
// ErrNotFound when there is none, or ErrClientRequestIDReuse when that
// request asked for something else.
func (s *Service) retried(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, req CreateRequest, prompt string) (Job, error) {
	j, err := scanJob(q.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM image_jobs WHERE user_id = $1 AND client_request_id = $2`,
		req.UserID, req.ClientRequestID))
	if errors.Is(err, sql.ErrNoRows) {
		return j, ErrNotFound
	}
	if err != nil {
		return j, fmt.Errorf("find retried image request: %w", err)
	}
	if j.Prompt != prompt || j.Resolution != req.Resolution || j.ConversationID != req.ConversationID {
		return Job{}, ErrClientRequestIDReuse
	}
	return j, nil
}

func (s *Service) get(ctx context.Context, id string) (Job, error) {
	j, err := scanJob(s.db.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM image_jobs WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return j, ErrNotFound
	}
	if err != nil {
		return j, fmt.Errorf("get image job: %w", err)
	}
	return j, nil
}

// Get returns one of the user's jobs.
func (s *Service) Get(ctx context.Context, userID, id string) (Job, error) {
	j, err := s.get(ctx, id)
	if err != nil {
		return Job{}, err // not found, or a database failure (a 500, never hidden as 404)
	}
	if j.UserID != userID {
		return Job{}, ErrNotFound
	}
	return j, nil
}

// List returns the user's jobs, newest first, and the next page's cursor.
func (s *Service) List(ctx context.Context, userID string, limit int, after string) ([]Job, string, error) {
	keyset, err := cursor.NewKeyset("created_at", limit, 30, after)
	if err != nil {
		return nil, "", err
	}
	query, args := keyset.SQL(`SELECT `+jobColumns+` FROM image_jobs WHERE user_id = $1`, []any{userID})
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list images: %w", err)
	}
	defer rows.Close()
	var list []Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list images: %w", err)
		}
		list = append(list, j)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list images: %w", err)
	}
	list, next := cursor.Next(list, keyset.Limit, func(j Job) cursor.Cursor {
		return cursor.Cursor{At: store.NowMillis(j.CreatedAt), ID: j.ID}
	})
	return list, next, nil
}

// View returns the JSON view of a job, with a fresh signed URL when its
// image is stored.
func (s *Service) View(ctx context.Context, j Job) (JobJSON, error) {
	v := view(j)
	if j.Status == StatusCompleted && j.StorageKey != "" {
		url, err := s.store.SignedURL(ctx, j.StorageKey, s.cfg.URLTTL)
		if err != nil {
			return v, fmt.Errorf("sign image URL: %w", err)
		}
		v.Image = &ImageJSON{URL: url, ExpiresAt: s.now().Add(s.cfg.URLTTL).UTC(), ContentType: j.ContentType,
			Width: j.Width, Height: j.Height, SizeBytes: j.SizeBytes, SHA256: j.SHA256}
	}
	return v, nil
}

// published tells the user's clients that a job changed, and their
// credits (they read both from the database).
func (s *Service) published(ctx context.Context, j Job) {
	ctx = context.WithoutCancel(ctx)
	if err := s.bus.PublishUser(ctx, j.UserID, events.ImageUpdated, j.ID); err != nil {
		s.logger.Warn("publish image event", "err", err)
	}
	if err := s.bus.PublishUser(ctx, j.UserID, events.CreditsUpdated, ""); err != nil {
		s.logger.Warn("publish credits event", "err", err)
	}
}

// DetachConversationTx unlinks the jobs made from a conversation that is
// being deleted, inside the deletion's transaction: their images stay in
// the gallery with no conversation. It is chat's ConversationDeleteHook
// (chat cannot import images).
func DetachConversationTx(ctx context.Context, tx *sql.Tx, conversationID string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE image_jobs SET conversation_id = NULL WHERE conversation_id = $1`, conversationID); err != nil {
		return fmt.Errorf("unlink images: %w", err)
	}
	return nil
}
