package accounts_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"luna"
	"luna/internal/accounts"
	"luna/internal/credits"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

func newService(t *testing.T, db *store.DB, mode string) (*accounts.Service, *credits.Ledger) {
	t.Helper()
	ledger := credits.NewLedger(db)
	svc, err := accounts.NewService(db, ledger, accounts.Config{SignupMode: mode, InitialCredits: 1000, SessionTTL: time.Hour})
	if err != nil {
		t.Fatalf("new service: %v", err)
	}
	return svc, ledger
}

func wantBalance(t *testing.T, ledger *credits.Ledger, userID string, want int64) {
	t.Helper()
	c, err := ledger.Balance(context.Background(), userID)
	if err != nil {
		t.Fatalf("balance: %v", err)
	}
	if c.Balance != want {
		t.Fatalf("balance = %d, want %d", c.Balance, want)
	}
}

func TestLocalAccounts(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		svc, ledger := newService(t, db, accounts.SignupOpen)

		user, session, err := svc.Signup(ctx, accounts.SignupRequest{Email: "Ada@Example.com", Password: "correct horse", Name: "Ada"})
		if err != nil {
			t.Fatalf("signup: %v", err)
		}
		wantBalance(t, ledger, user.ID, 1000)
		if got, err := svc.Authenticate(ctx, session.Token); err != nil || got.ID != user.ID {
			t.Fatalf("authenticate new session = %v, %v", got.ID, err)
		}

		// Emails compare case-insensitively, for sign-up and login.
		_, _, err = svc.Signup(ctx, accounts.SignupRequest{Email: "ada@example.COM", Password: "another password"})
		if !errors.Is(err, accounts.ErrEmailTaken) {
			t.Fatalf("duplicate signup: %v, want ErrEmailTaken", err)
		}
		_, login, err := svc.Login(ctx, " ADA@example.com", "correct horse")
		if err != nil {
			t.Fatalf("login: %v", err)
		}

		// Wrong password and unknown email fail the same way.
		_, _, errWrong := svc.Login(ctx, "ada@example.com", "wrong password")
		_, _, errUnknown := svc.Login(ctx, "nobody@example.com", "correct horse")
		if errWrong != accounts.ErrInvalidCredentials || errUnknown != accounts.ErrInvalidCredentials {
			t.Fatalf("wrong password: %v; unknown email: %v; want both ErrInvalidCredentials", errWrong, errUnknown)
		}

		// Logout revokes only that session.
		if err := svc.Logout(ctx, login.Token); err != nil {
			t.Fatalf("logout: %v", err)
		}
		if _, err := svc.Authenticate(ctx, login.Token); !errors.Is(err, accounts.ErrUnauthorized) {
			t.Fatalf("authenticate after logout: %v, want ErrUnauthorized", err)
		}
		if _, err := svc.Authenticate(ctx, session.Token); err != nil {
			t.Fatalf("other session after logout: %v", err)
		}
		for _, token := range []string{"", "garbage", "luna_" + "x", session.Token + "x"} {
			if _, err := svc.Authenticate(ctx, token); !errors.Is(err, accounts.ErrUnauthorized) {
				t.Errorf("authenticate %q: %v, want ErrUnauthorized", token, err)
			}
		}
	})
}

func TestSessionsExpire(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Now()
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		svc, err := accounts.NewService(db, credits.NewLedger(db), accounts.Config{SignupMode: accounts.SignupOpen, SessionTTL: time.Hour}, accounts.WithClock(clock))
		if err != nil {
			t.Fatal(err)
		}
		_, session, err := svc.Signup(ctx, accounts.SignupRequest{Email: "a@example.com", Password: "password1"})
		if err != nil {
			t.Fatalf("signup: %v", err)
		}
		mu.Lock()
		now = now.Add(61 * time.Minute)
		mu.Unlock()
		if _, err := svc.Authenticate(ctx, session.Token); !errors.Is(err, accounts.ErrUnauthorized) {
			t.Fatalf("expired session: %v, want ErrUnauthorized", err)
		}
	})
}

func TestSignupValidation(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		svc, _ := newService(t, db, accounts.SignupOpen)
		tests := []struct {
			name string
			req  accounts.SignupRequest
		}{
			{"empty email", accounts.SignupRequest{Password: "password1"}},
			{"not an email", accounts.SignupRequest{Email: "ada", Password: "password1"}},
			{"display name form", accounts.SignupRequest{Email: "Ada <ada@example.com>", Password: "password1"}},
			{"short password", accounts.SignupRequest{Email: "ada@example.com", Password: "short"}},
			{"long name", accounts.SignupRequest{Email: "ada@example.com", Password: "password1", Name: string(make([]rune, 101))}},
		}
		for _, tt := range tests {
			_, _, err := svc.Signup(context.Background(), tt.req)
			if luna.ErrorCode(err) != luna.CodeInvalidRequest {
				t.Errorf("%s: got %v, want invalid_request", tt.name, err)
			}
		}
	})
}

func TestInviteOnlySignup(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		svc, ledger := newService(t, db, accounts.SignupInvite)
		single, err := svc.CreateInvite(ctx, accounts.InviteRequest{MaxUses: 1, ExtraCredits: 250})
		if err != nil {
			t.Fatalf("create invite: %v", err)
		}
		expired, err := svc.CreateInvite(ctx, accounts.InviteRequest{MaxUses: 5, TTL: time.Nanosecond})
		if err != nil {
			t.Fatalf("create invite: %v", err)
		}
		time.Sleep(2 * time.Millisecond)

		refused := []struct{ name, code string }{
			{"no code", ""},
			{"unknown code", "AAAA-BBBB-CCCC"},
			{"expired code", expired.Code},
		}
		for i, tt := range refused {
			_, _, err := svc.Signup(ctx, accounts.SignupRequest{Email: fmt.Sprintf("r%d@example.com", i), Password: "password1", InviteCode: tt.code})
			if !errors.Is(err, accounts.ErrInviteRequired) {
				t.Errorf("%s: %v, want ErrInviteRequired", tt.name, err)
			}
		}

		// Ten people race for a single-use code: one gets in.
		var wins atomic.Int64
		var winner atomic.Value
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				u, _, err := svc.Signup(ctx, accounts.SignupRequest{
					Email: fmt.Sprintf("p%d@example.com", i), Password: "password1", InviteCode: " " + single.Code + " ",
				})
				switch {
				case err == nil:
					wins.Add(1)
					winner.Store(u.ID)
				case !errors.Is(err, accounts.ErrInviteRequired):
					t.Errorf("signup %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		if got := wins.Load(); got != 1 {
			t.Fatalf("%d sign-ups used a single-use invite, want 1", got)
		}
		wantBalance(t, ledger, winner.Load().(string), 1250)
		invites, err := svc.ListInvites(ctx)
		if err != nil {
			t.Fatalf("list invites: %v", err)
		}
		for _, inv := range invites {
			if inv.Code == single.Code && inv.Uses != 1 {
				t.Fatalf("invite uses = %d, want 1", inv.Uses)
			}
		}
		report, err := ledger.Audit(ctx)
		if err != nil || len(report.Mismatches) > 0 {
			t.Fatalf("audit: %v %v", report.Mismatches, err)
		}
	})
}

func TestClosedSignup(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		svc, _ := newService(t, db, accounts.SignupClosed)
		_, _, err := svc.Signup(context.Background(), accounts.SignupRequest{Email: "a@example.com", Password: "password1"})
		if !errors.Is(err, accounts.ErrSignupClosed) {
			t.Fatalf("closed signup: %v, want ErrSignupClosed", err)
		}
	})
}

func TestClerkSync(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		svc, ledger := newService(t, db, accounts.SignupOpen)
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

		// The same user.created delivered three times (and once more under
		// another message id): one user, one grant.
		for i, msg := range []string{"msg_1", "msg_1", "msg_1", "msg_1b"} {
			changed, err := svc.ApplyClerkWebhook(ctx, msg, accounts.ClerkUserCreated, accounts.ClerkUser{ID: "user_a", Email: "a@example.com", Name: "A", UpdatedAt: t0})
			if err != nil {
				t.Fatalf("delivery %d: %v", i, err)
			}
			if want := i == 0 || msg == "msg_1b"; changed != want {
				t.Errorf("delivery %d changed = %v, want %v", i, changed, want)
			}
		}
		user, err := svc.EnsureClerkUser(ctx, accounts.ClerkUser{ID: "user_a"})
		if err != nil {
			t.Fatalf("ensure: %v", err)
		}
		wantBalance(t, ledger, user.ID, 1000)

		// A late, older update is ignored; a newer one applies.
		if _, err := svc.ApplyClerkWebhook(ctx, "msg_2", accounts.ClerkUserUpdated, accounts.ClerkUser{ID: "user_a", Email: "old@example.com", UpdatedAt: t0.Add(-time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.ApplyClerkWebhook(ctx, "msg_3", accounts.ClerkUserUpdated, accounts.ClerkUser{ID: "user_a", Email: "new@example.com", Name: "New", UpdatedAt: t0.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		got, err := svc.GetUser(ctx, user.ID)
		if err != nil || got.Email != "new@example.com" || got.Name != "New" {
			t.Fatalf("after updates: %+v, %v", got, err)
		}

		// First request before any webhook: created with credits, once, even
		// under concurrency.
		var wg sync.WaitGroup
		ids := make(chan string, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				u, err := svc.EnsureClerkUser(ctx, accounts.ClerkUser{ID: "user_b"})
				if err != nil {
					t.Errorf("ensure: %v", err)
					return
				}
				ids <- u.ID
			}()
		}
		wg.Wait()
		close(ids)
		first := <-ids
		for id := range ids {
			if id != first {
				t.Fatalf("concurrent first requests made two users: %s, %s", first, id)
			}
		}
		wantBalance(t, ledger, first, 1000)
		// The webhook arriving afterwards fills in the email without a second grant.
		if _, err := svc.ApplyClerkWebhook(ctx, "msg_4", accounts.ClerkUserCreated, accounts.ClerkUser{ID: "user_b", Email: "b@example.com", UpdatedAt: t0}); err != nil {
			t.Fatal(err)
		}
		wantBalance(t, ledger, first, 1000)

		// Deleted before updated: stays deleted, and loses access.
		if _, err := svc.ApplyClerkWebhook(ctx, "msg_5", accounts.ClerkUserDeleted, accounts.ClerkUser{ID: "user_a"}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.ApplyClerkWebhook(ctx, "msg_6", accounts.ClerkUserUpdated, accounts.ClerkUser{ID: "user_a", Email: "zombie@example.com", UpdatedAt: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.EnsureClerkUser(ctx, accounts.ClerkUser{ID: "user_a"}); !errors.Is(err, accounts.ErrUnauthorized) {
			t.Fatalf("deleted user authenticated: %v", err)
		}
		// Deletion arriving before creation leaves a tombstone.
		if _, err := svc.ApplyClerkWebhook(ctx, "msg_7", accounts.ClerkUserDeleted, accounts.ClerkUser{ID: "user_c"}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.ApplyClerkWebhook(ctx, "msg_8", accounts.ClerkUserCreated, accounts.ClerkUser{ID: "user_c", Email: "c@example.com", UpdatedAt: t0}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.EnsureClerkUser(ctx, accounts.ClerkUser{ID: "user_c"}); !errors.Is(err, accounts.ErrUnauthorized) {
			t.Fatalf("user created after deletion authenticated: %v", err)
		}
		report, err := ledger.Audit(ctx)
		if err != nil || len(report.Mismatches) > 0 {
			t.Fatalf("audit: %v %v", report.Mismatches, err)
		}
	})
}
