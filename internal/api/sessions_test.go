package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"luna/internal/app"
	"luna/internal/clerk/clerktest"
	"luna/internal/llm/llmtest"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// endsWithin reports whether the server ends st within d (events are read
// and dropped meanwhile).
func endsWithin(st *sseStream, d time.Duration) bool {
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for {
			if _, ok := st.next(); !ok {
				return
			}
		}
	}()
	select {
	case <-ended:
		return true
	case <-time.After(d):
		return false
	}
}

// firstEvent reads st's first event, so that the stream is surely open.
func firstEvent(t *testing.T, st *sseStream) {
	t.Helper()
	if _, ok := st.next(); !ok {
		t.Fatal("stream ended before its first event")
	}
}

// twoInstances returns two Luna instances on one database (PostgreSQL), or
// the same one twice (SQLite has one instance).
func twoInstances(t *testing.T, dialect store.Dialect, start func(configure func(*app.Config)) *testServer) (*testServer, *testServer) {
	t.Helper()
	dbURL := storetest.URL(t, dialect)
	a := start(func(c *app.Config) { c.DatabaseURL = dbURL })
	if dialect == store.SQLite {
		return a, a
	}
	return a, start(func(c *app.Config) { c.DatabaseURL = dbURL })
}

// Signing out closes that session's open streams (/v1/events and a
// reply's stream) within seconds, on every instance; another session of
// the same user keeps its streams.
func TestLogoutClosesTheSessionsStreams(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.SetDefault(llmtest.Script{Tokens: []string{"Title"}})
		a, b := twoInstances(t, dialect, func(configure func(*app.Config)) *testServer {
			return newChatServer(t, dialect, fake, configure)
		})
		token := a.signup("a@example.com")
		r := a.do("POST", "/v1/auth/login", "", map[string]string{"email": "a@example.com", "password": "password123"})
		if r.status != http.StatusOK {
			t.Fatalf("login: %d %s", r.status, r.body)
		}
		other := r.json(t)["token"].(string)

		long := make([]string, 200)
		for i := range long {
			long[i] = " word"
		}
		fake.Enqueue(llmtest.Script{Tokens: long, TokenDelay: 50 * time.Millisecond})
		reply := a.send(token, a.newConversation(token), "a long one, please")

		events := b.openStream("/v1/events", token, "")
		replyStream := b.openStream("/v1/messages/"+reply+"/stream", token, "")
		otherEvents := b.openStream("/v1/events", other, "")
		for _, st := range []*sseStream{events, replyStream, otherEvents} {
			firstEvent(t, st)
		}

		if r := a.do("POST", "/v1/auth/logout", token, nil); r.status != http.StatusNoContent {
			t.Fatalf("logout: %d %s", r.status, r.body)
		}
		if !endsWithin(events, 5*time.Second) {
			t.Error("the signed-out session's /v1/events stayed open")
		}
		if !endsWithin(replyStream, 5*time.Second) {
			t.Error("the signed-out session's reply stream stayed open")
		}
		if endsWithin(otherEvents, time.Second) {
			t.Error("another session's /v1/events was closed")
		}
		if r := b.do("GET", "/v1/me", token, nil); r.status != http.StatusUnauthorized {
			t.Fatalf("signed-out token on the other instance: %d", r.status)
		}
	})
}

// A Clerk user.deleted webhook closes the user's open streams within
// seconds, on every instance; other users' streams stay.
func TestClerkUserDeletedClosesStreams(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := clerktest.New(t)
		a, b := twoInstances(t, dialect, func(configure func(*app.Config)) *testServer {
			return newTestServer(t, dialect, func(c *app.Config) {
				c.Auth, c.ClerkIssuer, c.ClerkJWKSURL, c.ClerkWebhookSecret = "clerk", fake.Issuer(), fake.JWKSURL(), webhookSecret
				configure(c)
			})
		})
		gone := b.openStream("/v1/events", fake.Token(t, clerktest.TokenOptions{Subject: "user_gone"}), "")
		stays := b.openStream("/v1/events", fake.Token(t, clerktest.TokenOptions{Subject: "user_stays"}), "")
		firstEvent(t, gone)
		firstEvent(t, stays)

		if r := a.webhook(fake, "msg_delete", time.Now(), deletedBody("user_gone"), nil); r.status != http.StatusOK {
			t.Fatalf("webhook: %d %s", r.status, r.body)
		}
		if !endsWithin(gone, 5*time.Second) {
			t.Error("the deleted user's /v1/events stayed open")
		}
		if endsWithin(stays, time.Second) {
			t.Error("another user's /v1/events was closed")
		}
	})
}

// A session revoked where no signal reaches the server (here straight in
// the database, as the admin CLI on SQLite does from another process) still
// closes its streams: they re-check their session periodically.
func TestRevokedSessionClosesStreamsOnRecheck(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		s := newTestServer(t, dialect, func(c *app.Config) { c.SessionCheckInterval = 200 * time.Millisecond })
		token := s.signup("a@example.com")
		other := s.signup("b@example.com")
		events := s.openStream("/v1/events", token, "")
		otherEvents := s.openStream("/v1/events", other, "")
		firstEvent(t, events)
		firstEvent(t, otherEvents)
		me := s.do("GET", "/v1/me", token, nil).json(t)
		if _, err := s.app.DB().ExecContext(context.Background(), `UPDATE sessions SET revoked_at = created_at WHERE user_id = $1`, me["id"]); err != nil {
			t.Fatal(err)
		}
		if !endsWithin(events, 3*time.Second) {
			t.Error("a revoked session's /v1/events stayed open")
		}
		if endsWithin(otherEvents, time.Second) {
			t.Error("another user's /v1/events was closed")
		}
	})
}
