package accounts_test

import (
	"context"
	"testing"

	"luna/internal/accounts"
	"luna/internal/clerk"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// claimsVerifier accepts any token as the session of one Clerk user.
type claimsVerifier struct{ claims clerk.Claims }

func (v claimsVerifier) Verify(context.Context, string) (clerk.Claims, error) { return v.claims, nil }

// Authenticating a request of a known user is one statement, with either
// kind of identity: it comes before every request, the streams' included.
// (PostgreSQL, where Luna counts the statements it sends.)
func TestAuthenticationIsOneStatement(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t, store.Postgres)
	svc, _ := newService(t, db, accounts.SignupOpen)
	_, session, err := svc.Signup(ctx, accounts.SignupRequest{Email: "one@example.com", Password: "correct horse"})
	if err != nil {
		t.Fatal(err)
	}
	clerkAuth := accounts.ClerkAuthenticator{
		Verifier: claimsVerifier{clerk.Claims{Subject: "user_1", Email: "clerk@example.com"}},
		Accounts: svc,
	}
	if _, err := clerkAuth.Authenticate(ctx, "first"); err != nil { // creates the user
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		authenticate func() error
	}{
		{"built-in session", func() error { _, err := svc.Authenticate(ctx, session.Token); return err }},
		{"clerk session", func() error { _, err := clerkAuth.Authenticate(ctx, "again"); return err }},
	}
	for _, tt := range tests {
		before, counted := db.Statements()
		if !counted {
			t.Fatal("statements are not counted on PostgreSQL")
		}
		if err := tt.authenticate(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if after, _ := db.Statements(); after-before != 1 {
			t.Errorf("%s: %d statements, want 1", tt.name, after-before)
		}
	}
}
