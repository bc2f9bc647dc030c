package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"luna"
	"luna/internal/store"
)

// ClerkUser is what Luna learns about a Clerk user, from a session token or
// a webhook.
type ClerkUser struct {
	ID        string    // Clerk user id, "user_..."
	Email     string    // may be empty (session tokens carry no email unless customised)
	Name      string    // may be empty
	UpdatedAt time.Time // Clerk's updated_at; zero when unknown (session tokens)
}

// clerkRow is the stored state of a Clerk user.
type clerkRow struct {
	user            luna.User
	externalUpdated sql.NullInt64
	deleted         bool
}

func getClerkRow(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, clerkID string) (clerkRow, bool, error) {
	var r clerkRow
	var created int64
	var deleted sql.NullInt64
	err := q.QueryRowContext(ctx, `SELECT `+userColumns+`, external_updated_at FROM users
		WHERE provider = 'clerk' AND external_id = $1`, clerkID).
		Scan(&r.user.ID, &r.user.Provider, &r.user.ExternalID, &r.user.Email, &r.user.Name, &created, &deleted, &r.externalUpdated)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("read clerk user: %w", err)
	}
	r.user.CreatedAt, r.user.DeletedAt, r.deleted = store.Time(created), store.NullTime(deleted), deleted.Valid
	return r, true, nil
}

// ClerkUserID returns the Luna id of the user with this Clerk user id,
// deleted or not, or ErrUserNotFound.
func (s *Service) ClerkUserID(ctx context.Context, clerkID string) (string, error) {
	var id string
	err := s.db.QueryRowContext(ctx, `SELECT id FROM users WHERE provider = 'clerk' AND external_id = $1`, clerkID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrUserNotFound
	}
	if err != nil {
		return "", fmt.Errorf("find clerk user: %w", err)
	}
	return id, nil
}

// insertClerkUser creates the user row and grants the initial credits in tx.
// When deleted is true it creates a tombstone instead (no credits).
func (s *Service) insertClerkUser(ctx context.Context, tx *sql.Tx, cu ClerkUser, deleted bool) (luna.User, error) {
	now := s.now()
	u := luna.User{ID: uuid.NewString(), Provider: luna.ProviderClerk, ExternalID: cu.ID, Email: cu.Email, Name: cu.Name, CreatedAt: now.UTC()}
	var email, emailNorm, externalUpdated, deletedAt any
	if cu.Email != "" {
		email, emailNorm = cu.Email, NormalizeEmail(cu.Email)
	}
	if !cu.UpdatedAt.IsZero() {
		externalUpdated = store.NowMillis(cu.UpdatedAt)
	}
	if deleted {
		deletedAt = store.NowMillis(now)
		u.DeletedAt = &u.CreatedAt
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO users (id, provider, external_id, email, email_normalized, name,
			external_updated_at, created_at, updated_at, deleted_at)
		VALUES ($1, 'clerk', $2, $3, $4, $5, $6, $7, $7, $8)`,
		u.ID, cu.ID, email, emailNorm, truncate(cu.Name, MaxNameLength), externalUpdated, store.NowMillis(now), deletedAt)
	if err != nil {
		return luna.User{}, fmt.Errorf("insert clerk user: %w", err)
	}
	if !deleted {
		if err := s.grantInitial(ctx, tx, u.ID); err != nil {
			return luna.User{}, err
		}
	}
	return u, nil
}

// EnsureClerkUser returns the Luna user of an authenticated Clerk session,
// creating it (with its initial credits) when the user.created webhook has
// not arrived yet. A deleted user gets ErrUnauthorized.
func (s *Service) EnsureClerkUser(ctx context.Context, cu ClerkUser) (luna.User, error) {
	if cu.ID == "" {
		return luna.User{}, ErrUnauthorized
	}
	// Every request of a known user: one read, no transaction.
	row, found, err := getClerkRow(ctx, s.db, cu.ID)
	if err != nil {
		return luna.User{}, err
	}
	if found {
		if row.deleted {
			return luna.User{}, ErrUnauthorized
		}
		return row.user, nil
	}
	var user luna.User
	err = retryOnUniqueViolation(func() error {
		return s.db.InTx(ctx, func(tx *sql.Tx) error {
			row, found, err := getClerkRow(ctx, tx, cu.ID)
			if err != nil {
				return err
			}
			if found {
				if row.deleted {
					return ErrUnauthorized
				}
				user = row.user
				return nil
			}
			user, err = s.insertClerkUser(ctx, tx, cu, false)
			return err
		})
	})
	if err != nil {
		return luna.User{}, err
	}
	return user, nil
}

// Clerk webhook event types Luna acts on.
const (
	ClerkUserCreated = "user.created"
	ClerkUserUpdated = "user.updated"
	ClerkUserDeleted = "user.deleted"
)

// ApplyClerkWebhook applies one verified Clerk webhook event. Deliveries are
// at-least-once and unordered, so it is idempotent and order-tolerant:
// a message id seen before is ignored; an update older than the stored one
// is ignored; a deleted user stays deleted (a tombstone row is kept even
// when the deletion arrives first). It reports whether anything changed.
func (s *Service) ApplyClerkWebhook(ctx context.Context, messageID, eventType string, cu ClerkUser) (changed bool, err error) {
	switch eventType {
	case ClerkUserCreated, ClerkUserUpdated, ClerkUserDeleted:
	default:
		return false, nil // other event types are acknowledged and ignored
	}
	if cu.ID == "" {
		return false, luna.Errorf(luna.CodeInvalidRequest, "The event has no user id.")
	}
	err = retryOnUniqueViolation(func() error {
		changed = false
		return s.db.InTx(ctx, func(tx *sql.Tx) error {
			if messageID != "" {
				var claimed string
				err := tx.QueryRowContext(ctx, `INSERT INTO webhook_deliveries (message_id, event_type, received_at)
					VALUES ($1, $2, $3) ON CONFLICT (message_id) DO NOTHING RETURNING message_id`,
					messageID, eventType, store.NowMillis(s.now())).Scan(&claimed)
				if errors.Is(err, sql.ErrNoRows) {
					return nil // already processed
				}
				if err != nil {
					return fmt.Errorf("record webhook delivery: %w", err)
				}
			}
			row, found, err := getClerkRow(ctx, tx, cu.ID)
			if err != nil {
				return err
			}
			now := store.NowMillis(s.now())
			switch {
			case eventType == ClerkUserDeleted && !found:
				_, err = s.insertClerkUser(ctx, tx, cu, true)
				changed = err == nil
				return err
			case eventType == ClerkUserDeleted:
				if row.deleted {
					return nil
				}
				_, err := tx.ExecContext(ctx, `UPDATE users SET deleted_at = $2, updated_at = $2 WHERE id = $1`, row.user.ID, now)
				if err != nil {
					return fmt.Errorf("delete clerk user: %w", err)
				}
				changed = true
				s.logger.Info("clerk user deleted", "user_id", row.user.ID)
				return nil
			case !found:
				_, err = s.insertClerkUser(ctx, tx, cu, false)
				changed = err == nil
				return err
			case row.deleted:
				return nil // deleted users stay deleted
			case row.externalUpdated.Valid && !cu.UpdatedAt.IsZero() && store.NowMillis(cu.UpdatedAt) < row.externalUpdated.Int64:
				return nil // an older version of the user arrived late
			}
			var email, emailNorm any
			if cu.Email != "" {
				email, emailNorm = cu.Email, NormalizeEmail(cu.Email)
			}
			var externalUpdated any
			if !cu.UpdatedAt.IsZero() {
				externalUpdated = store.NowMillis(cu.UpdatedAt)
			}
			_, err = tx.ExecContext(ctx, `UPDATE users SET email = COALESCE($2, email), email_normalized = COALESCE($3, email_normalized),
				name = $4, external_updated_at = COALESCE($5, external_updated_at), updated_at = $6 WHERE id = $1`,
				row.user.ID, email, emailNorm, truncate(cu.Name, MaxNameLength), externalUpdated, now)
			if err != nil {
				return fmt.Errorf("update clerk user: %w", err)
			}
			changed = true
			return nil
		})
	})
	return changed, err
}

func truncate(s string, maxRunes int) string {
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > maxRunes {
		return string(r[:maxRunes])
	}
	return s
}
