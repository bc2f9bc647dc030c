// Package images is Luna's image generation: a request reserves credits and
// queues a durable job (River) in one transaction; a worker sends it to the
// image backend (ComfyUI or Runpod), follows it, stores the picture, and
// captures or releases the credits. Jobs survive restarts: one whose
// upstream id is recorded is followed, never submitted twice.
package images

import (
	"context"
	"time"

	"luna"
	"luna/internal/imagegen"
)

// Job statuses.
const (
	StatusPending    = "pending"
	StatusProcessing = "processing"
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
)

// Resolutions users may ask for (square).
var Resolutions = []int{512, 768, 1024}

// MaxPromptChars bounds a prompt.
const MaxPromptChars = 2000

// Errors returned to API clients.
var (
	ErrNotFound  = &luna.Error{Code: luna.CodeNotFound, Message: "Image not found."}
	ErrQueueFull = &luna.Error{Code: luna.CodeRateLimited, Message: "Too many images in progress; wait for one to finish."}
	// ErrClientRequestIDReuse answers a clientRequestId already used for
	// a different request.
	ErrClientRequestIDReuse = &luna.Error{Code: luna.CodeIdempotencyConflict, Message: "This clientRequestId was already used for a different image request."}
)

// Job is one image request.
type Job struct {
	ID              string
	UserID          string
	ConversationID  string
	Prompt          string
	Resolution      int
	Status          string
	Cost            int64
	ReservationID   string
	ClientRequestID string
	UpstreamID      string
	Seed            int64
	StorageKey      string
	ContentType     string
	SizeBytes       int64
	Width, Height   int
	SHA256          string
	ErrorCode       string
	ErrorMessage    string
	CreatedAt       time.Time
	StartedAt       *time.Time
	CompletedAt     *time.Time
}

// Backend makes images; imagegen.ComfyUI and imagegen.Runpod are backends.
type Backend interface {
	Run(ctx context.Context, req imagegen.Request, resumeID string, recordID func(ctx context.Context, upstreamID string) error) (imagegen.Result, error)
}

// Store keeps finished images and signs URLs to them; blob.Local and
// blob.S3 are stores.
type Store interface {
	Put(ctx context.Context, key string, data []byte, contentType string) error
	SignedURL(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// Config holds the image rules chosen by the operator.
type Config struct {
	Cost             int64         // credits per image; 50
	Timeout          time.Duration // give up on a job this long after it started; 5m
	HoldTTL          time.Duration // a job's credit hold expires this long after it was placed or renewed; the worker renews it with the job's lease; Timeout + 30m
	MaxQueuedPerUser int           // pending + processing jobs per user; beyond it 429; 4
	URLTTL           time.Duration // lifetime of image URLs; 1h
	Workers          int           // jobs processed at once by this instance; 4
	SlotWait         time.Duration // how long a job waits before checking again when its user already has one processing; 2s
	LeaseTTL         time.Duration // a processing job's lease; after it lapses another instance re-queues the job; 30s
	SweepInterval    time.Duration // how often lapsed leases are looked for; 5s
}

// DefaultConfig is the configuration a zero Config stands for: the one
// place the image jobs' defaults are written.
func DefaultConfig() Config {
	var c Config
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.Cost <= 0 {
		c.Cost = 50
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Minute
	}
	if c.HoldTTL <= 0 {
		c.HoldTTL = c.Timeout + 30*time.Minute
	}
	if c.MaxQueuedPerUser <= 0 {
		c.MaxQueuedPerUser = 4
	}
	if c.URLTTL <= 0 {
		c.URLTTL = time.Hour
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.SlotWait <= 0 {
		c.SlotWait = 2 * time.Second
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 30 * time.Second
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = 5 * time.Second
	}
}
