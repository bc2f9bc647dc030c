// Package cli is the `luna` command: `serve` runs the server, `migrate`
// prepares a database, and the admin commands (users, credits, invites)
// let the operator manage a beta from the shell.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"luna/internal/accounts"
	"luna/internal/app"
	"luna/internal/credits"
	"luna/internal/events"
	"luna/internal/store"
)

// Env is the process environment the command runs in.
type Env struct {
	Args   []string // without the program name
	Getenv func(string) string
	Stdout io.Writer
	Stderr io.Writer
}

// ErrUsage marks a command-line mistake; main exits with status 2.
var ErrUsage = errors.New("usage error")

// ErrAuditFailed is returned when `luna credits audit` finds mismatches.
var ErrAuditFailed = errors.New("credit audit found mismatches")

const usage = `Luna: a self-hosted backend for an AI chat app.

Usage:
  luna serve [flags]                     run the server (see luna serve --help)
  luna migrate [flags]                   apply database migrations and exit
  luna users list [--limit N]            list users with their credits
  luna credits grant --user ID|EMAIL --amount N [--note TEXT] [--key KEY]
  luna credits audit                     recompute every balance from the ledger; exit 1 on mismatch
  luna invites create [--uses N] [--credits N] [--expires 720h] [--count N] [--note TEXT]
  luna invites list
  luna backup --to FILE [--force]        copy the SQLite database while the server runs (PostgreSQL: pg_dump)
  luna check [serve flags]               check that models, image backend, storage and Clerk answer; exit 1 on failure

Every command takes --database-url and --data-dir (env LUNA_DATABASE_URL, LUNA_DATA_DIR).
`

// Run runs the luna command.
func Run(ctx context.Context, env Env) error {
	if len(env.Args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return ErrUsage
	}
	cmd, rest := env.Args[0], env.Args[1:]
	sub := ""
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		sub = rest[0]
	}
	switch {
	case cmd == "serve":
		return runServe(ctx, env, rest)
	case cmd == "migrate":
		return runMigrate(ctx, env, rest)
	case cmd == "users" && sub == "list":
		return runUsersList(ctx, env, rest[1:])
	case cmd == "credits" && sub == "grant":
		return runCreditsGrant(ctx, env, rest[1:])
	case cmd == "credits" && sub == "audit":
		return runCreditsAudit(ctx, env, rest[1:])
	case cmd == "invites" && sub == "create":
		return runInvitesCreate(ctx, env, rest[1:])
	case cmd == "invites" && sub == "list":
		return runInvitesList(ctx, env, rest[1:])
	case cmd == "check":
		return runCheck(ctx, env, rest)
	case cmd == "backup":
		return runBackup(ctx, env, rest)
	case cmd == "help" || cmd == "-h" || cmd == "--help":
		fmt.Fprint(env.Stdout, usage)
		return nil
	default:
		fmt.Fprintf(env.Stderr, "luna: unknown command %q\n\n%s", strings.TrimSpace(cmd+" "+sub), usage)
		return ErrUsage
	}
}

// dbFlags are shared by every command that opens the database.
type dbFlags struct {
	dataDir     string
	databaseURL string
}

func (d *dbFlags) register(fs *flagSet) {
	fs.String(&d.dataDir, "data-dir", "./data", "directory for the SQLite database and local files")
	fs.String(&d.databaseURL, "database-url", "", "empty for SQLite in the data dir, or postgres://user:pass@host/db")
}

// openDB opens and migrates the database for an admin command.
func (d *dbFlags) open(ctx context.Context) (*store.DB, error) {
	db, err := store.Open(ctx, d.databaseURL, d.dataDir)
	if err != nil {
		return nil, err
	}
	if _, err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func parseFlags(fs *flagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		fmt.Fprintf(stderr, "luna %s: %v\n", fs.Name(), err)
		return ErrUsage
	}
	return nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
}

func runServe(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet("serve", env.Getenv)
	var sf serveFlags
	sf.register(fs)
	if err := parseFlags(fs, args, env.Stderr); err != nil {
		return err
	}
	cfg, err := sf.config(env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "luna serve: %v\n", err)
		return ErrUsage
	}
	a, err := app.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := a.Listen()
	if err != nil {
		return err
	}
	return a.Serve(ctx, ln)
}

// serveFlags are the flags of `serve`, which `check` reads too.
type serveFlags struct {
	db                                         dbFlags
	cfg                                        app.Config
	parties, logLevel, logFormat, imageHeaders string
}

func (sf *serveFlags) register(fs *flagSet) {
	sf.db.register(fs)
	def := app.DefaultConfig()
	cfg := &sf.cfg
	fs.String(&cfg.Addr, "addr", def.Addr, "listen address; 127.0.0.1:0 picks a free port")
	fs.Int(&cfg.DatabaseConns, "database-connections", def.DatabaseConns, "PostgreSQL: the most connections this instance opens; keep the sum over all instances under the server's max_connections (100 by default)")
	fs.String(&cfg.Auth, "auth", def.Auth, "identity: local (built-in email + password accounts) or clerk")
	fs.String(&cfg.SignupMode, "signup-mode", def.SignupMode, "built-in accounts: open, invite (invite code required) or closed")
	fs.Int64(&cfg.InitialCredits, "initial-credits", def.InitialCredits, "credits granted once to every new user")
	fs.Duration(&cfg.SessionTTL, "session-ttl", def.SessionTTL, "lifetime of a built-in session token")
	fs.String(&cfg.ModelsFile, "models-file", "", "TOML file of text models (see config/models.example.toml); without it, the built-in demo model is served")
	fs.String(&cfg.ClerkIssuer, "clerk-issuer", "", "Clerk: expected token issuer (your Frontend API URL)")
	fs.String(&cfg.ClerkJWKSURL, "clerk-jwks-url", "", "Clerk: JWKS URL, e.g. https://<frontend-api>/.well-known/jwks.json")
	fs.String(&cfg.ClerkPublicKey, "clerk-public-key", "", "Clerk: PEM public key, instead of a JWKS URL (networkless)")
	fs.String(&sf.parties, "clerk-authorized-parties", "", "Clerk: comma-separated allowed azp origins (tokens without azp are accepted)")
	fs.String(&cfg.ClerkWebhookSecret, "clerk-webhook-secret", "", "Clerk: webhook signing secret (whsec_...)")
	fs.Int64(&cfg.MaxBodyBytes, "max-body-bytes", def.MaxBodyBytes, "largest JSON request body")
	fs.Int(&cfg.AuthRateLimit, "auth-rate-limit", def.AuthRateLimit, "sign-up and login attempts per client address per minute, all instances together")
	fs.Bool(&cfg.TrustProxy, "trust-proxy", false, "behind a reverse proxy: rate-limit sign-in by the client address in X-Forwarded-For")
	fs.Int(&cfg.UserRateLimit, "user-rate-limit", def.UserRateLimit, "messages, image requests and new conversations per user per minute, all instances together (429 beyond)")
	fs.Int(&cfg.Chat.MaxRunningPerUser, "max-replies-per-user", def.Chat.MaxRunningPerUser, "replies generating at once per user (429 beyond)")
	fs.Int(&cfg.Chat.MaxRunningPerModel, "max-requests-per-model", def.Chat.MaxRunningPerModel, "upstream requests (replies and titles) at once per model on this instance; more wait for a slot")
	fs.Duration(&cfg.ShutdownTimeout, "shutdown-timeout", def.ShutdownTimeout, "how long running requests may finish on SIGINT/SIGTERM")
	fs.Duration(&cfg.SweepInterval, "sweep-interval", def.SweepInterval, "how often expired credit reservations are voided")
	fs.Duration(&cfg.Chat.LeaseTTL, "generation-lease", def.Chat.LeaseTTL, "a reply's lease: another instance interrupts a reply whose instance stopped renewing it (every second, or every flush while text arrives) for this long")
	fs.Duration(&cfg.Chat.MaxDuration, "max-reply-duration", def.Chat.MaxDuration, "longest a reply may generate")
	fs.Duration(&cfg.Chat.ReplyIdleTimeout, "reply-idle-timeout", def.Chat.ReplyIdleTimeout, "a reply with no new text this long (first token included) ends as an error, its credits released")
	ic := &cfg.Images
	fs.String(&ic.Backend, "image-backend", "", "images: comfyui, runpod, or empty for the built-in demo endpoint")
	fs.String(&ic.ComfyUIURL, "comfyui-url", "", "images: ComfyUI base URL, e.g. http://gpu1:8188")
	fs.String(&ic.RunpodEndpointURL, "runpod-endpoint-url", "", "images: Runpod worker-comfyui endpoint, https://api.runpod.ai/v2/<endpoint id>")
	fs.String(&ic.RunpodAPIKey, "runpod-api-key", "", "images: Runpod API key")
	fs.String(&sf.imageHeaders, "image-backend-headers", "", "images: extra headers for the backend, \"Name: value; Other: value\"")
	fs.String(&ic.WorkflowFile, "image-workflow", "", "images: API-format workflow file; empty = built-in FLUX schnell")
	fs.String(&ic.WorkflowMapping, "image-workflow-mapping", "", "images: with --image-workflow, prompt=NODE.INPUT,width=…,height=…,seed=…,steps=…")
	fs.Int64(&ic.Jobs.Cost, "image-cost", def.Images.Jobs.Cost, "images: credits per image")
	fs.Duration(&ic.Jobs.Timeout, "image-timeout", def.Images.Jobs.Timeout, "images: give up on a job this long after it started")
	fs.Int(&ic.Jobs.MaxQueuedPerUser, "image-queue-per-user", def.Images.Jobs.MaxQueuedPerUser, "images: pending + processing jobs per user (429 beyond)")
	fs.Duration(&ic.Jobs.URLTTL, "image-url-ttl", def.Images.Jobs.URLTTL, "images: lifetime of signed image URLs")
	fs.Duration(&ic.Jobs.LeaseTTL, "image-lease", def.Images.Jobs.LeaseTTL, "images: a processing job is re-queued by another instance after its instance stopped renewing it for this long")
	fs.String(&ic.Storage, "storage", def.Images.Storage, "images: local (data dir) or s3")
	fs.String(&ic.PublicURL, "public-url", "", "absolute URL clients reach Luna at (makes local image URLs absolute), e.g. https://luna.example.com")
	fs.String(&ic.S3.Endpoint, "s3-endpoint", "", "S3: endpoint host:port or URL")
	fs.String(&ic.S3.Bucket, "s3-bucket", "", "S3: bucket")
	fs.String(&ic.S3.Region, "s3-region", "", "S3: region")
	fs.String(&ic.S3.AccessKey, "s3-access-key", "", "S3: access key")
	fs.String(&ic.S3.SecretKey, "s3-secret-key", "", "S3: secret key")
	fs.String(&ic.S3.Prefix, "s3-prefix", "", "S3: key prefix inside the bucket")
	fs.Bool(&ic.S3.UseSSL, "s3-use-ssl", true, "S3: use HTTPS")
	fs.Bool(&ic.S3.PathStyle, "s3-path-style", false, "S3: path-style bucket addressing (most self-hosted S3 servers)")
	fs.String(&sf.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.String(&sf.logFormat, "log-format", "text", "text or json")
}

// config is the app configuration the parsed flags describe.
func (sf *serveFlags) config(env Env) (app.Config, error) {
	cfg := sf.cfg
	logger, err := newLogger(env.Stderr, sf.logLevel, sf.logFormat)
	if err != nil {
		return cfg, err
	}
	cfg.DataDir, cfg.DatabaseURL = sf.db.dataDir, sf.db.databaseURL
	cfg.Demo = cfg.ModelsFile == ""
	if cfg.Images.Headers, err = parseHeaders(sf.imageHeaders); err != nil {
		return cfg, fmt.Errorf("--image-backend-headers: %w", err)
	}
	cfg.ClerkAuthorizedParties = splitList(sf.parties)
	cfg.Getenv, cfg.Logger = env.Getenv, logger
	if err := checkLimits(cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// checkLimits refuses the numbers of a serve configuration that make no
// sense: every count, size and duration must be positive (only
// --initial-credits may be zero). The packages read a zero as "use the
// default", so a zero given on purpose would otherwise silently become it.
func checkLimits(cfg app.Config) error {
	counts := []struct {
		flag string
		v    int64
		min  int64
	}{
		{"initial-credits", cfg.InitialCredits, 0},
		{"database-connections", int64(cfg.DatabaseConns), 1},
		{"max-body-bytes", cfg.MaxBodyBytes, 1},
		{"auth-rate-limit", int64(cfg.AuthRateLimit), 1},
		{"user-rate-limit", int64(cfg.UserRateLimit), 1},
		{"max-replies-per-user", int64(cfg.Chat.MaxRunningPerUser), 1},
		{"max-requests-per-model", int64(cfg.Chat.MaxRunningPerModel), 1},
		{"image-cost", cfg.Images.Jobs.Cost, 1},
		{"image-queue-per-user", int64(cfg.Images.Jobs.MaxQueuedPerUser), 1},
	}
	for _, c := range counts {
		if c.v < c.min {
			return fmt.Errorf("--%s %d: must be at least %d", c.flag, c.v, c.min)
		}
	}
	durations := []struct {
		flag string
		v    time.Duration
	}{
		{"session-ttl", cfg.SessionTTL},
		{"shutdown-timeout", cfg.ShutdownTimeout},
		{"sweep-interval", cfg.SweepInterval},
		{"generation-lease", cfg.Chat.LeaseTTL},
		{"max-reply-duration", cfg.Chat.MaxDuration},
		{"reply-idle-timeout", cfg.Chat.ReplyIdleTimeout},
		{"image-timeout", cfg.Images.Jobs.Timeout},
		{"image-url-ttl", cfg.Images.Jobs.URLTTL},
		{"image-lease", cfg.Images.Jobs.LeaseTTL},
	}
	for _, d := range durations {
		if d.v <= 0 {
			return fmt.Errorf("--%s %s: must be longer than zero", d.flag, d.v)
		}
	}
	return nil
}

func runMigrate(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet("migrate", env.Getenv)
	var d dbFlags
	d.register(fs)
	if err := parseFlags(fs, args, env.Stderr); err != nil {
		return err
	}
	db, err := store.Open(ctx, d.databaseURL, d.dataDir)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := db.Migrate(ctx)
	if err != nil {
		return err
	}
	version, err := db.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s at %s: applied %d migrations, schema version %d\n", db.Dialect, db.Location, applied, version)
	return nil
}

// openServices opens and migrates the database for an admin command and
// builds the services it uses; closeDB releases them.
func (d *dbFlags) openServices(ctx context.Context) (svc *accounts.Service, ledger *credits.Ledger, closeDB func(), err error) {
	db, err := d.open(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	var opts []credits.Option
	if db.Dialect == store.Postgres {
		// Running servers relay the new balance to the user's clients.
		bus := events.NewPostgresPublisher(db.DB)
		opts = append(opts, credits.WithChangeHook(func(ctx context.Context, userID string) {
			bus.PublishUser(ctx, userID, events.CreditsUpdated, "") // best effort
		}))
	}
	ledger = credits.NewLedger(db, opts...)
	svc, err = accounts.NewService(db, ledger, accounts.Config{SignupMode: accounts.SignupOpen})
	if err != nil {
		db.Close()
		return nil, nil, nil, err
	}
	return svc, ledger, func() { db.Close() }, nil
}
