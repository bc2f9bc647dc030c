// Package app wires Luna's parts together: it opens the database, applies
// migrations, syncs the models file, builds the services and the HTTP API,
// and runs them until the context ends. `luna serve` and the end-to-end
// tests both start Luna through it.
package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"luna/internal/accounts"
	"luna/internal/api"
	"luna/internal/chat"
	"luna/internal/clerk"
	"luna/internal/credits"
	"luna/internal/events"
	"luna/internal/images"
	"luna/internal/inprocess"
	"luna/internal/llm"
	"luna/internal/llm/demo"
	"luna/internal/models"
	"luna/internal/ratelimit"
	"luna/internal/store"
	"luna/internal/web"
)

// Config is everything `luna serve` can be told.
type Config struct {
	Addr        string // listen address; "127.0.0.1:0" picks a free port
	DataDir     string // SQLite file and local data
	DatabaseURL string // empty = SQLite in DataDir; postgres://… = PostgreSQL
	// DatabaseConns is the most connections this instance opens to
	// PostgreSQL (ignored on SQLite).
	DatabaseConns int

	Auth           string        // api.AuthLocal or api.AuthClerk
	SignupMode     string        // accounts.SignupOpen / SignupInvite / SignupClosed
	InitialCredits int64         // granted once to every new user
	SessionTTL     time.Duration // built-in session lifetime

	ModelsFile string // TOML models file; empty = keep the models already in the database

	ClerkIssuer            string
	ClerkJWKSURL           string
	ClerkPublicKey         string // PEM, instead of a JWKS URL
	ClerkAuthorizedParties []string
	ClerkWebhookSecret     string

	MaxBodyBytes    int64
	AuthRateLimit   int           // sign-up/login attempts per client address per minute, all instances together
	UserRateLimit   int           // messages, image requests and new conversations per user per minute, all instances together
	TrustProxy      bool          // count clients by X-Forwarded-For (behind a reverse proxy)
	ShutdownTimeout time.Duration // how long running requests get on SIGTERM
	SweepInterval   time.Duration // how often expired credit holds are voided
	// SessionCheckInterval is how often open event streams re-check their
	// session (a safety net: sign-outs and deleted users close streams at
	// once through the events bus); default 30s.
	SessionCheckInterval time.Duration

	Chat   chat.Config // generation engine tuning; zero values take defaults
	Images ImageConfig
	// Demo serves the built-in demo model in-process and registers it as
	// the only model. It is on when no models file is given.
	Demo bool

	Getenv func(string) string // for api_key_env in the models file
	Logger *slog.Logger
}

// DefaultConfig is the configuration `luna serve` starts from: its flags'
// defaults. The values of each part come from that part's own defaults
// (chat, images, accounts, api), written once there; zero fields of a
// Config passed to New take the same defaults.
func DefaultConfig() Config {
	acc, apiDef := accounts.DefaultConfig(), api.DefaultConfig()
	return Config{
		Addr: "127.0.0.1:8080", DatabaseConns: store.DefaultPostgresConns, Auth: api.AuthLocal,
		SignupMode: acc.SignupMode, InitialCredits: acc.InitialCredits, SessionTTL: acc.SessionTTL,
		MaxBodyBytes: apiDef.MaxBodyBytes, AuthRateLimit: apiDef.AuthRateLimit, UserRateLimit: apiDef.UserRateLimit,
		SessionCheckInterval: apiDef.SessionCheckEvery,
		ShutdownTimeout:      15 * time.Second,
		SweepInterval:        credits.DefaultSweepInterval,
		Chat:                 chat.DefaultConfig(),
		Images:               ImageConfig{Storage: "local", Jobs: images.DefaultConfig()},
	}
}

// App is a running Luna.
type App struct {
	cfg      Config
	logger   *slog.Logger
	db       *store.DB
	ledger   *credits.Ledger
	bus      *events.Bus
	chat     *chat.Service
	images   *images.Service
	demos    []*inprocess.Server // the demo endpoints, when they are used
	api      *api.Server
	handler  http.Handler
	bgCtx    context.Context // lives until Close: the event listener
	bgCancel context.CancelFunc
}

// New prepares Luna: database open and migrated, models synced, services and
// API built. Call Run to serve, Close to release it.
func New(ctx context.Context, cfg Config) (*App, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Getenv == nil {
		cfg.Getenv = func(string) string { return "" }
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultConfig().ShutdownTimeout
	}
	db, err := store.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	db.SetPoolSize(cfg.DatabaseConns)
	a := &App{cfg: cfg, logger: logger, db: db}
	a.bgCtx, a.bgCancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := a.init(ctx); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *App) init(ctx context.Context) error {
	cfg, logger := a.cfg, a.logger
	applied, err := a.db.Migrate(ctx)
	if err != nil {
		return err
	}
	logger.Info("database ready", "dialect", a.db.Dialect, "location", a.db.Location, "migrations_applied", applied)

	if cfg.ModelsFile != "" {
		list, err := models.LoadFile(cfg.ModelsFile, cfg.Getenv)
		if err != nil {
			return err
		}
		if err := models.Sync(ctx, a.db, list, time.Now()); err != nil {
			return err
		}
		logger.Info("models synced", "file", cfg.ModelsFile, "count", len(list))
	}

	if a.db.Dialect == store.Postgres {
		bus, ready := events.NewPostgres(a.bgCtx, a.db.DB, cfg.DatabaseURL, logger)
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			logger.Warn("event listener not connected yet; live events may be late")
		}
		a.bus = bus
	} else {
		a.bus = events.NewLocal()
	}
	// Grants, adjustments and expired holds change balances outside the
	// chat and image flows: tell the user's clients.
	a.ledger = credits.NewLedger(a.db, credits.WithChangeHook(func(ctx context.Context, userID string) {
		if err := a.bus.PublishUser(ctx, userID, events.CreditsUpdated, ""); err != nil {
			logger.Warn("publish credits event", "err", err)
		}
	}))
	instanceID := newInstanceID()
	var llmOptions []llm.Option
	if cfg.Demo {
		srv := inprocess.Start(demo.NewServer(demo.Options{Logger: logger}), logger)
		a.demos = append(a.demos, srv)
		llmOptions = append(llmOptions, llm.WithLocalHost(demoModelHost, srv.Transport()))
		if err := a.registerDemoModel(ctx); err != nil {
			return err
		}
	}
	a.chat = chat.NewService(ctx, a.db, a.ledger, a.bus, llm.NewClient(logger, llmOptions...), instanceID, cfg.Chat, chat.WithLogger(logger),
		chat.WithConversationDeleteHook(images.DetachConversationTx)) // image_jobs is images' table
	logger.Info("instance", "id", instanceID)

	if err := images.MigrateQueue(ctx, a.db); err != nil {
		return err
	}
	imageGen, imageStore, localFiles, err := a.newImageParts(ctx)
	if err != nil {
		return err
	}
	if a.images, err = images.NewService(a.db, a.ledger, a.bus, imageGen, imageStore, instanceID, cfg.Images.Jobs, images.WithLogger(logger)); err != nil {
		return err
	}
	accountService, err := accounts.NewService(a.db, a.ledger, accounts.Config{
		SignupMode: cfg.SignupMode, InitialCredits: cfg.InitialCredits, SessionTTL: cfg.SessionTTL,
	}, accounts.WithLogger(logger))
	if err != nil {
		return err
	}

	apiCfg := api.Config{
		DB: a.db, Accounts: accountService, Ledger: a.ledger, Chat: a.chat, Images: a.images, Bus: a.bus, AuthMode: cfg.Auth, Logger: logger,
		MaxBodyBytes: cfg.MaxBodyBytes, AuthRateLimit: cfg.AuthRateLimit, UserRateLimit: cfg.UserRateLimit,
		ImageCost: a.images.Cost(), TrustProxy: cfg.TrustProxy, SessionCheckEvery: cfg.SessionCheckInterval,
	}
	switch cfg.Auth {
	case api.AuthLocal, "":
		apiCfg.AuthMode, apiCfg.Authenticator = api.AuthLocal, accountService
		logger.Info("built-in accounts", "signup_mode", cfg.SignupMode)
	case api.AuthClerk:
		// The JWKS refresh runs until Close.
		verifier, err := clerk.NewVerifier(a.bgCtx, clerk.VerifierConfig{
			Issuer: cfg.ClerkIssuer, JWKSURL: cfg.ClerkJWKSURL, PublicKeyPEM: cfg.ClerkPublicKey,
			AuthorizedParties: cfg.ClerkAuthorizedParties, Logger: logger,
		})
		if err != nil {
			return fmt.Errorf("clerk: %w", err)
		}
		apiCfg.Authenticator = accounts.ClerkAuthenticator{Verifier: verifier, Accounts: accountService}
		if cfg.ClerkWebhookSecret != "" {
			if apiCfg.ClerkWebhooks, err = clerk.NewWebhookVerifier(cfg.ClerkWebhookSecret); err != nil {
				return err
			}
		} else {
			logger.Warn("LUNA_CLERK_WEBHOOK_SECRET is not set: Clerk webhooks are refused; users are created on their first request")
		}
		logger.Info("Clerk accounts", "issuer", cfg.ClerkIssuer)
	default:
		return fmt.Errorf("auth %q: want local or clerk", cfg.Auth)
	}
	a.api = api.New(ctx, apiCfg)
	mux := http.NewServeMux()
	mux.Handle("/", a.api)
	webApp := web.Handler(plainHTTPImageOrigins(cfg.Images)...)
	mux.Handle("GET /{$}", webApp)
	mux.Handle("GET /static/", webApp)
	if localFiles != nil {
		mux.Handle(filesPrefix+"/", localFiles.Handler())
	}
	a.handler = mux
	return nil
}

// The demo endpoints' hosts. They are served in-process (package
// inprocess) to Luna's own clients only, never on a listening address:
// the demo image endpoint lists every user's prompts. Names under .invalid
// resolve nowhere, so a request for them can reach nothing else.
const (
	demoModelHost  = "demo-model.luna.invalid"
	demoImagesHost = "demo-images.luna.invalid"
)

// DemoModelID is the id of the built-in demo model.
const DemoModelID = "luna-demo"

// registerDemoModel makes the demo model the only active model.
func (a *App) registerDemoModel(ctx context.Context) error {
	m := models.Model{
		ID: DemoModelID, DisplayName: "Luna Demo (placeholder text)", Demo: true, Active: true,
		Description: "A built-in demo that streams placeholder text, so Luna works without a GPU. Configure real models with --models-file.",
		BaseURL:     "http://" + demoModelHost + "/v1", ServedModelName: demo.ModelName,
		ContextTokens: 8192, MaxOutputTokens: 512, MillicreditsPer1K: models.DefaultMillicreditsPer1K,
		FirstTokenTimeout: 10 * time.Second,
	}
	if err := models.Sync(ctx, a.db, []models.Model{m}, time.Now()); err != nil {
		return err
	}
	a.logger.Info("DEMO MODE: no models file given; serving the built-in demo model (placeholder text, no GPU)", "model", DemoModelID)
	return nil
}

func newInstanceID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b) // crypto/rand does not fail
	return fmt.Sprintf("%s-%d-%x", host, os.Getpid(), b)
}

// DB is the app's database.
func (a *App) DB() *store.DB { return a.db }

// Ledger is the credit ledger the running app uses: its changes are
// published to the user's clients (/v1/events). It is part of App's API for
// programs that embed Luna and grant or adjust credits in-process, and for
// tests that do so behind the API's back: a ledger opened separately on the
// same database (as `luna credits` does) reaches running servers' clients
// only on PostgreSQL, through the database.
func (a *App) Ledger() *credits.Ledger { return a.ledger }

// Close stops the event listener and the demo endpoints and releases the
// database.
func (a *App) Close() error {
	a.bgCancel()
	for _, srv := range a.demos {
		srv.Close() // closing in-memory connections
	}
	return a.db.Close()
}

// Listen opens the configured address.
func (a *App) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", a.cfg.Addr, err)
	}
	return ln, nil
}

// Serve serves HTTP on ln and runs the background work until ctx ends, then
// shuts down gracefully: new connections are refused, running requests get
// ShutdownTimeout to finish.
//
// It speaks HTTP/1.1 and, with a client or reverse proxy that opens the
// connection with HTTP/2's preface (h2c with prior knowledge), HTTP/2 on the
// same port, so a browser's many event and reply streams are not capped at
// six connections per host. HTTP/2 over TLS needs a TLS listener, which a
// TLS-terminating proxy in front of Luna provides.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Protocols:         &protocols,
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	var wg sync.WaitGroup
	bgCtx, stopBackground := context.WithCancel(ctx)
	defer func() {
		stopBackground()
		wg.Wait()
	}()
	// Replies left running by a previous run release their holds, and
	// queued image jobs renew theirs, before the expiry sweeper starts
	// (after a long outage every hold is due).
	a.chat.Recover(bgCtx)
	a.images.Recover(bgCtx)
	sweeper := &credits.Sweeper{Ledger: a.ledger, Interval: a.cfg.SweepInterval, Logger: a.logger}
	wg.Go(func() { sweeper.Run(bgCtx) })
	limitPruner := &ratelimit.Pruner{DB: a.db, Logger: a.logger}
	wg.Go(func() { limitPruner.Run(bgCtx) })
	wg.Go(func() { a.chat.Run(bgCtx) })
	wg.Go(func() { a.images.Run(bgCtx) })
	if err := a.images.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	a.logger.Info("Luna is listening", "url", "http://"+ln.Addr().String())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	a.logger.Info("shutting down: running replies may finish", "timeout", a.cfg.ShutdownTimeout)
	graceCtx, cancelGrace := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownTimeout)
	var stopping sync.WaitGroup
	stopping.Go(func() { a.chat.Shutdown(graceCtx) }) // refuses new sends; interrupts what is still running at the deadline
	stopping.Go(func() {
		// Running image jobs may finish; the rest are retried after the
		// restart, following their upstream jobs.
		if err := a.images.Stop(graceCtx); err != nil {
			a.logger.Warn("stop image worker", "err", err)
		}
	})
	stopping.Wait()
	cancelGrace()
	a.api.CloseStreams()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	a.logger.Info("stopped")
	return nil
}
