package accounts

import (
	"context"
	"fmt"

	"luna"
	"luna/internal/clerk"
)

// TokenVerifier checks a Clerk session token; *clerk.Verifier is one.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (clerk.Claims, error)
}

// ClerkAuthenticator authenticates requests by Clerk session token and maps
// them to Luna users, creating the user on its first request.
type ClerkAuthenticator struct {
	Verifier TokenVerifier
	Accounts *Service
}

// Authenticate returns the user of a valid Clerk session token, or
// ErrUnauthorized.
func (a ClerkAuthenticator) Authenticate(ctx context.Context, token string) (luna.User, error) {
	claims, err := a.Verifier.Verify(ctx, token)
	if err != nil {
		if ctx.Err() != nil {
			return luna.User{}, fmt.Errorf("verify clerk token: %w", ctx.Err())
		}
		return luna.User{}, ErrUnauthorized
	}
	return a.Accounts.EnsureClerkUser(ctx, ClerkUser{ID: claims.Subject, Email: claims.Email, Name: claims.Name})
}
