package credits

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"luna/internal/cursor"
	"luna/internal/store"
)

// Reference types: what a ledger entry was for, as Ref.Type names it.
const (
	RefMessage  = "message"  // a chat reply (MessageID, and ConversationID when recorded)
	RefImage    = "image"    // an image job (ImageID)
	RefSignup   = "signup"   // the credits every new account gets
	RefInvite   = "invite"   // the extra credits of an invite code
	RefOperator = "operator" // granted or corrected by the operator
)

// Ref is what a ledger entry was for, parsed from its reference text.
type Ref struct {
	Type           string // one of the Ref* constants; "" when the entry says nothing
	MessageID      string
	ConversationID string
	ImageID        string
}

// MessageReference is the reference of a chat reply's hold (and so of its
// settlement entries). It names the conversation too, so that the usage
// history can say where a reply was, even after its conversation (and the
// message with it) was deleted.
func MessageReference(conversationID, messageID string) string {
	return RefMessage + ":" + messageID + " conversation:" + conversationID
}

// ParseReference reads an entry's reference: "message:<id>" optionally
// followed by " conversation:<id>", "image:<id>", "signup", "invite:<code>",
// and anything else an operator typed ("cli", or nothing).
func ParseReference(s string) Ref {
	head, rest, _ := strings.Cut(s, " ")
	kind, id, _ := strings.Cut(head, ":")
	switch {
	case kind == RefMessage && id != "":
		r := Ref{Type: RefMessage, MessageID: id}
		if conv, ok := strings.CutPrefix(rest, "conversation:"); ok && conv != "" {
			r.ConversationID = conv
		}
		return r
	case kind == RefImage && id != "":
		return Ref{Type: RefImage, ImageID: id}
	case s == RefSignup:
		return Ref{Type: RefSignup}
	case kind == RefInvite:
		return Ref{Type: RefInvite} // the code itself stays private
	default:
		return Ref{Type: RefOperator}
	}
}

// EntryPage asks for one page of a user's ledger.
type EntryPage struct {
	Limit  int    // 1..100; 0 means 50
	Cursor string // from a previous page
}

// ListEntries returns a page of the user's ledger entries, newest first,
// and the cursor of the next page ("" at the end). Entries are ordered by
// their id, which only grows, so pages never skip or repeat an entry.
func (l *Ledger) ListEntries(ctx context.Context, userID string, page EntryPage) ([]Entry, string, error) {
	limit, err := cursor.Limit(page.Limit, 50)
	if err != nil {
		return nil, "", err
	}
	query := `SELECT id, kind, balance_delta, reserved_delta, COALESCE(reservation_id, ''), reference, note, shortfall, created_at
		FROM credit_entries WHERE user_id = $1`
	args := []any{userID}
	if page.Cursor != "" {
		before, err := cursor.ParseSeq(page.Cursor)
		if err != nil {
			return nil, "", err
		}
		query += ` AND id < $2`
		args = append(args, int64(before))
	}
	query += fmt.Sprintf(` ORDER BY id DESC LIMIT %d`, limit+1)
	rows, err := l.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list ledger entries: %w", err)
	}
	defer rows.Close()
	var list []Entry
	for rows.Next() {
		e := Entry{UserID: userID}
		var created int64
		if err := rows.Scan(&e.ID, &e.Kind, &e.BalanceDelta, &e.ReservedDelta, &e.ReservationID, &e.Reference, &e.Note, &e.Shortfall, &created); err != nil {
			return nil, "", fmt.Errorf("list ledger entries: %w", err)
		}
		e.CreatedAt = store.Time(created)
		list = append(list, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list ledger entries: %w", err)
	}
	list, next := cursor.Next(list, limit, func(e Entry) cursor.Seq { return cursor.Seq(e.ID) })
	return list, next, nil
}

// EntryJSON is a ledger entry as the usage history shows it.
type EntryJSON struct {
	ID            string    `json:"id"`
	Kind          string    `json:"kind"`
	Amount        int64     `json:"amount"`        // the change of the balance: credits received (+) or spent (−)
	ReservedDelta int64     `json:"reservedDelta"` // the change of the credits held for work in progress
	Shortfall     int64     `json:"shortfall"`     // for a charge: what the balance could not pay
	For           RefJSON   `json:"for"`
	Note          string    `json:"note"`
	CreatedAt     time.Time `json:"createdAt"`
}

// RefJSON is what an entry was for.
type RefJSON struct {
	Type           string  `json:"type"`
	MessageID      *string `json:"messageId"`
	ConversationID *string `json:"conversationId"`
	// ConversationTitle is the conversation's title now, filled in by the
	// API; nil when the conversation was deleted.
	ConversationTitle *string `json:"conversationTitle"`
	ImageID           *string `json:"imageId"`
}

// EntryView is the JSON view of e.
func EntryView(e Entry) EntryJSON {
	ref := ParseReference(e.Reference)
	opt := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	return EntryJSON{
		ID: strconv.FormatInt(e.ID, 10), Kind: e.Kind, Amount: e.BalanceDelta, ReservedDelta: e.ReservedDelta,
		Shortfall: e.Shortfall, For: RefJSON{Type: ref.Type, MessageID: opt(ref.MessageID), ConversationID: opt(ref.ConversationID), ImageID: opt(ref.ImageID)},
		Note: e.Note, CreatedAt: e.CreatedAt.UTC(),
	}
}
