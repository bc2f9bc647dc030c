package api_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"luna/internal/app"
	"luna/internal/clerk/clerktest"
	"luna/internal/store"
)

const webhookSecret = "whsec_gb09R7T6LRBvsF8mhr46D3MbDCQiah8n"

func newClerkServer(t *testing.T, dialect store.Dialect) (*testServer, *clerktest.Fake) {
	t.Helper()
	fake := clerktest.New(t)
	s := newTestServer(t, dialect, func(c *app.Config) {
		c.Auth = "clerk"
		c.ClerkIssuer = fake.Issuer()
		c.ClerkJWKSURL = fake.JWKSURL()
		c.ClerkAuthorizedParties = []string{"https://app.example.com"}
		c.ClerkWebhookSecret = webhookSecret
	})
	return s, fake
}

// forge re-signs the claims of token with another method and key.
func forge(t *testing.T, token string, method jwt.SigningMethod, key any) string {
	t.Helper()
	parsed, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	forged := jwt.NewWithClaims(method, parsed.Claims)
	forged.Header["kid"] = parsed.Header["kid"]
	signed, err := forged.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func TestClerkSessionTokens(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		s, fake := newClerkServer(t, dialect)

		// A valid token: the user is created on its first request, with credits.
		token := fake.Token(t, clerktest.TokenOptions{Subject: "user_ok", Email: "ok@example.com"})
		r := s.do("GET", "/v1/me", token, nil)
		if r.status != http.StatusOK {
			t.Fatalf("valid token: %d %s", r.status, r.body)
		}
		me := r.json(t)
		if me["provider"] != "clerk" || me["email"] != "ok@example.com" || me["credits"].(map[string]any)["balance"] != 1000.0 {
			t.Fatalf("me = %v", me)
		}
		// An allowed azp, and a native token without azp, are accepted.
		for _, azp := range []string{"https://app.example.com", ""} {
			r := s.do("GET", "/v1/me", fake.Token(t, clerktest.TokenOptions{Subject: "user_ok", AuthorizedParty: azp}), nil)
			if r.status != http.StatusOK || r.json(t)["id"] != me["id"] {
				t.Fatalf("token with azp %q: %d %s", azp, r.status, r.body)
			}
		}

		// Key rotation: a token signed by a new key (new kid in the JWKS)
		// is accepted without restart.
		fake.RotateKey()
		if r := s.do("GET", "/v1/me", fake.Token(t, clerktest.TokenOptions{Subject: "user_ok"}), nil); r.status != http.StatusOK {
			t.Fatalf("token after key rotation: %d %s", r.status, r.body)
		}

		valid := func() string { return fake.Token(t, clerktest.TokenOptions{Subject: "user_bad"}) }
		parts := strings.Split(valid(), ".")
		refused := map[string]string{
			"expired":          fake.Token(t, clerktest.TokenOptions{Subject: "user_bad", IssuedAt: time.Now().Add(-10 * time.Minute)}),
			"not yet valid":    fake.Token(t, clerktest.TokenOptions{Subject: "user_bad", IssuedAt: time.Now().Add(10 * time.Minute)}),
			"wrong issuer":     fake.Token(t, clerktest.TokenOptions{Subject: "user_bad", Issuer: "https://evil.clerk.accounts.dev"}),
			"azp not allowed":  fake.Token(t, clerktest.TokenOptions{Subject: "user_bad", AuthorizedParty: "https://evil.example.com"}),
			"alg none":         forge(t, valid(), jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType),
			"HS256 public key": forge(t, valid(), jwt.SigningMethodHS256, []byte(fake.PublicKeyPEM())),
			"unknown kid":      fake.Token(t, clerktest.TokenOptions{Subject: "user_bad", KID: "ins_unknown"}),
			"tampered payload": parts[0] + "." + tamper(t, parts[1]) + "." + parts[2],
			"no signature":     parts[0] + "." + parts[1] + ".",
			"garbage":          "not.a.jwt",
		}
		for name, tok := range refused {
			r := s.do("GET", "/v1/me", tok, nil)
			if r.status != http.StatusUnauthorized || r.errorCode(t) != "unauthorized" {
				t.Errorf("%s: %d %s, want 401", name, r.status, r.body)
			}
		}
		// None of the refused tokens created a user.
		var n int
		if err := s.app.DB().QueryRowContext(context.Background(), `SELECT COUNT(*) FROM users WHERE external_id = 'user_bad'`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("refused tokens created %d users (%v)", n, err)
		}
		// Built-in sign-in is not available in Clerk mode.
		if r := s.do("POST", "/v1/auth/login", "", map[string]string{"email": "a@example.com", "password": "password123"}); r.status != http.StatusNotFound {
			t.Fatalf("login in clerk mode: %d %s", r.status, r.body)
		}
	})
}

// tamper rewrites the subject of a token payload to a user that exists,
// keeping the original signature.
func tamper(t *testing.T, payload string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(raw), `"sub":"user_bad"`, `"sub":"user_ok"`, 1)
	if changed == string(raw) {
		t.Fatalf("payload has no sub to tamper with: %s", raw)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(changed))
}

func userCreatedBody(id, email string, updatedAt int64, eventType string) []byte {
	return []byte(fmt.Sprintf(`{"data":{"id":%q,"object":"user","email_addresses":[{"id":"idn_1","object":"email_address","email_address":%q}],`+
		`"primary_email_address_id":"idn_1","first_name":"Ada","last_name":"Lovelace","username":null,"image_url":"https://img.clerk.com/x",`+
		`"public_metadata":{},"created_at":1767225600000,"updated_at":%d},"object":"event","type":%q,"timestamp":1767225600123,"instance_id":"ins_1"}`,
		id, email, updatedAt, eventType))
}

func deletedBody(id string) []byte {
	return []byte(fmt.Sprintf(`{"data":{"deleted":true,"id":%q,"object":"user"},"object":"event","type":"user.deleted","timestamp":1767229200456,"instance_id":"ins_1"}`, id))
}

func (s *testServer) webhook(fake *clerktest.Fake, msgID string, ts time.Time, body []byte, mutate func(http.Header)) response {
	s.t.Helper()
	h := fake.SignedWebhook(s.t, webhookSecret, msgID, ts, body)
	if mutate != nil {
		mutate(h)
	}
	var headers []string
	for k := range h {
		headers = append(headers, k, h.Get(k))
	}
	return s.do("POST", "/v1/webhooks/clerk", "", body, headers...)
}

func countUsers(t *testing.T, s *testServer) int {
	t.Helper()
	var n int
	if err := s.app.DB().QueryRowContext(context.Background(), `SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestClerkWebhooks(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		s, fake := newClerkServer(t, dialect)
		now := time.Now()
		body := userCreatedBody("user_ada", "ada@example.com", 1767225600000, "user.created")

		// Bad signatures: 4xx and nothing changes.
		bad := map[string]func(http.Header){
			"missing signature": func(h http.Header) { h.Del("svix-signature") },
			"missing headers":   func(h http.Header) { h.Del("svix-signature"); h.Del("svix-id"); h.Del("svix-timestamp") },
			"wrong signature":   func(h http.Header) { h.Set("svix-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=") },
			"other message id":  func(h http.Header) { h.Set("svix-id", "msg_other") },
			"signature too old": nil,
		}
		for name, mutate := range bad {
			ts := now
			if mutate == nil {
				ts = now.Add(-6 * time.Minute)
			}
			r := s.webhook(fake, "msg_1", ts, body, mutate)
			if r.status < 400 || r.status >= 500 {
				t.Errorf("%s: %d %s, want 4xx", name, r.status, r.body)
			}
		}
		if n := countUsers(t, s); n != 0 {
			t.Fatalf("refused webhooks created %d users", n)
		}
		// A body changed after signing is refused.
		h := fake.SignedWebhook(t, webhookSecret, "msg_1", now, body)
		tampered := append(append([]byte{}, body...), '\n')
		r := s.do("POST", "/v1/webhooks/clerk", "", tampered, "svix-id", h.Get("svix-id"), "svix-timestamp", h.Get("svix-timestamp"), "svix-signature", h.Get("svix-signature"))
		if r.status != http.StatusUnauthorized {
			t.Fatalf("tampered body: %d %s", r.status, r.body)
		}

		// The same user.created three times: one user, one grant.
		for i := range 3 {
			if r := s.webhook(fake, "msg_1", time.Now(), body, nil); r.status != http.StatusOK {
				t.Fatalf("delivery %d: %d %s", i, r.status, r.body)
			}
		}
		if n := countUsers(t, s); n != 1 {
			t.Fatalf("users after three deliveries = %d, want 1", n)
		}
		token := fake.Token(t, clerktest.TokenOptions{Subject: "user_ada"})
		r = s.do("GET", "/v1/me", token, nil)
		if r.status != http.StatusOK {
			t.Fatalf("me: %d %s", r.status, r.body)
		}
		me := r.json(t)
		if me["email"] != "ada@example.com" || me["name"] != "Ada Lovelace" || me["credits"].(map[string]any)["balance"] != 1000.0 {
			t.Fatalf("me after webhook = %v", me)
		}

		// user.deleted before a (late) user.updated: stays deleted, loses access.
		if r := s.webhook(fake, "msg_2", time.Now(), deletedBody("user_ada"), nil); r.status != http.StatusOK {
			t.Fatalf("user.deleted: %d %s", r.status, r.body)
		}
		updated := userCreatedBody("user_ada", "ada2@example.com", 1767229999000, "user.updated")
		if r := s.webhook(fake, "msg_3", time.Now(), updated, nil); r.status != http.StatusOK {
			t.Fatalf("user.updated: %d %s", r.status, r.body)
		}
		if r := s.do("GET", "/v1/me", fake.Token(t, clerktest.TokenOptions{Subject: "user_ada"}), nil); r.status != http.StatusUnauthorized {
			t.Fatalf("deleted user's token: %d %s, want 401", r.status, r.body)
		}

		// A signed event that is not a Clerk event: 400; an event Luna does
		// not handle: acknowledged.
		if r := s.webhook(fake, "msg_4", time.Now(), []byte(`{"nope":`), nil); r.status != http.StatusBadRequest {
			t.Fatalf("malformed signed body: %d %s", r.status, r.body)
		}
		other := []byte(`{"data":{"id":"sess_1","object":"session"},"object":"event","type":"session.created","timestamp":1767225600123}`)
		if r := s.webhook(fake, "msg_5", time.Now(), other, nil); r.status != http.StatusOK {
			t.Fatalf("unhandled event type: %d %s", r.status, r.body)
		}
	})
}
