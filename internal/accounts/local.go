package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/alexedwards/argon2id"
	"github.com/google/uuid"

	"luna"
	"luna/internal/store"
)

// Password hashing parameters: argon2id with OWASP's recommended minimum
// (19 MiB, 2 passes, 1 lane), which costs tens of milliseconds per login.
var passwordParams = &argon2id.Params{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// Limits on what users type.
const (
	MinPasswordLength = 8
	MaxPasswordBytes  = 1024
	MaxEmailLength    = 254
	MaxNameLength     = 100
)

// SignupRequest is what a new local user sends.
type SignupRequest struct {
	Email      string
	Password   string
	Name       string
	InviteCode string
}

// Session is a signed-in device: Token is shown to the client once; only its
// hash is stored.
type Session struct {
	Token     string
	ExpiresAt time.Time
}

// NormalizeEmail is how emails are compared: trimmed and lower-cased.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

func validateEmail(email string) (string, error) {
	email = strings.TrimSpace(email)
	if email == "" || len(email) > MaxEmailLength {
		return "", luna.Errorf(luna.CodeInvalidRequest, "Enter a valid email address.")
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || !strings.Contains(email[strings.LastIndexByte(email, '@')+1:], ".") {
		return "", luna.Errorf(luna.CodeInvalidRequest, "Enter a valid email address.")
	}
	return email, nil
}

func validatePassword(password string) error {
	if utf8.RuneCountInString(password) < MinPasswordLength {
		return luna.Errorf(luna.CodeInvalidRequest, "The password must be at least %d characters.", MinPasswordLength)
	}
	if len(password) > MaxPasswordBytes {
		return luna.Errorf(luna.CodeInvalidRequest, "The password must be at most %d bytes.", MaxPasswordBytes)
	}
	return nil
}

// Signup creates a local account, grants the initial credits (plus an
// invite's extra credits) and signs the user in, all in one transaction.
func (s *Service) Signup(ctx context.Context, req SignupRequest) (luna.User, Session, error) {
	if s.cfg.SignupMode == SignupClosed {
		return luna.User{}, Session{}, ErrSignupClosed
	}
	email, err := validateEmail(req.Email)
	if err != nil {
		return luna.User{}, Session{}, err
	}
	if err := validatePassword(req.Password); err != nil {
		return luna.User{}, Session{}, err
	}
	name := strings.TrimSpace(req.Name)
	if utf8.RuneCountInString(name) > MaxNameLength || !utf8.ValidString(name) {
		return luna.User{}, Session{}, luna.Errorf(luna.CodeInvalidRequest, "The name must be at most %d characters.", MaxNameLength)
	}
	code := strings.TrimSpace(req.InviteCode)
	if s.cfg.SignupMode == SignupInvite && code == "" {
		return luna.User{}, Session{}, ErrInviteRequired
	}
	hash, err := argon2id.CreateHash(req.Password, passwordParams)
	if err != nil {
		return luna.User{}, Session{}, fmt.Errorf("hash password: %w", err)
	}

	now := s.now()
	user := luna.User{ID: uuid.NewString(), Provider: luna.ProviderLocal, Email: email, Name: name, CreatedAt: now.UTC()}
	var session Session
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (id, provider, email, email_normalized, name, password_hash, created_at, updated_at)
			VALUES ($1, 'local', $2, $3, $4, $5, $6, $6)`,
			user.ID, email, NormalizeEmail(email), name, hash, store.NowMillis(now))
		if store.IsUniqueViolation(err) {
			return ErrEmailTaken
		}
		if err != nil {
			return fmt.Errorf("insert user: %w", err)
		}
		if err := s.grantInitial(ctx, tx, user.ID); err != nil {
			return err
		}
		if code != "" {
			if err := s.redeemInvite(ctx, tx, code, user.ID, now); err != nil {
				return err
			}
		}
		session, err = s.createSession(ctx, tx, user.ID, now)
		return err
	})
	if err != nil {
		return luna.User{}, Session{}, err
	}
	s.logger.Info("user signed up", "user_id", user.ID, "invite", code != "")
	return user, session, nil
}

// Login checks an email and password and opens a session. A wrong password
// and an unknown email fail the same way, in about the same time.
func (s *Service) Login(ctx context.Context, email, password string) (luna.User, Session, error) {
	var hash sql.NullString
	user, err := scanUserAndHash(s.db.QueryRowContext(ctx, `SELECT `+userColumns+`, password_hash FROM users
		WHERE provider = 'local' AND email_normalized = $1 AND deleted_at IS NULL`, NormalizeEmail(email)), &hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return luna.User{}, Session{}, fmt.Errorf("login: %w", err)
	}
	found := err == nil && hash.Valid
	if !found {
		hash.String = s.dummyHash
	}
	match, err := argon2id.ComparePasswordAndHash(password, hash.String)
	if err != nil {
		return luna.User{}, Session{}, fmt.Errorf("login: compare password: %w", err)
	}
	if !found || !match {
		return luna.User{}, Session{}, ErrInvalidCredentials
	}
	var session Session
	err = s.db.InTx(ctx, func(tx *sql.Tx) (err error) {
		session, err = s.createSession(ctx, tx, user.ID, s.now())
		return err
	})
	if err != nil {
		return luna.User{}, Session{}, err
	}
	return user, session, nil
}

func scanUserAndHash(row *sql.Row, hash *sql.NullString) (luna.User, error) {
	var u luna.User
	var created int64
	var deleted sql.NullInt64
	if err := row.Scan(&u.ID, &u.Provider, &u.ExternalID, &u.Email, &u.Name, &created, &deleted, hash); err != nil {
		return u, err
	}
	u.CreatedAt, u.DeletedAt = store.Time(created), store.NullTime(deleted)
	return u, nil
}

const tokenPrefix = "luna_"

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func (s *Service) createSession(ctx context.Context, tx *sql.Tx, userID string, now time.Time) (Session, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return Session{}, fmt.Errorf("session token: %w", err)
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	expires := now.Add(s.cfg.SessionTTL)
	_, err := tx.ExecContext(ctx, `INSERT INTO sessions (id, user_id, token_hash, created_at, expires_at, last_used_at)
		VALUES ($1, $2, $3, $4, $5, $4)`, uuid.NewString(), userID, hashToken(token), store.NowMillis(now), store.NowMillis(expires))
	if err != nil {
		return Session{}, fmt.Errorf("insert session: %w", err)
	}
	return Session{Token: token, ExpiresAt: expires.UTC()}, nil
}

// sessionTouchInterval limits how often a session's last use is written.
const sessionTouchInterval = time.Hour

// Authenticate returns the user a bearer session token belongs to, or
// ErrUnauthorized when the token is unknown, expired, revoked, or its user
// deleted.
func (s *Service) Authenticate(ctx context.Context, token string) (luna.User, error) {
	if !strings.HasPrefix(token, tokenPrefix) || len(token) > 200 {
		return luna.User{}, ErrUnauthorized
	}
	var sessionID string
	var expires, lastUsed int64
	var revoked sql.NullInt64
	var u luna.User
	var created int64
	var deleted sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT s.id, s.expires_at, s.last_used_at, s.revoked_at,
			u.id, u.provider, COALESCE(u.external_id, ''), COALESCE(u.email, ''), u.name, u.created_at, u.deleted_at
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1`, hashToken(token)).
		Scan(&sessionID, &expires, &lastUsed, &revoked, &u.ID, &u.Provider, &u.ExternalID, &u.Email, &u.Name, &created, &deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return luna.User{}, ErrUnauthorized
	}
	if err != nil {
		return luna.User{}, fmt.Errorf("authenticate: %w", err)
	}
	now := s.now()
	if revoked.Valid || deleted.Valid || store.NowMillis(now) >= expires {
		return luna.User{}, ErrUnauthorized
	}
	u.CreatedAt, u.DeletedAt = store.Time(created), nil
	if now.Sub(store.Time(lastUsed)) > sessionTouchInterval {
		if _, err := s.db.ExecContext(ctx, `UPDATE sessions SET last_used_at = $2 WHERE id = $1`, sessionID, store.NowMillis(now)); err != nil {
			s.logger.Warn("could not record session use", "err", err)
		}
	}
	return u, nil
}

// Logout revokes the session of token. Revoking an unknown or already
// revoked token is not an error.
func (s *Service) Logout(ctx context.Context, token string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE sessions SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL`,
		hashToken(token), store.NowMillis(s.now()))
	if err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	return nil
}
