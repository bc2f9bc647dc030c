package luna

import "time"

// Auth providers a user can come from.
const (
	ProviderLocal = "local" // built-in email + password accounts
	ProviderClerk = "clerk" // Clerk session JWTs and webhooks
)

// User is an account of the app.
type User struct {
	ID         string
	Provider   string
	ExternalID string // the identity provider's user id (Clerk "user_..."); empty for local users
	Email      string
	Name       string
	CreatedAt  time.Time
	DeletedAt  *time.Time
}

// Credits is a user's credit position. Available = Balance - Reserved and is
// never negative.
type Credits struct {
	Balance   int64 `json:"balance"`
	Reserved  int64 `json:"reserved"`
	Available int64 `json:"available"`
}
