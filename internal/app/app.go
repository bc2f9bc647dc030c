// Package app wires Luna's parts together: it opens the database, applies
// migrations, syncs the models file, builds the services and the HTTP API,
// and runs them until the context ends. `luna serve` and the end-to-end
// tests both start Luna through it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"luna/internal/accounts"
	"luna/internal/api"
	"luna/internal/clerk"
	"luna/internal/credits"
	"luna/internal/models"
	"luna/internal/store"
)

// Config is everything `luna serve` can be told.
type Config struct {
	Addr        string // listen address; "127.0.0.1:0" picks a free port
	DataDir     string // SQLite file and local data
	DatabaseURL string // empty = SQLite in DataDir; postgres://… = PostgreSQL

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
	AuthRateLimit   int           // sign-up/login attempts per client address per minute
	ShutdownTimeout time.Duration // how long running requests get on SIGTERM
	SweepInterval   time.Duration // how often expired credit holds are voided

	Getenv func(string) string // for api_key_env in the models file
	Logger *slog.Logger
}

// App is a running Luna.
type App struct {
	cfg    Config
	logger *slog.Logger
	db     *store.DB
	ledger *credits.Ledger
	api    *api.Server
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
		cfg.ShutdownTimeout = 15 * time.Second
	}
	db, err := store.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, logger: logger, db: db}
	if err := a.init(ctx); err != nil {
		db.Close()
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

	a.ledger = credits.NewLedger(a.db)
	accountService, err := accounts.NewService(a.db, a.ledger, accounts.Config{
		SignupMode: cfg.SignupMode, InitialCredits: cfg.InitialCredits, SessionTTL: cfg.SessionTTL,
	}, nil, logger)
	if err != nil {
		return err
	}

	apiCfg := api.Config{
		DB: a.db, Accounts: accountService, Ledger: a.ledger, AuthMode: cfg.Auth, Logger: logger,
		MaxBodyBytes: cfg.MaxBodyBytes, AuthRateLimit: cfg.AuthRateLimit,
	}
	switch cfg.Auth {
	case api.AuthLocal, "":
		apiCfg.AuthMode, apiCfg.Authenticator = api.AuthLocal, accountService
		logger.Info("built-in accounts", "signup_mode", cfg.SignupMode)
	case api.AuthClerk:
		verifier, err := clerk.NewVerifier(ctx, clerk.VerifierConfig{
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
	a.api = api.New(apiCfg)
	return nil
}

// Handler is the HTTP handler of the API.
func (a *App) Handler() http.Handler { return a.api }

// Routes lists the API's routes.
func (a *App) Routes() []api.RouteInfo { return a.api.Routes() }

// DB is the app's database.
func (a *App) DB() *store.DB { return a.db }

// Ledger is the app's credit ledger.
func (a *App) Ledger() *credits.Ledger { return a.ledger }

// Close releases the database.
func (a *App) Close() error { return a.db.Close() }

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
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.api,
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
	sweeper := &credits.Sweeper{Ledger: a.ledger, Interval: a.cfg.SweepInterval, Logger: a.logger}
	wg.Go(func() { sweeper.Run(bgCtx) })

	a.logger.Info("Luna is listening", "url", "http://"+ln.Addr().String())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	a.logger.Info("shutting down", "timeout", a.cfg.ShutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
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
