package clerk_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"luna/internal/clerk"
	"luna/internal/clerk/clerktest"
)

// TestMain checks that every JWKS refresh goroutine ends with the context
// given to NewVerifier (t.Context() in these tests).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testNow is the verifiers' clock in these tests; tokens are issued around it.
var testNow = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

const webOrigin = "https://app.example.com"

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newVerifier returns a Verifier for f with the test clock; keySource is
// "jwks", "pem" or "pem-bare" (the PEM without its BEGIN/END lines).
func newVerifier(t *testing.T, f *clerktest.Fake, keySource string, parties ...string) *clerk.Verifier {
	t.Helper()
	cfg := clerk.VerifierConfig{
		Issuer:            f.Issuer(),
		AuthorizedParties: parties,
		Logger:            discardLogger(),
		Now:               func() time.Time { return testNow },
	}
	switch keySource {
	case "jwks":
		cfg.JWKSURL = f.JWKSURL()
	case "pem":
		cfg.PublicKeyPEM = f.PublicKeyPEM()
	case "pem-bare":
		cfg.PublicKeyPEM = stripPEMLines(f.PublicKeyPEM())
	default:
		t.Fatalf("unknown key source %q", keySource)
	}
	v, err := clerk.NewVerifier(t.Context(), cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// stripPEMLines returns the base64 body of a PEM block on one line, as the
// Clerk dashboard may show it.
func stripPEMLines(s string) string {
	var body []string
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if !strings.HasPrefix(line, "-----") {
			body = append(body, line)
		}
	}
	return strings.Join(body, "")
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	f := clerktest.New(t)
	verifiers := map[string]*clerk.Verifier{
		"jwks":     newVerifier(t, f, "jwks", webOrigin),
		"pem":      newVerifier(t, f, "pem", webOrigin),
		"pem-bare": newVerifier(t, f, "pem-bare", webOrigin),
	}

	tests := []struct {
		name      string
		opts      clerktest.TokenOptions
		wantEmail string
		wantName  string
	}{
		{name: "native token without azp", opts: clerktest.TokenOptions{Subject: "user_1", IssuedAt: testNow}},
		{name: "web token with listed azp", opts: clerktest.TokenOptions{Subject: "user_1", AuthorizedParty: webOrigin, IssuedAt: testNow}},
		{
			name:      "custom email and name claims",
			opts:      clerktest.TokenOptions{Subject: "user_1", Email: "ada@example.com", IssuedAt: testNow, Extra: map[string]any{"name": "Ada Lovelace"}},
			wantEmail: "ada@example.com",
			wantName:  "Ada Lovelace",
		},
		{
			name:      "primary_email_address claim",
			opts:      clerktest.TokenOptions{Subject: "user_1", IssuedAt: testNow, Extra: map[string]any{"primary_email_address": "ada@example.com"}},
			wantEmail: "ada@example.com",
		},
		{name: "expired within leeway", opts: clerktest.TokenOptions{Subject: "user_1", IssuedAt: testNow.Add(-63 * time.Second)}},
		{name: "nbf ahead within leeway", opts: clerktest.TokenOptions{Subject: "user_1", IssuedAt: testNow.Add(8 * time.Second)}},
		{name: "null custom claims", opts: clerktest.TokenOptions{Subject: "user_1", IssuedAt: testNow, Extra: map[string]any{"email": nil, "name": nil}}},
		{name: "unknown extra claims", opts: clerktest.TokenOptions{Subject: "user_1", IssuedAt: testNow, Extra: map[string]any{"fva": []int{7, -1}, "sts": "active", "o": map[string]any{"id": "org_1"}}}},
		{name: "v1 token without v", opts: clerktest.TokenOptions{Subject: "user_1", IssuedAt: testNow, Extra: map[string]any{"v": nil}}},
	}
	for source, v := range verifiers {
		for _, tt := range tests {
			t.Run(source+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				token := f.Token(t, tt.opts)
				claims, err := v.Verify(t.Context(), token)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if got, want := claims.Subject, "user_1"; got != want {
					t.Errorf("Subject = %q, want %q", got, want)
				}
				if got, want := claims.AuthorizedParty, tt.opts.AuthorizedParty; got != want {
					t.Errorf("AuthorizedParty = %q, want %q", got, want)
				}
				if !strings.HasPrefix(claims.SessionID, "sess_") {
					t.Errorf("SessionID = %q, want sess_...", claims.SessionID)
				}
				if got, want := claims.Email, tt.wantEmail; got != want {
					t.Errorf("Email = %q, want %q", got, want)
				}
				if got, want := claims.Name, tt.wantName; got != want {
					t.Errorf("Name = %q, want %q", got, want)
				}
				wantExp := tt.opts.IssuedAt.Add(60 * time.Second)
				if got := claims.ExpiresAt; !got.Equal(wantExp) {
					t.Errorf("ExpiresAt = %v, want %v", got, wantExp)
				}
			})
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	f := clerktest.New(t)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	valid := func(t *testing.T) string {
		return f.Token(t, clerktest.TokenOptions{Subject: "user_1", IssuedAt: testNow})
	}
	withOpts := func(opts clerktest.TokenOptions) func(t *testing.T) string {
		return func(t *testing.T) string {
			if opts.IssuedAt.IsZero() {
				opts.IssuedAt = testNow
			}
			return f.Token(t, opts)
		}
	}

	tests := []struct {
		name     string
		token    func(t *testing.T) string
		jwksOnly bool // the PEM verifier ignores kid by design
	}{
		{name: "expired", token: withOpts(clerktest.TokenOptions{IssuedAt: testNow.Add(-2 * time.Minute)})},
		{name: "not yet valid", token: withOpts(clerktest.TokenOptions{IssuedAt: testNow.Add(time.Minute)})},
		{name: "no exp", token: withOpts(clerktest.TokenOptions{Extra: map[string]any{"exp": nil}})},
		{name: "wrong issuer", token: withOpts(clerktest.TokenOptions{Issuer: "https://evil.clerk.accounts.dev"})},
		{name: "issuer with trailing slash", token: withOpts(clerktest.TokenOptions{Issuer: f.Issuer() + "/"})},
		{name: "no issuer", token: withOpts(clerktest.TokenOptions{Extra: map[string]any{"iss": nil}})},
		{name: "azp not in allow-list", token: withOpts(clerktest.TokenOptions{AuthorizedParty: "https://evil.example.com"})},
		{name: "missing sub", token: withOpts(clerktest.TokenOptions{Extra: map[string]any{"sub": nil}})},
		{name: "empty sub", token: withOpts(clerktest.TokenOptions{Extra: map[string]any{"sub": ""}})},
		{name: "pending session", token: withOpts(clerktest.TokenOptions{Extra: map[string]any{"sts": "pending"}})},
		{name: "wrongly typed exp", token: withOpts(clerktest.TokenOptions{Extra: map[string]any{"exp": "soon"}})},
		{name: "unknown kid", token: withOpts(clerktest.TokenOptions{KID: "ins_unknown"}), jwksOnly: true},
		{
			name: "alg none",
			token: func(t *testing.T) string {
				return resign(t, valid(t), jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil)
			},
		},
		{
			name: "HS256 keyed with the public key PEM",
			token: func(t *testing.T) string {
				return resign(t, valid(t), jwt.SigningMethodHS256, []byte(f.PublicKeyPEM()), nil)
			},
		},
		{
			name: "tampered payload",
			token: func(t *testing.T) string {
				parts := strings.Split(valid(t), ".")
				payload, err := base64.RawURLEncoding.DecodeString(parts[1])
				if err != nil {
					t.Fatal(err)
				}
				payload = bytes.Replace(payload, []byte(`"user_1"`), []byte(`"user_2"`), 1)
				parts[1] = base64.RawURLEncoding.EncodeToString(payload)
				return strings.Join(parts, ".")
			},
		},
		{
			name: "different key, same kid",
			token: func(t *testing.T) string {
				return resign(t, valid(t), jwt.SigningMethodRS256, otherKey, nil)
			},
		},
		{name: "signature stripped", token: func(t *testing.T) string {
			parts := strings.Split(valid(t), ".")
			return parts[0] + "." + parts[1] + "."
		}},
		{name: "garbage", token: func(*testing.T) string { return "garbage" }},
		{name: "three garbage segments", token: func(*testing.T) string { return "a.b.c" }},
		{name: "empty", token: func(*testing.T) string { return "" }},
	}
	for _, source := range []string{"jwks", "pem"} {
		v := newVerifier(t, f, source, webOrigin)
		for _, tt := range tests {
			if tt.jwksOnly && source != "jwks" {
				continue
			}
			t.Run(source+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				_, err := v.Verify(t.Context(), tt.token(t))
				t.Log(err)
				if !errors.Is(err, clerk.ErrInvalidToken) {
					t.Fatalf("Verify error = %v, want ErrInvalidToken", err)
				}
			})
		}
	}
}

// resign returns token's claims and kid signed with method and key, plus
// the extra header parameters.
func resign(t *testing.T, token string, method jwt.SigningMethod, key any, header map[string]any) string {
	t.Helper()
	parsed, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		t.Fatalf("ParseUnverified: %v", err)
	}
	forged := jwt.NewWithClaims(method, parsed.Claims)
	forged.Header["kid"] = parsed.Header["kid"]
	for name, value := range header {
		forged.Header[name] = value
	}
	signed, err := forged.SignedString(key)
	if err != nil {
		t.Fatalf("sign forged token: %v", err)
	}
	return signed
}

// TestVerifyAlgorithms uses a key the test holds, so that it can sign with
// other RSA algorithms and add header parameters.
func TestVerifyAlgorithms(t *testing.T) {
	t.Parallel()
	f := clerktest.New(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := clerk.NewVerifier(t.Context(), clerk.VerifierConfig{
		Issuer:       f.Issuer(),
		PublicKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		Now:          func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	claims := f.Token(t, clerktest.TokenOptions{Subject: "user_1", IssuedAt: testNow})

	tests := []struct {
		name   string
		method jwt.SigningMethod
		header map[string]any
		wantOK bool
	}{
		{name: "RS256", method: jwt.SigningMethodRS256, wantOK: true},
		{name: "RS256 with unknown header params", method: jwt.SigningMethodRS256, header: map[string]any{"oiat": 1767225600, "cat": "cl_B7d4PD111AAA"}, wantOK: true},
		{name: "RS256 with a non-JWT typ", method: jwt.SigningMethodRS256, header: map[string]any{"typ": "at+jwt"}, wantOK: true},
		{name: "RS384", method: jwt.SigningMethodRS384},
		{name: "RS512", method: jwt.SigningMethodRS512},
		{name: "PS256", method: jwt.SigningMethodPS256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(t.Context(), resign(t, claims, tt.method, key, tt.header))
			if tt.wantOK && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !tt.wantOK && !errors.Is(err, clerk.ErrInvalidToken) {
				t.Fatalf("Verify error = %v, want ErrInvalidToken", err)
			}
		})
	}
}

func TestVerifierAcceptsRotatedKey(t *testing.T) {
	t.Parallel()
	f := clerktest.New(t)
	v, err := clerk.NewVerifier(t.Context(), clerk.VerifierConfig{
		Issuer:                f.Issuer(),
		JWKSURL:               f.JWKSURL(),
		UnknownKIDMinInterval: 50 * time.Millisecond,
		Logger:                discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	oldToken := f.Token(t, clerktest.TokenOptions{})
	if _, err := v.Verify(t.Context(), oldToken); err != nil {
		t.Fatalf("old key: %v", err)
	}

	f.RotateKey()
	newToken := f.Token(t, clerktest.TokenOptions{})
	// Concurrent requests carrying the new kid share one refetch.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := v.Verify(t.Context(), newToken); err != nil {
				t.Errorf("new key: %v", err)
			}
		})
	}
	wg.Wait()
	if _, err := v.Verify(t.Context(), oldToken); err != nil {
		t.Errorf("old key after rotation: %v", err)
	}
	if got, want := f.JWKSRequests(), 2; got != want {
		t.Errorf("JWKS requests = %d, want %d (start + one refetch)", got, want)
	}

	// A second rotation right away is picked up once the interval passes.
	f.RotateKey()
	third := f.Token(t, clerktest.TokenOptions{})
	eventually(t, 2*time.Second, func() error {
		_, err := v.Verify(t.Context(), third)
		return err
	})
}

func TestVerifierRateLimitsUnknownKIDRefetch(t *testing.T) {
	t.Parallel()
	f := clerktest.New(t)
	v, err := clerk.NewVerifier(t.Context(), clerk.VerifierConfig{
		Issuer:                f.Issuer(),
		JWKSURL:               f.JWKSURL(),
		UnknownKIDMinInterval: time.Hour,
		Logger:                discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	var accepted atomic.Int64
	for i := range 50 {
		token := f.Token(t, clerktest.TokenOptions{KID: "ins_bad" + string(rune('a'+i%26))})
		wg.Go(func() {
			if _, err := v.Verify(t.Context(), token); err == nil {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if got, want := accepted.Load(), int64(0); got != want {
		t.Errorf("accepted %d bad-kid tokens, want %d", got, want)
	}
	if got, max := f.JWKSRequests(), 2; got > max {
		t.Errorf("JWKS requests = %d, want at most %d (start + one refetch)", got, max)
	}

	// Known keys are still served from the cache meanwhile.
	if _, err := v.Verify(t.Context(), f.Token(t, clerktest.TokenOptions{})); err != nil {
		t.Errorf("valid token: %v", err)
	}
}

func TestNewVerifierSurvivesJWKSOutage(t *testing.T) {
	t.Parallel()
	f := clerktest.New(t)
	var down atomic.Bool
	down.Store(true)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		copyResponse(t, w, f.JWKSURL())
	}))
	t.Cleanup(proxy.Close)

	var logs lockedBuffer
	v, err := clerk.NewVerifier(t.Context(), clerk.VerifierConfig{
		Issuer:                f.Issuer(),
		JWKSURL:               proxy.URL + "/.well-known/jwks.json",
		UnknownKIDMinInterval: 50 * time.Millisecond,
		Logger:                slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatalf("NewVerifier with JWKS down: %v", err)
	}
	if got := logs.String(); !strings.Contains(got, "JWKS fetch failed") {
		t.Errorf("logs = %q, want the failed fetch logged", got)
	}

	token := f.Token(t, clerktest.TokenOptions{})
	if _, err := v.Verify(t.Context(), token); !errors.Is(err, clerk.ErrInvalidToken) {
		t.Fatalf("Verify with JWKS down: err = %v, want ErrInvalidToken", err)
	}
	down.Store(false)
	eventually(t, 2*time.Second, func() error {
		_, err := v.Verify(t.Context(), token)
		return err
	})
}

func TestVerifyRespectsContextDuringRefetch(t *testing.T) {
	t.Parallel()
	f := clerktest.New(t)
	var requests atomic.Int64
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) > 1 { // the first fetch answers; refetches hang
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		copyResponse(t, w, f.JWKSURL())
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })

	v, err := clerk.NewVerifier(t.Context(), clerk.VerifierConfig{
		Issuer:  f.Issuer(),
		JWKSURL: slow.URL + "/.well-known/jwks.json",
		Logger:  discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = v.Verify(ctx, f.Token(t, clerktest.TokenOptions{KID: "ins_unknown"}))
	if !errors.Is(err, clerk.ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrInvalidToken", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Verify took %v after its context expired", elapsed)
	}
}

func TestNewVerifierConfigErrors(t *testing.T) {
	t.Parallel()
	f := clerktest.New(t)
	tests := []struct {
		name string
		cfg  clerk.VerifierConfig
	}{
		{name: "no issuer", cfg: clerk.VerifierConfig{JWKSURL: f.JWKSURL()}},
		{name: "no key source", cfg: clerk.VerifierConfig{Issuer: f.Issuer()}},
		{name: "both key sources", cfg: clerk.VerifierConfig{Issuer: f.Issuer(), JWKSURL: f.JWKSURL(), PublicKeyPEM: f.PublicKeyPEM()}},
		{name: "relative JWKS URL", cfg: clerk.VerifierConfig{Issuer: f.Issuer(), JWKSURL: "/.well-known/jwks.json"}},
		{name: "bad PEM", cfg: clerk.VerifierConfig{Issuer: f.Issuer(), PublicKeyPEM: "not a key"}},
		{name: "negative leeway", cfg: clerk.VerifierConfig{Issuer: f.Issuer(), PublicKeyPEM: f.PublicKeyPEM(), Leeway: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := clerk.NewVerifier(t.Context(), tt.cfg); err == nil {
				t.Fatal("NewVerifier succeeded, want an error")
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	fake := clerktest.New(f)
	f.Add(fake.Token(f, clerktest.TokenOptions{}))
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	v, err := clerk.NewVerifier(f.Context(), clerk.VerifierConfig{Issuer: fake.Issuer(), PublicKeyPEM: fake.PublicKeyPEM()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		if _, err := v.Verify(t.Context(), token); err != nil && !errors.Is(err, clerk.ErrInvalidToken) {
			t.Fatalf("error %v does not wrap ErrInvalidToken", err)
		}
	})
}

// eventually calls f until it returns nil, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// copyResponse answers w with the body of GET url.
func copyResponse(t *testing.T, w http.ResponseWriter, url string) {
	resp, err := http.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	var body json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Errorf("decode %s: %v", url, err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// lockedBuffer is an io.Writer safe for the logger and the test to share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
