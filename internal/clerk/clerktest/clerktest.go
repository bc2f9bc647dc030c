// Package clerktest fakes the parts of Clerk that Luna talks to, for tests:
// a Frontend API serving the JWKS on loopback, session tokens signed like
// Clerk's, and Svix-signed webhook headers.
//
// Typical use:
//
//	f := clerktest.New(t)
//	v, err := clerk.NewVerifier(t.Context(), clerk.VerifierConfig{Issuer: f.Issuer(), JWKSURL: f.JWKSURL()})
//	token := f.Token(t, clerktest.TokenOptions{Subject: "user_1"})
package clerktest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	svix "github.com/svix/svix-webhooks/go"
)

// DefaultSubject is the "sub" of tokens whose TokenOptions.Subject is empty.
const DefaultSubject = "user_2xTestDefault0001"

// Fake is a fake Clerk instance: an httptest.Server on loopback serving
// GET /.well-known/jwks.json, and the private keys behind it. It is safe for
// concurrent use.
type Fake struct {
	server       *httptest.Server
	jwksRequests atomic.Int64

	mu   sync.Mutex
	keys []signingKey // all keys in the JWKS; the last one signs
}

type signingKey struct {
	kid string
	key *rsa.PrivateKey
}

// New starts a Fake with one RSA key; it is closed when the test ends. The
// issuer is the server's URL.
//
// RSA keys are generated once per test process and shared between Fakes in
// the same order (the first key of every Fake is the same key); kids and
// issuers are unique per Fake.
func New(t testing.TB) *Fake {
	t.Helper()
	f := &Fake{keys: []signingKey{{kid: newID("ins_"), key: sharedKey(0)}}}
	f.server = httptest.NewServer(http.HandlerFunc(f.serveJWKS))
	t.Cleanup(f.server.Close)
	return f
}

// Issuer returns the Frontend API URL, the tokens' "iss".
func (f *Fake) Issuer() string { return f.server.URL }

// JWKSURL returns the URL of the JWKS.
func (f *Fake) JWKSURL() string { return f.server.URL + "/.well-known/jwks.json" }

// JWKSRequests returns how many times the JWKS has been fetched.
func (f *Fake) JWKSRequests() int { return int(f.jwksRequests.Load()) }

// PublicKeyPEM returns the current signing key as a PKIX "PUBLIC KEY" PEM
// block, the form of the dashboard's "JWKS Public Key".
func (f *Fake) PublicKeyPEM() string {
	der, err := x509.MarshalPKIXPublicKey(&f.current().key.PublicKey)
	if err != nil {
		panic(err) // cannot fail for an RSA key
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// RotateKey adds a new key with a new kid to the JWKS, keeps the old ones
// there, and signs later tokens with the new key. It returns the new kid.
func (f *Fake) RotateKey() (kid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := signingKey{kid: newID("ins_"), key: sharedKey(len(f.keys))}
	f.keys = append(f.keys, k)
	return k.kid
}

// TokenOptions shape a session token. Zero fields take the defaults noted.
type TokenOptions struct {
	// Subject is "sub"; default DefaultSubject.
	Subject string
	// AuthorizedParty is "azp"; left out when empty, as in iOS tokens.
	AuthorizedParty string
	// Email is the custom claim "email"; left out when empty.
	Email string
	// IssuedAt is "iat"; default now. "nbf" is IssuedAt-5s.
	IssuedAt time.Time
	// Lifetime sets "exp" = IssuedAt+Lifetime; default 60s.
	Lifetime time.Duration
	// Issuer overrides "iss"; default f.Issuer().
	Issuer string
	// KID overrides the header "kid"; the token is still signed with the
	// current key.
	KID string
	// Extra claims are set last and override the ones above; a nil value
	// removes the claim (e.g. {"sub": nil}).
	Extra map[string]any
}

// Token returns a Clerk v2 session token signed RS256 with the current key:
// header {alg, kid, typ: "JWT"}, claims sub, sid, iss, iat, nbf, exp, jti,
// v=2, and azp/email when set.
func (f *Fake) Token(t testing.TB, opts TokenOptions) string {
	t.Helper()
	if opts.Subject == "" {
		opts.Subject = DefaultSubject
	}
	if opts.IssuedAt.IsZero() {
		opts.IssuedAt = time.Now()
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = 60 * time.Second
	}
	if opts.Issuer == "" {
		opts.Issuer = f.Issuer()
	}
	k := f.current()
	if opts.KID == "" {
		opts.KID = k.kid
	}

	iat := opts.IssuedAt.Unix()
	claims := jwt.MapClaims{
		"sub": opts.Subject,
		"sid": newID("sess_"),
		"iss": opts.Issuer,
		"iat": iat,
		"nbf": iat - 5,
		"exp": opts.IssuedAt.Add(opts.Lifetime).Unix(),
		"jti": newID(""),
		"v":   2,
	}
	if opts.AuthorizedParty != "" {
		claims["azp"] = opts.AuthorizedParty
	}
	if opts.Email != "" {
		claims["email"] = opts.Email
	}
	for name, value := range opts.Extra {
		if value == nil {
			delete(claims, name)
			continue
		}
		claims[name] = value
	}

	token := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	token.Header["kid"] = opts.KID
	signed, err := token.SignedString(k.key)
	if err != nil {
		t.Fatalf("clerktest: sign token: %v", err)
	}
	return signed
}

// SignedWebhook returns the svix-id, svix-timestamp and svix-signature
// headers that Svix would send with body, signed with secret ("whsec_...").
func (f *Fake) SignedWebhook(t testing.TB, secret, msgID string, ts time.Time, body []byte) http.Header {
	t.Helper()
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		t.Fatalf("clerktest: webhook secret: %v", err)
	}
	sig, err := wh.Sign(msgID, ts, body)
	if err != nil {
		t.Fatalf("clerktest: sign webhook: %v", err)
	}
	h := http.Header{}
	h.Set("svix-id", msgID)
	h.Set("svix-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("svix-signature", sig)
	return h
}

func (f *Fake) current() signingKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keys[len(f.keys)-1]
}

// jwkJSON is one key of the JWKS, in the shape Clerk serves.
type jwkJSON struct {
	Use string `json:"use"`
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
}

func (f *Fake) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/.well-known/jwks.json" {
		http.NotFound(w, r)
		return
	}
	f.jwksRequests.Add(1)

	f.mu.Lock()
	keys := make([]jwkJSON, 0, len(f.keys))
	for _, k := range f.keys {
		pub := k.key.PublicKey
		keys = append(keys, jwkJSON{
			Use: "sig",
			Kty: "RSA",
			Kid: k.kid,
			Alg: "RS256",
			N:   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			E:   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		})
	}
	f.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
}

// keyCache holds the RSA keys shared by all Fakes of a test process:
// generating a 2048-bit key takes around 100ms under the race detector.
var keyCache struct {
	mu   sync.Mutex
	keys []*rsa.PrivateKey
}

// sharedKey returns the i-th process-wide key, generating keys up to i.
func sharedKey(i int) *rsa.PrivateKey {
	keyCache.mu.Lock()
	defer keyCache.mu.Unlock()
	for len(keyCache.keys) <= i {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err) // crypto/rand does not fail
		}
		keyCache.keys = append(keyCache.keys, key)
	}
	return keyCache.keys[i]
}

// newID returns prefix followed by 24 random hex digits.
func newID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}
