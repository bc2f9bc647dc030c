package accounts

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"luna/internal/credits"
	"luna/internal/store"
)

// Invite is a sign-up code made by the operator.
type Invite struct {
	Code         string
	MaxUses      int
	Uses         int
	ExtraCredits int64
	Note         string
	CreatedAt    time.Time
	ExpiresAt    *time.Time
}

// InviteRequest describes invites to create.
type InviteRequest struct {
	MaxUses      int           // >= 1
	ExtraCredits int64         // granted on top of the initial credits
	TTL          time.Duration // 0 = never expires
	Note         string
}

// inviteAlphabet avoids look-alike characters (0/O, 1/I/L) so codes can be
// read out and typed.
const inviteAlphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

func newInviteCode() (string, error) {
	raw := make([]byte, 12)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("invite code: %w", err)
	}
	var b strings.Builder
	for i, c := range raw {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(inviteAlphabet[int(c)%len(inviteAlphabet)])
	}
	return b.String(), nil
}

// normalizeInviteCode makes codes case- and separator-insensitive.
func normalizeInviteCode(code string) string {
	code = strings.ToUpper(strings.TrimSpace(code))
	code = strings.ReplaceAll(code, " ", "")
	return code
}

// CreateInvite stores a new invite code.
func (s *Service) CreateInvite(ctx context.Context, req InviteRequest) (Invite, error) {
	if req.MaxUses < 1 {
		return Invite{}, fmt.Errorf("max uses must be at least 1")
	}
	if req.ExtraCredits < 0 {
		return Invite{}, fmt.Errorf("extra credits must not be negative")
	}
	code, err := newInviteCode()
	if err != nil {
		return Invite{}, err
	}
	now := s.now()
	inv := Invite{Code: code, MaxUses: req.MaxUses, ExtraCredits: req.ExtraCredits, Note: req.Note, CreatedAt: now.UTC()}
	var expires any
	if req.TTL > 0 {
		t := now.Add(req.TTL).UTC()
		inv.ExpiresAt, expires = &t, store.NowMillis(t)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO invites (code, max_uses, extra_credits, note, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, code, req.MaxUses, req.ExtraCredits, req.Note, store.NowMillis(now), expires)
	if err != nil {
		return Invite{}, fmt.Errorf("insert invite: %w", err)
	}
	return inv, nil
}

// ListInvites returns every invite, newest first.
func (s *Service) ListInvites(ctx context.Context) ([]Invite, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT code, max_uses, uses, extra_credits, note, created_at, expires_at
		FROM invites ORDER BY created_at DESC, code`)
	if err != nil {
		return nil, fmt.Errorf("list invites: %w", err)
	}
	defer rows.Close()
	var list []Invite
	for rows.Next() {
		var inv Invite
		var created int64
		var expires sql.NullInt64
		if err := rows.Scan(&inv.Code, &inv.MaxUses, &inv.Uses, &inv.ExtraCredits, &inv.Note, &created, &expires); err != nil {
			return nil, fmt.Errorf("list invites: %w", err)
		}
		inv.CreatedAt, inv.ExpiresAt = store.Time(created), store.NullTime(expires)
		list = append(list, inv)
	}
	return list, rows.Err()
}

// redeemInvite uses one use of an invite for userID and grants its extra
// credits, inside the sign-up transaction. The conditional update keeps
// concurrent sign-ups from using a code more often than allowed.
func (s *Service) redeemInvite(ctx context.Context, tx *sql.Tx, code, userID string, now time.Time) error {
	code = normalizeInviteCode(code)
	var extra int64
	err := tx.QueryRowContext(ctx, `UPDATE invites SET uses = uses + 1
		WHERE code = $1 AND uses < max_uses AND (expires_at IS NULL OR expires_at > $2)
		RETURNING extra_credits`, code, store.NowMillis(now)).Scan(&extra)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrInviteRequired
	}
	if err != nil {
		return fmt.Errorf("redeem invite: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO invite_redemptions (invite_code, user_id, created_at) VALUES ($1, $2, $3)`,
		code, userID, store.NowMillis(now)); err != nil {
		return fmt.Errorf("record invite redemption: %w", err)
	}
	if extra > 0 {
		_, err := s.ledger.GrantTx(ctx, tx, credits.GrantRequest{
			UserID: userID, Amount: extra, IdempotencyKey: "invite:" + code, Reference: "invite:" + code, Note: "invite credits",
		})
		if err != nil {
			return fmt.Errorf("invite grant: %w", err)
		}
	}
	return nil
}
