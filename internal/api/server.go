// Package api is Luna's HTTP API: the routes of DESIGN section 7, their
// JSON shapes and error codes, authentication, and the OpenAPI document that
// describes them.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"luna"
	"luna/internal/accounts"
	"luna/internal/chat"
	"luna/internal/clerk"
	"luna/internal/credits"
	"luna/internal/events"
	"luna/internal/images"
	"luna/internal/ratelimit"
	"luna/internal/store"
)

// Authenticator maps a bearer token to a user. It returns an error with code
// unauthorized for a token it does not accept.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (luna.User, error)
}

// Config is what the API needs from the rest of Luna.
type Config struct {
	DB            *store.DB
	Accounts      *accounts.Service
	Ledger        *credits.Ledger
	Authenticator Authenticator
	Chat          *chat.Service
	Images        *images.Service
	Bus           *events.Bus
	// HeartbeatEvery is the idle interval of SSE heartbeats; default 15s.
	HeartbeatEvery time.Duration
	// SessionCheckEvery is how often an open stream re-checks its session,
	// in case the bus's "session ended" signal was missed; default 30s.
	SessionCheckEvery time.Duration
	// AuthMode is "local" (built-in accounts: sign-up, login, logout
	// routes work) or "clerk" (those routes answer not_found and
	// ClerkWebhooks verifies webhook deliveries).
	AuthMode      string
	ClerkWebhooks *clerk.WebhookVerifier
	Logger        *slog.Logger
	// MaxBodyBytes limits JSON request bodies; default 64 KiB.
	MaxBodyBytes int64
	// AuthRateLimit is how many sign-up/login attempts one client address
	// may make per minute, across all instances; default 20.
	AuthRateLimit int
	// UserRateLimit is how many messages, image requests and new
	// conversations one user may send per minute, across all instances;
	// default 60.
	UserRateLimit int
	// ImageCost is the price of an image, published by GET /v1/auth/config.
	ImageCost int64
	// TrustProxy makes the auth rate limit count clients by the address
	// their reverse proxy reports in X-Forwarded-For.
	TrustProxy bool
}

// Server serves the API.
type Server struct {
	db                *store.DB
	accounts          *accounts.Service
	ledger            *credits.Ledger
	authenticator     Authenticator
	authMode          string
	clerkWebhooks     *clerk.WebhookVerifier
	logger            *slog.Logger
	maxBodyBytes      int64
	authLimiter       *ratelimit.Limiter
	userLimiter       *ratelimit.Limiter
	imageCost         int64
	trustProxy        bool
	handler           http.Handler
	chat              *chat.Service
	images            *images.Service
	bus               *events.Bus
	heartbeatEvery    time.Duration
	sessionCheckEvery time.Duration
	streamsCtx        context.Context // cancelled by CloseStreams
	closeStreams      context.CancelFunc
}

// Auth modes.
const (
	AuthLocal = "local"
	AuthClerk = "clerk"
)

// DefaultConfig holds the API's defaults, the values zero fields of a
// Config stand for; the one place they are written.
func DefaultConfig() Config {
	return Config{
		HeartbeatEvery: 15 * time.Second, SessionCheckEvery: 30 * time.Second,
		MaxBodyBytes: 64 << 10, AuthRateLimit: 20, UserRateLimit: 60,
	}
}

// New returns a Server. Its event streams run until CloseStreams (or their
// request ends); ctx gives them its values, not its cancellation.
func New(ctx context.Context, cfg Config) *Server {
	def := DefaultConfig()
	s := &Server{
		db: cfg.DB, accounts: cfg.Accounts, ledger: cfg.Ledger, authenticator: cfg.Authenticator,
		authMode: cfg.AuthMode, clerkWebhooks: cfg.ClerkWebhooks, logger: cfg.Logger,
		chat: cfg.Chat, images: cfg.Images, bus: cfg.Bus, imageCost: cfg.ImageCost, trustProxy: cfg.TrustProxy,
		heartbeatEvery:    positiveOr(cfg.HeartbeatEvery, def.HeartbeatEvery),
		sessionCheckEvery: positiveOr(cfg.SessionCheckEvery, def.SessionCheckEvery),
		maxBodyBytes:      positiveOr(cfg.MaxBodyBytes, def.MaxBodyBytes),
	}
	s.streamsCtx, s.closeStreams = context.WithCancel(context.WithoutCancel(ctx))
	if s.logger == nil {
		s.logger = discardLogger()
	}
	s.authLimiter = ratelimit.New(s.db, ratelimit.Config{Scope: "auth", Limit: positiveOr(cfg.AuthRateLimit, def.AuthRateLimit), Window: time.Minute,
		Message: "Too many attempts; try again in a minute."})
	s.userLimiter = ratelimit.New(s.db, ratelimit.Config{Scope: "user", Limit: positiveOr(cfg.UserRateLimit, def.UserRateLimit), Window: time.Minute,
		Message: "Too many requests; slow down a little."})
	s.handler = s.routes()
	return s
}

// positiveOr is v, or def when v is zero or negative (unset).
func positiveOr[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// route is one entry of the API: the OpenAPI test checks that each one is
// documented.
type route struct {
	method  string
	path    string // net/http pattern path, e.g. /v1/conversations/{id}
	auth    bool   // needs a signed-in user
	handler http.HandlerFunc
}

// routeTable lists every API route; it is the single place they are declared.
func (s *Server) routeTable() []route {
	return []route{
		{"GET", "/healthz", false, s.handleHealthz},
		{"GET", "/readyz", false, s.handleReadyz},
		{"GET", "/openapi.json", false, s.handleOpenAPI},

		{"GET", "/v1/auth/config", false, s.handleAuthConfig},
		{"POST", "/v1/auth/signup", false, s.limitAuth(s.handleSignup)},
		{"POST", "/v1/auth/login", false, s.limitAuth(s.handleLogin)},
		{"POST", "/v1/auth/logout", true, s.handleLogout},
		{"POST", "/v1/webhooks/clerk", false, s.handleClerkWebhook},

		{"GET", "/v1/me", true, s.handleMe},
		{"GET", "/v1/models", true, s.handleListModels},

		{"POST", "/v1/conversations", true, s.limitUser(s.handleCreateConversation)},
		{"GET", "/v1/conversations", true, s.handleListConversations},
		{"GET", "/v1/conversations/{id}", true, s.handleGetConversation},
		{"PATCH", "/v1/conversations/{id}", true, s.handleRenameConversation},
		{"DELETE", "/v1/conversations/{id}", true, s.handleDeleteConversation},
		{"GET", "/v1/conversations/{id}/messages", true, s.handleListMessages},
		{"POST", "/v1/conversations/{id}/messages", true, s.handleSendMessage}, // rate counted in the send (userRate)
		{"GET", "/v1/messages/{id}", true, s.handleGetMessage},
		{"GET", "/v1/messages/{id}/stream", true, s.handleMessageStream},
		{"POST", "/v1/messages/{id}/cancel", true, s.handleCancelMessage},
		{"POST", "/v1/messages/{id}/regenerate", true, s.handleMessageAction(chat.ActionRegenerate)}, // rate counted in the action (userRate)
		{"POST", "/v1/messages/{id}/continue", true, s.handleMessageAction(chat.ActionContinue)},     // rate counted in the action (userRate)
		{"POST", "/v1/messages/{id}/edit", true, s.handleMessageAction(chat.ActionEdit)},             // rate counted in the action (userRate)
		{"POST", "/v1/messages/{id}/select", true, s.handleSelectVersion},
		{"POST", "/v1/estimate", true, s.handleEstimate},
		{"GET", "/v1/events", true, s.handleEvents},
		{"GET", "/v1/credits/entries", true, s.handleListCreditEntries},

		{"POST", "/v1/images", true, s.handleCreateImage}, // rate counted in the request (userRate)
		{"GET", "/v1/images", true, s.handleListImages},
		{"GET", "/v1/images/{id}", true, s.handleGetImage},
	}
}

// RouteKey identifies a route as "METHOD /path".
func (r route) key() string { return r.method + " " + r.path }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	methodsByPath := map[string][]string{}
	for _, rt := range s.routeTable() {
		h := http.Handler(rt.handler)
		if strings.Contains(rt.path, "{id}") {
			h = s.validID(h)
		}
		if rt.auth {
			h = s.requireUser(h)
		}
		mux.Handle(rt.key(), h)
		methodsByPath[rt.path] = append(methodsByPath[rt.path], rt.method)
	}
	// Same path, other method: 405 in the error shape (the mux's own answer
	// would be plain text).
	for path, methods := range methodsByPath {
		mux.Handle(path, methodNotAllowed(s, methods))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errorf(luna.CodeNotFound, "No route %s %s.", r.Method, r.URL.Path))
	})
	var h http.Handler = mux
	h = s.recoverPanics(h)
	h = s.logRequests(h)
	h = securityHeaders(h)
	h = withRequestID(h)
	return h
}
