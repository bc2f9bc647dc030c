package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"luna/internal/accounts"
	"luna/internal/app"
	"luna/internal/credits"
	"luna/internal/store"
)

func TestBuiltInAccounts(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		s := newTestServer(t, dialect, nil)
		r := s.do("POST", "/v1/auth/signup", "", map[string]string{"email": "Ada@Example.com", "password": "password123", "name": "Ada"})
		if r.status != http.StatusCreated {
			t.Fatalf("signup: %d %s", r.status, r.body)
		}
		body := r.json(t)
		token := body["token"].(string)
		user := body["user"].(map[string]any)
		if got, want := user["credits"].(map[string]any)["available"], 1000.0; got != want {
			t.Fatalf("new user's available credits = %v, want %v", got, want)
		}

		// Duplicate sign-up, in another case: 409.
		r = s.do("POST", "/v1/auth/signup", "", map[string]string{"email": "ada@EXAMPLE.com", "password": "password456"})
		if r.status != http.StatusConflict || r.errorCode(t) != "email_taken" {
			t.Fatalf("duplicate signup: %d %s", r.status, r.body)
		}

		// Wrong password and unknown email: the same 401.
		wrong := s.do("POST", "/v1/auth/login", "", map[string]string{"email": "ada@example.com", "password": "wrong-password"})
		unknown := s.do("POST", "/v1/auth/login", "", map[string]string{"email": "nobody@example.com", "password": "password123"})
		if wrong.status != http.StatusUnauthorized || unknown.status != http.StatusUnauthorized || string(wrong.body) != string(unknown.body) {
			t.Fatalf("wrong password: %d %s; unknown email: %d %s; want identical 401s", wrong.status, wrong.body, unknown.status, unknown.body)
		}

		r = s.do("POST", "/v1/auth/login", "", map[string]string{"email": "ADA@example.com", "password": "password123"})
		if r.status != http.StatusOK {
			t.Fatalf("login: %d %s", r.status, r.body)
		}
		second := r.json(t)["token"].(string)

		r = s.do("GET", "/v1/me", second, nil)
		if r.status != http.StatusOK || r.json(t)["email"] != "Ada@Example.com" {
			t.Fatalf("me: %d %s", r.status, r.body)
		}

		// Logout revokes that token only.
		if r = s.do("POST", "/v1/auth/logout", second, nil); r.status != http.StatusNoContent {
			t.Fatalf("logout: %d %s", r.status, r.body)
		}
		if r = s.do("GET", "/v1/me", second, nil); r.status != http.StatusUnauthorized || r.errorCode(t) != "unauthorized" {
			t.Fatalf("me after logout: %d %s", r.status, r.body)
		}
		if r = s.do("GET", "/v1/me", token, nil); r.status != http.StatusOK {
			t.Fatalf("other session after logout: %d %s", r.status, r.body)
		}
	})
}

func TestInviteOnlySignupOverHTTP(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		s := newTestServer(t, dialect, func(c *app.Config) { c.SignupMode = accounts.SignupInvite })
		svc, err := accounts.NewService(s.app.DB(), s.ledger(), accounts.Config{SignupMode: accounts.SignupInvite})
		if err != nil {
			t.Fatal(err)
		}
		invite, err := svc.CreateInvite(context.Background(), accounts.InviteRequest{MaxUses: 1, ExtraCredits: 500})
		if err != nil {
			t.Fatal(err)
		}
		for _, code := range []string{"", "NOPE-NOPE-NOPE"} {
			r := s.do("POST", "/v1/auth/signup", "", map[string]string{"email": "x@example.com", "password": "password123", "inviteCode": code})
			if r.status != http.StatusForbidden || r.errorCode(t) != "invite_required" {
				t.Fatalf("signup with invite %q: %d %s", code, r.status, r.body)
			}
		}
		r := s.do("POST", "/v1/auth/signup", "", map[string]string{"email": "x@example.com", "password": "password123", "inviteCode": invite.Code})
		if r.status != http.StatusCreated {
			t.Fatalf("signup with invite: %d %s", r.status, r.body)
		}
		if got := r.json(t)["user"].(map[string]any)["credits"].(map[string]any)["balance"]; got != 1500.0 {
			t.Fatalf("balance with invite = %v, want 1500", got)
		}
		r = s.do("POST", "/v1/auth/signup", "", map[string]string{"email": "y@example.com", "password": "password123", "inviteCode": invite.Code})
		if r.status != http.StatusForbidden || r.errorCode(t) != "invite_required" {
			t.Fatalf("signup with a used invite: %d %s", r.status, r.body)
		}
	})
}

func TestClosedSignupOverHTTP(t *testing.T) {
	s := newTestServer(t, store.SQLite, func(c *app.Config) { c.SignupMode = accounts.SignupClosed })
	r := s.do("POST", "/v1/auth/signup", "", map[string]string{"email": "x@example.com", "password": "password123"})
	if r.status != http.StatusForbidden || r.errorCode(t) != "signup_closed" {
		t.Fatalf("closed signup: %d %s", r.status, r.body)
	}
}

func TestLoginIsRateLimited(t *testing.T) {
	s := newTestServer(t, store.SQLite, func(c *app.Config) { c.AuthRateLimit = 3 })
	for i := range 3 {
		r := s.do("POST", "/v1/auth/login", "", map[string]string{"email": "a@example.com", "password": "password123"})
		if r.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d %s", i, r.status, r.body)
		}
	}
	r := s.do("POST", "/v1/auth/login", "", map[string]string{"email": "a@example.com", "password": "password123"})
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("fourth attempt: %d %v %s", r.status, r.header, r.body)
	}
}

func TestMeShowsReservedCredits(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		s := newTestServer(t, dialect, nil)
		token := s.signup("a@example.com")
		me := s.do("GET", "/v1/me", token, nil).json(t)
		_, err := s.ledger().Reserve(context.Background(), credits.ReserveRequest{UserID: me["id"].(string), Amount: 300, TTL: 3600e9})
		if err != nil {
			t.Fatal(err)
		}
		c := s.credits(token)
		if c["balance"] != 1000.0 || c["reserved"] != 300.0 || c["available"] != 700.0 {
			t.Fatalf("credits = %v, want balance 1000, reserved 300, available 700", c)
		}
	})
}

func TestAuthConfig(t *testing.T) {
	s := newTestServer(t, store.SQLite, func(c *app.Config) { c.SignupMode = accounts.SignupInvite })
	r := s.do("GET", "/v1/auth/config", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("auth config: %d %s", r.status, r.body)
	}
	if got := r.json(t); got["mode"] != "local" || got["signupMode"] != "invite" || got["imageCost"] != 50.0 {
		t.Fatalf("auth config = %v", got)
	}
}

// An operator's grant reaches the user's open event stream.
func TestGrantIsPublished(t *testing.T) {
	s := newTestServer(t, store.SQLite, nil)
	token := s.signup("a@example.com")
	events := s.openStream("/v1/events", token, "")
	if ev, ok := events.next(); !ok || ev.name != "credits.updated" {
		t.Fatalf("first event = %v", ev)
	}
	me := s.do("GET", "/v1/me", token, nil).json(t)
	if _, err := s.ledger().Grant(context.Background(), credits.GrantRequest{UserID: me["id"].(string), Amount: 25}); err != nil {
		t.Fatal(err)
	}
	ev, ok := events.next()
	if !ok || ev.name != "credits.updated" || !strings.Contains(ev.data, `"balance":1025`) {
		t.Fatalf("event after grant = %v", ev)
	}
}

// Behind a trusted proxy, the auth limit counts each client separately.
func TestAuthRateLimitBehindProxy(t *testing.T) {
	s := newTestServer(t, store.SQLite, func(c *app.Config) { c.AuthRateLimit, c.TrustProxy = 2, true })
	login := func(client string) int {
		return s.do("POST", "/v1/auth/login", "", map[string]string{"email": "a@example.com", "password": "password123"},
			"X-Forwarded-For", "203.0.113.9, "+client).status
	}
	for range 2 {
		login("198.51.100.1")
	}
	if got := login("198.51.100.1"); got != http.StatusTooManyRequests {
		t.Fatalf("third attempt from one client: %d, want 429", got)
	}
	if got := login("198.51.100.2"); got != http.StatusUnauthorized {
		t.Fatalf("another client behind the same proxy: %d, want 401", got)
	}
}
