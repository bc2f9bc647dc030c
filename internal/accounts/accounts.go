// Package accounts manages who uses Luna: built-in email + password accounts
// with bearer sessions, invite codes, and users synced from Clerk. Every new
// user gets the initial credit grant exactly once, in the transaction that
// creates the user, keyed by the user id.
package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/alexedwards/argon2id"

	"luna"
	"luna/internal/credits"
	"luna/internal/store"
)

// Sign-up modes for built-in accounts.
const (
	SignupOpen   = "open"   // anyone can sign up
	SignupInvite = "invite" // a valid, unused invite code is required
	SignupClosed = "closed" // nobody can sign up
)

// Errors returned to API clients.
var (
	ErrInvalidCredentials = &luna.Error{Code: luna.CodeUnauthorized, Message: "Wrong email or password."}
	ErrUnauthorized       = &luna.Error{Code: luna.CodeUnauthorized, Message: "Sign in to continue."}
	ErrEmailTaken         = &luna.Error{Code: luna.CodeEmailTaken, Message: "An account with this email already exists."}
	ErrInviteRequired     = &luna.Error{Code: luna.CodeInviteRequired, Message: "A valid, unused invite code is required to sign up."}
	ErrSignupClosed       = &luna.Error{Code: luna.CodeSignupClosed, Message: "Sign-up is closed."}
	ErrUserNotFound       = &luna.Error{Code: luna.CodeNotFound, Message: "User not found."}
)

// Config holds the account rules chosen by the operator.
type Config struct {
	SignupMode     string        // SignupOpen, SignupInvite or SignupClosed
	InitialCredits int64         // granted once to every new user
	SessionTTL     time.Duration // lifetime of a bearer session
}

// Service runs account operations.
type Service struct {
	db     *store.DB
	ledger *credits.Ledger
	cfg    Config
	now    func() time.Time
	logger *slog.Logger
	// dummyHash is checked when a login names an unknown email, so that a
	// wrong email and a wrong password take the same time.
	dummyHash string
}

// DefaultConfig is the operator's default account rules: open sign-up,
// 1,000 credits for a new user, 30-day sessions. A zero SessionTTL also
// stands for the default.
func DefaultConfig() Config {
	return Config{SignupMode: SignupOpen, InitialCredits: 1000, SessionTTL: 30 * 24 * time.Hour}
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the Service's logger (default: discard).
func WithLogger(logger *slog.Logger) Option { return func(s *Service) { s.logger = logger } }

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// NewService returns a Service.
func NewService(db *store.DB, ledger *credits.Ledger, cfg Config, opts ...Option) (*Service, error) {
	switch cfg.SignupMode {
	case SignupOpen, SignupInvite, SignupClosed:
	default:
		return nil, fmt.Errorf("sign-up mode %q: want open, invite or closed", cfg.SignupMode)
	}
	if cfg.InitialCredits < 0 {
		return nil, fmt.Errorf("initial credits %d: must not be negative", cfg.InitialCredits)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultConfig().SessionTTL
	}
	dummyHash, err := argon2id.CreateHash("luna-dummy-password", passwordParams)
	if err != nil {
		return nil, fmt.Errorf("password hashing: %w", err)
	}
	s := &Service{db: db, ledger: ledger, cfg: cfg, now: time.Now, logger: slog.New(slog.DiscardHandler), dummyHash: dummyHash}
	for _, opt := range opts {
		opt(s)
	}
	return s, nil
}

// SignupMode reports the configured sign-up mode.
func (s *Service) SignupMode() string { return s.cfg.SignupMode }

// grantInitial gives a new user the sign-up credits inside the transaction
// that created it. The key makes it once per user whatever path created it.
func (s *Service) grantInitial(ctx context.Context, tx *sql.Tx, userID string) error {
	if s.cfg.InitialCredits == 0 {
		return nil
	}
	_, err := s.ledger.GrantTx(ctx, tx, credits.GrantRequest{
		UserID: userID, Amount: s.cfg.InitialCredits, IdempotencyKey: "signup:" + userID,
		Reference: "signup", Note: "initial credits",
	})
	if err != nil {
		return fmt.Errorf("initial grant: %w", err)
	}
	return nil
}

const userColumns = `id, provider, COALESCE(external_id, ''), COALESCE(email, ''), name, created_at, deleted_at`

func scanUser(row interface{ Scan(...any) error }) (luna.User, error) {
	var u luna.User
	var created int64
	var deleted sql.NullInt64
	if err := row.Scan(&u.ID, &u.Provider, &u.ExternalID, &u.Email, &u.Name, &created, &deleted); err != nil {
		return u, err
	}
	u.CreatedAt, u.DeletedAt = store.Time(created), store.NullTime(deleted)
	return u, nil
}

// GetUser returns a user by id, deleted or not.
func (s *Service) GetUser(ctx context.Context, id string) (luna.User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return u, ErrUserNotFound
	}
	if err != nil {
		return u, fmt.Errorf("get user: %w", err)
	}
	return u, nil
}

// FindUser returns the user with the given id, or else the (non-deleted)
// user with the given email, compared case-insensitively. It is for the
// operator's CLI.
func (s *Service) FindUser(ctx context.Context, idOrEmail string) (luna.User, error) {
	u, err := s.GetUser(ctx, idOrEmail)
	if err == nil || !errors.Is(err, ErrUserNotFound) {
		return u, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users
		WHERE email_normalized = $1 AND deleted_at IS NULL ORDER BY created_at`, NormalizeEmail(idOrEmail))
	if err != nil {
		return u, fmt.Errorf("find user: %w", err)
	}
	defer rows.Close()
	var found []luna.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return u, fmt.Errorf("find user: %w", err)
		}
		found = append(found, u)
	}
	if err := rows.Err(); err != nil {
		return u, fmt.Errorf("find user: %w", err)
	}
	switch len(found) {
	case 0:
		return luna.User{}, ErrUserNotFound
	case 1:
		return found[0], nil
	default:
		return luna.User{}, fmt.Errorf("%d users have the email %s; use a user id", len(found), idOrEmail)
	}
}

// UserSummary is a row of `luna users list`.
type UserSummary struct {
	luna.User
	Credits luna.Credits
}

// ListUsers returns users, newest first, with their credits.
func (s *Service) ListUsers(ctx context.Context, limit int) ([]UserSummary, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+`, credits_balance, credits_reserved
		FROM users ORDER BY created_at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var list []UserSummary
	for rows.Next() {
		var u UserSummary
		var created int64
		var deleted sql.NullInt64
		if err := rows.Scan(&u.ID, &u.Provider, &u.ExternalID, &u.Email, &u.Name, &created, &deleted,
			&u.Credits.Balance, &u.Credits.Reserved); err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		u.CreatedAt, u.DeletedAt = store.Time(created), store.NullTime(deleted)
		u.Credits.Available = u.Credits.Balance - u.Credits.Reserved
		list = append(list, u)
	}
	return list, rows.Err()
}

// retryOnUniqueViolation runs fn again when it lost a race to create the
// same row (two first requests of one Clerk user, say): the second attempt
// sees the winner's row.
func retryOnUniqueViolation(fn func() error) error {
	var err error
	for range 3 {
		if err = fn(); !store.IsUniqueViolation(err) {
			return err
		}
	}
	return err
}
