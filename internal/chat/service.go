package chat

import (
	"context"
	"database/sql"
	"log/slog"
	"time"

	"luna/internal/credits"
	"luna/internal/events"
	"luna/internal/llm"
	"luna/internal/store"
)

// Streamer streams one chat completion; *llm.Client is one.
type Streamer interface {
	Stream(ctx context.Context, req llm.Request, onDelta func(text string)) (llm.Result, error)
}

// PromptCounter counts a chat prompt's tokens the way the model server will
// (asking its tokenizer where it has one); *llm.Client is one. With a
// Streamer that is not one, prompts are bounded by llm.EstimatePromptTokens.
type PromptCounter interface {
	CountPromptTokens(ctx context.Context, req llm.Request) llm.PromptCount
}

// Lease defaults. A running reply's lease is renewed by the flush that
// persists its text (every FlushInterval while text arrives, every
// LeaseRenewEvery while none does), in the flush's one statement, so a short
// lease costs no statement of its own. When an instance dies, another
// settles its replies within LeaseTTL + SweepInterval (4.5 s): the lease
// runs out at most LeaseTTL after the last renewal, which came before the
// death, and the next sweep finds it. A live instance keeps its leases as
// long as a flush completes within LeaseTTL − LeaseRenewEvery (3 s) of the
// previous one; a sweep never interrupts the replies of its own instance.
const (
	DefaultLeaseTTL        = 4 * time.Second
	DefaultLeaseRenewEvery = time.Second
	DefaultSweepInterval   = 500 * time.Millisecond
)

// Config tunes the engine. Zero values take the defaults noted.
type Config struct {
	FlushInterval            time.Duration // how often running replies' text is persisted, in one transaction; 500ms
	LeaseTTL                 time.Duration // a generation's lease; another instance interrupts it after this long without renewal; DefaultLeaseTTL
	LeaseRenewEvery          time.Duration // how often a reply with no new text renews its lease (one with new text does at every flush); DefaultLeaseRenewEvery
	SweepInterval            time.Duration // how often expired leases of other instances are looked for; DefaultSweepInterval
	MaxDuration              time.Duration // longest a reply may run; 15m
	ReservationTTL           time.Duration // a reply's credit hold expires this long after it was placed or last renewed; the engine renews it while the reply's lease lives, so it need not exceed MaxDuration; 30m
	MinReplyTokens           int           // a send is refused (402) when the balance cannot pay for this many output tokens; 32
	HeartbeatEvery           time.Duration // SSE comment interval on idle streams; 15s
	TitleTimeout             time.Duration // 30s
	DefaultFirstTokenTimeout time.Duration // when the model sets none; ReplyIdleTimeout
	// ReplyIdleTimeout ends a reply that gets no new text this long, as an
	// error with its hold released; also the default wait for the first
	// token; 90s.
	ReplyIdleTimeout   time.Duration
	MaxRunningPerUser  int           // replies generating at once per user; beyond it 429; 3
	MaxRunningPerModel int           // upstream requests at once per model on this instance; more wait for a slot; 64
	ModelSlotWait      time.Duration // how long a reply waits for a model slot before failing as busy; 1m
	RetryBackoff       time.Duration // wait before retrying an upstream failure before the first token, jittered to ½–1½ times; 1s
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.FlushInterval, 500*time.Millisecond)
	def(&c.LeaseTTL, DefaultLeaseTTL)
	def(&c.LeaseRenewEvery, DefaultLeaseRenewEvery)
	def(&c.SweepInterval, DefaultSweepInterval)
	def(&c.MaxDuration, 15*time.Minute)
	def(&c.ReservationTTL, 30*time.Minute)
	def(&c.HeartbeatEvery, 15*time.Second)
	def(&c.TitleTimeout, 30*time.Second)
	def(&c.ReplyIdleTimeout, 90*time.Second)
	def(&c.DefaultFirstTokenTimeout, c.ReplyIdleTimeout)
	if c.MinReplyTokens <= 0 {
		c.MinReplyTokens = 32
	}
	if c.MaxRunningPerUser <= 0 {
		c.MaxRunningPerUser = 3
	}
	if c.MaxRunningPerModel <= 0 {
		c.MaxRunningPerModel = 64
	}
	def(&c.ModelSlotWait, time.Minute)
	def(&c.RetryBackoff, time.Second)
}

// Service runs conversations and the generations of their replies.
type Service struct {
	db       *store.DB
	ledger   *credits.Ledger
	bus      *events.Bus
	streamer Streamer
	cfg      Config
	logger   *slog.Logger
	now      func() time.Time
	engine   *engine
	// deleteHooks run inside a conversation's deletion transaction.
	deleteHooks []ConversationDeleteHook
}

// DefaultConfig is the configuration a zero Config stands for: the one
// place chat's defaults are written.
func DefaultConfig() Config {
	var c Config
	c.setDefaults()
	return c
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the Service's logger (default: discard).
func WithLogger(logger *slog.Logger) Option { return func(s *Service) { s.logger = logger } }

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// ConversationDeleteHook runs inside the transaction that deletes a
// conversation, before the conversation's rows go: the package that owns a
// table linking to conversations detaches its rows there (images unlinks
// its jobs), so that the deletion stays one atomic step without chat
// writing another package's table.
type ConversationDeleteHook func(ctx context.Context, tx *sql.Tx, conversationID string) error

// WithConversationDeleteHook adds a hook to every conversation deletion.
func WithConversationDeleteHook(hook ConversationDeleteHook) Option {
	return func(s *Service) { s.deleteHooks = append(s.deleteHooks, hook) }
}

// NewService returns a Service. instanceID names this process in
// generation leases; it must be unique per running process. The engine's
// own work (generations, their final commits, titles) runs under ctx's
// values but not its cancellation: it outlives the requests that start it
// and is stopped by Shutdown.
func NewService(ctx context.Context, db *store.DB, ledger *credits.Ledger, bus *events.Bus, streamer Streamer, instanceID string, cfg Config, opts ...Option) *Service {
	cfg.setDefaults()
	s := &Service{db: db, ledger: ledger, bus: bus, streamer: streamer, cfg: cfg,
		logger: slog.New(slog.DiscardHandler), now: time.Now}
	for _, opt := range opts {
		opt(s)
	}
	s.engine = newEngine(context.WithoutCancel(ctx), s, instanceID)
	return s
}

// publish tells the user's clients that the conversation or message id
// changed (they read it from the database); failures are logged, not
// returned (events are best effort; clients resync on reconnect).
func (s *Service) publish(ctx context.Context, userID, eventType, id string) {
	if err := s.bus.PublishUser(context.WithoutCancel(ctx), userID, eventType, id); err != nil {
		s.logger.Warn("publish event", "type", eventType, "err", err)
	}
}

// publishAll publishes a batch of notifications, in one statement on
// PostgreSQL; failures are logged, as with publish.
func (s *Service) publishAll(ctx context.Context, b *events.Batch) {
	if err := s.bus.PublishBatch(context.WithoutCancel(ctx), b); err != nil {
		s.logger.Warn("publish events", "err", err)
	}
}

// ReplyIdleTimeout is how long a reply may go without new text before it
// ends as an error.
func (s *Service) ReplyIdleTimeout() time.Duration { return s.cfg.ReplyIdleTimeout }
