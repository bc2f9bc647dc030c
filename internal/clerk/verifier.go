// Package clerk verifies what Clerk sends to Luna: session tokens (JWTs) on
// API requests and Svix-signed webhooks that keep the user table in sync.
package clerk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// ErrInvalidToken is wrapped by every error Verify returns. Callers answer it
// with HTTP 401; the wrapped message says which check failed and is meant for
// logs only.
var ErrInvalidToken = errors.New("clerk: invalid session token")

const (
	defaultLeeway                = 5 * time.Second
	defaultJWKSRefreshInterval   = time.Hour
	defaultUnknownKIDMinInterval = 10 * time.Second

	// jwksFetchTimeout bounds one JWKS request: the first one in NewVerifier,
	// the hourly refresh, and a refetch triggered by an unknown kid (which
	// holds up the API request that carried the token).
	jwksFetchTimeout = 5 * time.Second
)

// VerifierConfig configures a Verifier. Issuer and one of JWKSURL or
// PublicKeyPEM are required; zero durations take the documented defaults.
type VerifierConfig struct {
	// Issuer is the exact expected "iss" claim: the instance's Frontend API
	// URL, e.g. "https://clerk.example.com".
	Issuer string
	// JWKSURL is the Frontend API JWKS, "<Issuer>/.well-known/jwks.json".
	// Set exactly one of JWKSURL and PublicKeyPEM.
	JWKSURL string
	// PublicKeyPEM is the "JWKS Public Key" from the Clerk dashboard, for
	// verification without network. The BEGIN/END lines may be missing.
	PublicKeyPEM string
	// AuthorizedParties are the accepted "azp" values (web origins). A token
	// without azp is accepted, because native iOS tokens carry none; a token
	// whose azp is not listed is refused. Empty accepts any azp.
	AuthorizedParties []string
	// Leeway is the clock skew allowed on exp and nbf. Default 5s.
	Leeway time.Duration
	// JWKSRefreshInterval is how often the JWKS is refetched in the
	// background. Default 1h.
	JWKSRefreshInterval time.Duration
	// UnknownKIDMinInterval is the minimum time between JWKS refetches
	// triggered by a token whose kid is not in the cached set. Default 10s,
	// so that a rotated key is picked up quickly.
	UnknownKIDMinInterval time.Duration
	// HTTPClient fetches the JWKS. Default http.DefaultClient.
	HTTPClient *http.Client
	// Logger receives JWKS fetch failures. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock for exp and nbf. Default time.Now.
	Now func() time.Time
}

// Claims are the parts of a verified session token that Luna uses.
type Claims struct {
	// Subject is the Clerk user id ("user_..."), never empty.
	Subject string
	// SessionID is the Clerk session id ("sess_...").
	SessionID string
	// AuthorizedParty is the "azp" claim; empty for native clients.
	AuthorizedParty string
	// Email comes from the optional custom claim "email" (or
	// "primary_email_address"); empty when the token has neither.
	Email string
	// Name comes from the optional custom claim "name".
	Name string
	// ExpiresAt is the token's expiry; never cache the claims beyond it.
	ExpiresAt time.Time
}

// Verifier checks Clerk session tokens. It is safe for concurrent use.
type Verifier struct {
	keyFor            func(ctx context.Context) jwt.Keyfunc
	authorizedParties []string
	parser            *jwt.Parser
}

// NewVerifier checks cfg and returns a Verifier.
//
// With JWKSURL it fetches the JWKS once before returning (at most a few
// seconds), refreshes it every JWKSRefreshInterval and refetches it when a
// token names an unknown kid, at most once per UnknownKIDMinInterval. A failed
// first fetch is logged and does not fail NewVerifier: tokens are refused
// until the JWKS answers. The background refresh stops when ctx is done.
func NewVerifier(ctx context.Context, cfg VerifierConfig) (*Verifier, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("clerk: verifier config: %w", err)
	}

	var keyFor func(context.Context) jwt.Keyfunc
	var err error
	if cfg.PublicKeyPEM != "" {
		keyFor, err = pemKeyFor(cfg.PublicKeyPEM)
	} else {
		keyFor, err = jwksKeyFor(ctx, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("clerk: verifier config: %w", err)
	}

	return &Verifier{
		keyFor:            keyFor,
		authorizedParties: slices.Clone(cfg.AuthorizedParties),
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{"RS256"}),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithTimeFunc(cfg.Now),
		),
	}, nil
}

func (cfg *VerifierConfig) setDefaults() error {
	if cfg.Issuer == "" {
		return errors.New("issuer is required")
	}
	switch {
	case cfg.JWKSURL == "" && cfg.PublicKeyPEM == "":
		return errors.New("one of JWKSURL or PublicKeyPEM is required")
	case cfg.JWKSURL != "" && cfg.PublicKeyPEM != "":
		return errors.New("set only one of JWKSURL and PublicKeyPEM")
	case cfg.JWKSURL != "":
		u, err := url.Parse(cfg.JWKSURL)
		if err != nil {
			return fmt.Errorf("JWKSURL: %w", err)
		}
		if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("JWKSURL %q is not an absolute http(s) URL", cfg.JWKSURL)
		}
	}
	if cfg.Leeway < 0 || cfg.JWKSRefreshInterval < 0 || cfg.UnknownKIDMinInterval < 0 {
		return errors.New("durations must not be negative")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = defaultLeeway
	}
	if cfg.JWKSRefreshInterval == 0 {
		cfg.JWKSRefreshInterval = defaultJWKSRefreshInterval
	}
	if cfg.UnknownKIDMinInterval == 0 {
		cfg.UnknownKIDMinInterval = defaultUnknownKIDMinInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return nil
}

// tokenClaims is the JSON shape of a Clerk v2 session token, plus the custom
// claims Luna reads.
type tokenClaims struct {
	jwt.RegisteredClaims
	SessionID           string `json:"sid"`
	AuthorizedParty     string `json:"azp"`
	Status              string `json:"sts"`
	Email               string `json:"email"`
	PrimaryEmailAddress string `json:"primary_email_address"`
	Name                string `json:"name"`
}

// Verify checks token (without any "Bearer " prefix) and returns its claims.
// Every error wraps ErrInvalidToken.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	if token == "" {
		return Claims{}, fmt.Errorf("%w: empty token", ErrInvalidToken)
	}

	// ParseWithClaims checks the signature (RS256 only) before exp, nbf and iss.
	var tc tokenClaims
	if _, err := v.parser.ParseWithClaims(token, &tc, v.keyFor(ctx)); err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if tc.Subject == "" {
		return Claims{}, fmt.Errorf("%w: no sub claim", ErrInvalidToken)
	}
	if tc.AuthorizedParty != "" && len(v.authorizedParties) > 0 &&
		!slices.Contains(v.authorizedParties, tc.AuthorizedParty) {
		return Claims{}, fmt.Errorf("%w: azp %q is not an authorized party", ErrInvalidToken, tc.AuthorizedParty)
	}
	if tc.Status == "pending" {
		return Claims{}, fmt.Errorf("%w: session is pending", ErrInvalidToken)
	}

	email := tc.Email
	if email == "" {
		email = tc.PrimaryEmailAddress
	}
	return Claims{
		Subject:         tc.Subject,
		SessionID:       tc.SessionID,
		AuthorizedParty: tc.AuthorizedParty,
		Email:           email,
		Name:            tc.Name,
		ExpiresAt:       tc.ExpiresAt.Time, // present: the parser requires exp
	}, nil
}

// pemKeyFor returns a keyfunc source that gives the configured key to every
// token, whatever its kid: the dashboard PEM comes without one.
func pemKeyFor(pemKey string) (func(context.Context) jwt.Keyfunc, error) {
	key, err := jwt.ParseRSAPublicKeyFromPEM([]byte(normalizePEM(pemKey)))
	if err != nil {
		return nil, fmt.Errorf("PublicKeyPEM: %w", err)
	}
	return func(context.Context) jwt.Keyfunc {
		return func(*jwt.Token) (any, error) { return key, nil }
	}, nil
}

// normalizePEM accepts the dashboard's "JWKS Public Key" with or without its
// BEGIN/END lines, and with literal "\n" sequences as some env files hold it.
func normalizePEM(s string) string {
	s = strings.TrimSpace(strings.ReplaceAll(s, `\n`, "\n"))
	if strings.HasPrefix(s, "-----BEGIN") {
		return s
	}
	return "-----BEGIN PUBLIC KEY-----\n" + s + "\n-----END PUBLIC KEY-----\n"
}

// jwksKeyFor returns a keyfunc source over the remote JWKS at cfg.JWKSURL.
//
// It uses jwkset's pieces rather than keyfunc.NewDefaultOverrideCtx because
// jwkset's unknown-kid limiter Waits: with a 10s interval, a request could
// sleep for seconds and then fetch with whatever is left of the same
// deadline. keyStore instead refuses at once when a refetch is not yet
// allowed, and lets concurrent requests share the refetch in flight.
func jwksKeyFor(ctx context.Context, cfg VerifierConfig) (func(context.Context) jwt.Keyfunc, error) {
	logger := cfg.Logger
	cached, err := jwkset.NewStorageFromHTTP(cfg.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client:                    cfg.HTTPClient,
		Ctx:                       ctx,
		HTTPTimeout:               jwksFetchTimeout,
		NoErrorReturnFirstHTTPReq: true, // a JWKS outage at start must not stop the server
		RefreshErrorHandler: func(ctx context.Context, err error) {
			logger.ErrorContext(ctx, "clerk: JWKS fetch failed; tokens signed with unknown keys are refused",
				"url", cfg.JWKSURL, "error", err)
		},
		RefreshInterval: cfg.JWKSRefreshInterval,
	})
	if err != nil {
		return nil, fmt.Errorf("JWKS %q: %w", cfg.JWKSURL, err)
	}
	refetcher, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: map[string]jwkset.Storage{cfg.JWKSURL: cached},
		// keyStore rate-limits; this limiter only enables the refetch path.
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
		RateLimitWaitMax:  jwksFetchTimeout, // also bounds the refetch itself
	})
	if err != nil {
		return nil, fmt.Errorf("JWKS %q: %w", cfg.JWKSURL, err)
	}
	store := &keyStore{
		Storage:    refetcher,
		cached:     cached,
		limiter:    rate.NewLimiter(rate.Every(cfg.UnknownKIDMinInterval), 1),
		refetching: make(chan struct{}, 1),
		logger:     logger,
	}
	kf, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: store})
	if err != nil {
		return nil, fmt.Errorf("JWKS %q: %w", cfg.JWKSURL, err)
	}
	return kf.KeyfuncCtx, nil
}

// keyStore is the jwkset.Storage behind a JWKS Verifier. Its KeyRead serves
// cached keys and refetches the JWKS for an unknown kid, at most once per
// limiter interval and one refetch at a time.
type keyStore struct {
	// Storage refetches the JWKS whenever a kid is not cached.
	jwkset.Storage
	// cached holds the last fetched JWKS and never fetches on a read.
	cached     jwkset.Storage
	limiter    *rate.Limiter
	refetching chan struct{} // holds a token while a refetch is in flight
	logger     *slog.Logger
}

// KeyRead returns the key with the given kid, refetching the JWKS if it is
// not cached and the limiter allows.
func (s *keyStore) KeyRead(ctx context.Context, kid string) (jwkset.JWK, error) {
	jwk, err := s.cached.KeyRead(ctx, kid)
	if !errors.Is(err, jwkset.ErrKeyNotFound) {
		return jwk, err
	}

	select {
	case s.refetching <- struct{}{}:
		defer func() { <-s.refetching }()
	case <-ctx.Done():
		return jwkset.JWK{}, fmt.Errorf("waiting for JWKS refetch: %w", ctx.Err())
	}
	// A refetch that finished while we waited may have brought the key.
	jwk, err = s.cached.KeyRead(ctx, kid)
	if !errors.Is(err, jwkset.ErrKeyNotFound) {
		return jwk, err
	}
	if !s.limiter.Allow() {
		return jwkset.JWK{}, fmt.Errorf("kid %q not in JWKS (refetch rate-limited): %w", kid, err)
	}
	s.logger.InfoContext(ctx, "clerk: refetching JWKS for unknown kid", "kid", kid)
	return s.Storage.KeyRead(ctx, kid)
}
