package chat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"luna"
	"luna/internal/cursor"
	"luna/internal/events"
	"luna/internal/models"
	"luna/internal/store"
)

// CreateConversation starts a conversation with a model. The model is fixed
// for the conversation's life.
func (s *Service) CreateConversation(ctx context.Context, userID, modelID, title string) (Conversation, error) {
	title, err := cleanTitle(title)
	if err != nil {
		return Conversation{}, err
	}
	if strings.TrimSpace(modelID) == "" {
		return Conversation{}, luna.Errorf(luna.CodeInvalidRequest, "modelId is required.")
	}
	m, err := models.Get(ctx, s.db, modelID)
	if errors.Is(err, models.ErrNotFound) {
		return Conversation{}, luna.Errorf(luna.CodeInvalidRequest, "Unknown model %q.", modelID)
	}
	if err != nil {
		return Conversation{}, err
	}
	if !m.Active {
		return Conversation{}, luna.Errorf(luna.CodeModelUnavailable, "The model %q is not available.", modelID)
	}
	now := s.now()
	c := Conversation{ID: newID(), UserID: userID, ModelID: m.ID, Title: title, CreatedAt: now.UTC(), UpdatedAt: now.UTC()}
	_, err = s.db.ExecContext(ctx, `INSERT INTO conversations (id, user_id, model_id, title, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $5)`, c.ID, userID, m.ID, title, store.NowMillis(now))
	if err != nil {
		return Conversation{}, fmt.Errorf("insert conversation: %w", err)
	}
	s.publish(ctx, userID, events.ConversationCreated, c.ID)
	return c, nil
}

func cleanTitle(title string) (string, error) {
	title = strings.Join(strings.Fields(title), " ")
	if utf8.RuneCountInString(title) > MaxTitleChars {
		return "", luna.Errorf(luna.CodeInvalidRequest, "The title must be at most %d characters.", MaxTitleChars)
	}
	return title, nil
}

// GetConversation returns one of the user's conversations.
func (s *Service) GetConversation(ctx context.Context, userID, id string) (Conversation, error) {
	c, err := scanConversation(s.db.QueryRowContext(ctx, `SELECT `+conversationColumns+` FROM conversations
		WHERE id = $1 AND user_id = $2`, id, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return c, ErrConversationNotFound
	}
	if err != nil {
		return c, fmt.Errorf("get conversation: %w", err)
	}
	return c, nil
}

// conversationWithModel returns a user's conversation and its model in one
// read (a send needs both; the model is checked after a retry is
// answered).
func (s *Service) conversationWithModel(ctx context.Context, userID, id string) (Conversation, models.Model, error) {
	var c Conversation
	var created, updated int64
	m, err := models.ScanAfter(s.db.QueryRowContext(ctx, `SELECT c.*, `+models.ColumnsOf("m")+`
		FROM (SELECT `+conversationColumns+` FROM conversations WHERE id = $1 AND user_id = $2) c
		JOIN models m ON m.id = c.model_id`, id, userID), conversationDest(&c, &created, &updated)...)
	if errors.Is(err, sql.ErrNoRows) {
		return c, m, ErrConversationNotFound
	}
	if err != nil {
		return c, m, fmt.Errorf("get conversation and model: %w", err)
	}
	c.CreatedAt, c.UpdatedAt = store.Time(created), store.Time(updated)
	return c, m, nil
}

// CheckConversationOwner returns nil when the conversation exists and
// belongs to the user, and ErrConversationNotFound otherwise (also for an
// id that is not one). Other packages (images) ask this rather than read
// the conversations table themselves; q is the database or a transaction.
func CheckConversationOwner(ctx context.Context, q Querier, userID, id string) error {
	if !luna.ValidID(id) {
		return ErrConversationNotFound
	}
	var owner string
	err := q.QueryRowContext(ctx, `SELECT user_id FROM conversations WHERE id = $1`, id).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != userID) {
		return ErrConversationNotFound
	}
	if err != nil {
		return fmt.Errorf("check conversation: %w", err)
	}
	return nil
}

// Querier is what read helpers need: a *sql.DB or a *sql.Tx.
type Querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ListConversations returns the user's conversations, most recently
// updated first, and the cursor of the next page ("" at the end).
func (s *Service) ListConversations(ctx context.Context, userID string, page Page) ([]Conversation, string, error) {
	keyset, err := cursor.NewKeyset("updated_at", page.Limit, 30, page.Cursor)
	if err != nil {
		return nil, "", err
	}
	query, args := keyset.SQL(`SELECT `+conversationColumns+` FROM conversations WHERE user_id = $1`, []any{userID})
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list conversations: %w", err)
	}
	defer rows.Close()
	var list []Conversation
	for rows.Next() {
		c, err := scanConversation(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list conversations: %w", err)
		}
		list = append(list, c)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list conversations: %w", err)
	}
	list, next := cursor.Next(list, keyset.Limit, func(c Conversation) cursor.Cursor {
		return cursor.Cursor{At: store.NowMillis(c.UpdatedAt), ID: c.ID}
	})
	return list, next, nil
}

// RenameConversation sets a conversation's title.
func (s *Service) RenameConversation(ctx context.Context, userID, id, title string) (Conversation, error) {
	title, err := cleanTitle(title)
	if err != nil {
		return Conversation{}, err
	}
	if title == "" {
		return Conversation{}, luna.Errorf(luna.CodeInvalidRequest, "The title must not be empty.")
	}
	res, err := s.db.ExecContext(ctx, `UPDATE conversations SET title = $3, title_generated = TRUE WHERE id = $1 AND user_id = $2`,
		id, userID, title)
	if err != nil {
		return Conversation{}, fmt.Errorf("rename conversation: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Conversation{}, ErrConversationNotFound
	}
	c, err := s.GetConversation(ctx, userID, id)
	if err != nil {
		return c, err
	}
	s.publish(ctx, userID, events.ConversationUpdated, c.ID)
	return c, nil
}

// ListMessages returns a page of the messages a conversation shows (the
// path to its leaf, see versions.go) in chronological order: the newest
// ones first time, then older pages through the cursor. Each carries its
// versions.
func (s *Service) ListMessages(ctx context.Context, userID, conversationID string, page Page) ([]Message, string, error) {
	keyset, err := cursor.NewKeyset("created_at", page.Limit, 50, page.Cursor)
	if err != nil {
		return nil, "", err
	}
	conv, err := s.GetConversation(ctx, userID, conversationID)
	if err != nil {
		return nil, "", err
	}
	if conv.LeafMessageID == "" {
		return nil, "", nil
	}
	// Along a path, children are newer than their parents: the (created_at,
	// id) order is the path's order.
	query, args := keyset.SQL(pathCTE+`SELECT `+messageColumns+` FROM messages WHERE id IN (SELECT id FROM shown)`,
		[]any{conv.LeafMessageID})
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list messages: %w", err)
	}
	defer rows.Close()
	var list []Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list messages: %w", err)
		}
		list = append(list, m)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list messages: %w", err)
	}
	list, next := cursor.Next(list, keyset.Limit, func(m Message) cursor.Cursor {
		return cursor.Cursor{At: store.NowMillis(m.CreatedAt), ID: m.ID}
	})
	for i, j := 0, len(list)-1; i < j; i, j = i+1, j-1 {
		list[i], list[j] = list[j], list[i]
	}
	if err := s.WithVersions(ctx, list); err != nil {
		return nil, "", err
	}
	return list, next, nil
}

// GetMessage returns one of the user's messages.
func (s *Service) GetMessage(ctx context.Context, userID, id string) (Message, error) {
	m, err := getMessage(ctx, s.db.DB, id)
	if err != nil {
		return Message{}, err // not found, or a database failure (a 500, never hidden as 404)
	}
	if m.UserID != userID {
		return Message{}, ErrMessageNotFound
	}
	return m, nil
}

func getMessage(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (Message, error) {
	m, err := scanMessage(q.QueryRowContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return m, ErrMessageNotFound
	}
	if err != nil {
		return m, fmt.Errorf("get message: %w", err)
	}
	return m, nil
}

// newID returns a time-ordered id (UUIDv7), so ids sort like creation times.
func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}
