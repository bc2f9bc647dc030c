// Package chat is Luna's conversations: storing them, sending a message
// (which reserves credits and starts a generation owned by the server, not
// by the HTTP request), the generation engine that streams a reply from the
// model and persists it in batches, and following a reply's text live from
// any instance.
package chat

import (
	"database/sql"
	"strings"
	"time"
	"unicode/utf8"

	"luna"
	"luna/internal/store"
)

// Message statuses.
const (
	StatusComplete    = "complete"    // finished normally (user messages are always complete)
	StatusPending     = "pending"     // reply accepted, no text yet
	StatusStreaming   = "streaming"   // reply text arriving
	StatusError       = "error"       // upstream failed; credits released
	StatusInterrupted = "interrupted" // the server stopped or died; partial text kept, credits released
	StatusCancelled   = "cancelled"   // the user stopped it; charged for what was generated
)

// Running reports whether a status is not final.
func Running(status string) bool { return status == StatusPending || status == StatusStreaming }

// Errors returned to API clients.
var (
	ErrConversationNotFound = &luna.Error{Code: luna.CodeNotFound, Message: "Conversation not found."}
	ErrMessageNotFound      = &luna.Error{Code: luna.CodeNotFound, Message: "Message not found."}
	ErrGenerationInProgress = &luna.Error{Code: luna.CodeGenerationInProgress, Message: "A reply is still being generated in this conversation; wait for it or stop it."}
	ErrModelUnavailable     = &luna.Error{Code: luna.CodeModelUnavailable, Message: "This conversation's model is no longer available."}
	ErrShuttingDown         = &luna.Error{Code: luna.CodeUnavailable, Message: "The server is restarting; try again in a moment."}
	ErrConversationChanged  = &luna.Error{Code: luna.CodeConflict, Message: "The conversation changed meanwhile (another version is shown); look again and retry."}
	ErrTooManyRunning       = &luna.Error{Code: luna.CodeRateLimited, Message: "Too many replies are being generated at once; wait for one to finish."}
	ErrClientMessageIDReuse = &luna.Error{Code: luna.CodeIdempotencyConflict, Message: "This clientMessageId was already used for a different message in this conversation."}
)

// Limits on what users send.
const (
	MaxContentChars = 32_000
	MaxTitleChars   = 200
)

// Conversation is a chat with one model.
type Conversation struct {
	ID                  string
	UserID              string
	ModelID             string
	Title               string
	LastMessagePreview  string
	GeneratingMessageID string
	LeafMessageID       string // the last message of the path shown (versions.go)
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

// Message is one turn of a conversation.
type Message struct {
	ID               string
	ConversationID   string
	UserID           string
	Role             string
	Content          string
	Status           string
	PromptTokens     int
	CompletionTokens int
	CreditsCharged   int64
	CreditsShortfall int64 // what the reply cost beyond what the user's credits could pay
	FinishReason     string
	ErrorCode        string
	ErrorMessage     string
	ClientMessageID  string
	ParentID         string
	ReservationID    string
	MaxTokens        int
	CreatedAt        time.Time
	UpdatedAt        time.Time
	// Versions are the ids of this message's versions (itself and its
	// siblings), oldest first; filled in by the calls that show messages
	// to clients, nil elsewhere.
	Versions []string
}

const conversationColumns = `id, user_id, model_id, title, last_message_preview, COALESCE(generating_message_id, ''), COALESCE(leaf_message_id, ''), created_at, updated_at`

func scanConversation(row interface{ Scan(...any) error }) (Conversation, error) {
	var c Conversation
	var created, updated int64
	err := row.Scan(conversationDest(&c, &created, &updated)...)
	c.CreatedAt, c.UpdatedAt = store.Time(created), store.Time(updated)
	return c, err
}

// conversationDest lists where to scan conversationColumns, as
// messageDest does for messages.
func conversationDest(c *Conversation, created, updated *int64) []any {
	return []any{&c.ID, &c.UserID, &c.ModelID, &c.Title, &c.LastMessagePreview, &c.GeneratingMessageID, &c.LeafMessageID, created, updated}
}

const messageColumns = `id, conversation_id, user_id, role, content, status, prompt_tokens, completion_tokens, credits_charged,
	credits_shortfall, finish_reason, error_code, error_message, COALESCE(client_message_id, ''), COALESCE(parent_id, ''),
	COALESCE(reservation_id, ''), max_tokens, created_at, updated_at`

func scanMessage(row interface{ Scan(...any) error }) (Message, error) {
	var m Message
	var created, updated int64
	err := row.Scan(messageDest(&m, &created, &updated)...)
	m.CreatedAt, m.UpdatedAt = store.Time(created), store.Time(updated)
	return m, err
}

// messageDest lists where to scan messageColumns: into m, and its instants
// into created and updated (Unix milliseconds, for the caller to convert).
func messageDest(m *Message, created, updated *int64) []any {
	return []any{&m.ID, &m.ConversationID, &m.UserID, &m.Role, &m.Content, &m.Status, &m.PromptTokens,
		&m.CompletionTokens, &m.CreditsCharged, &m.CreditsShortfall, &m.FinishReason, &m.ErrorCode, &m.ErrorMessage,
		&m.ClientMessageID, &m.ParentID, &m.ReservationID, &m.MaxTokens, created, updated}
}

// nullConversation scans conversationColumns from an outer join, where
// they may all be NULL.
type nullConversation struct {
	id, userID, modelID, title, preview, generating, leaf sql.NullString
	created, updated                                      sql.NullInt64
}

func (c *nullConversation) dest() []any {
	return []any{&c.id, &c.userID, &c.modelID, &c.title, &c.preview, &c.generating, &c.leaf, &c.created, &c.updated}
}

// conversation returns the conversation scanned, found false when the
// join had none.
func (c *nullConversation) conversation() (Conversation, bool) {
	if !c.id.Valid {
		return Conversation{}, false
	}
	return Conversation{
		ID: c.id.String, UserID: c.userID.String, ModelID: c.modelID.String, Title: c.title.String,
		LastMessagePreview: c.preview.String, GeneratingMessageID: c.generating.String, LeafMessageID: c.leaf.String,
		CreatedAt: store.Time(c.created.Int64), UpdatedAt: store.Time(c.updated.Int64),
	}, true
}

// Page asks for one page of a list.
type Page struct {
	Limit  int    // 1..100; 0 means the default
	Cursor string // from a previous page's NextCursor
}

// previewRunes is how long a preview is at most.
const previewRunes = 120

// preview shortens a message for conversation lists, in plain words. A
// long message's first lines are enough: Markdown is stripped line by line,
// so when they give more words than a preview shows, the rest changes
// nothing (but a span of code ticks or emphasis across the cut).
func preview(content string) string {
	if len(content) > 4*previewRunes*utf8.UTFMax {
		cut := strings.LastIndexByte(content[:4*previewRunes*utf8.UTFMax], '\n')
		if head := previewOf(content[:max(cut, 0)]); utf8.RuneCountInString(head) > previewRunes {
			return head
		}
	}
	return previewOf(content)
}

func previewOf(content string) string {
	content = strings.Join(strings.Fields(plainPreview(content)), " ")
	if r := []rune(content); len(r) > previewRunes {
		return string(r[:previewRunes-1]) + "…"
	}
	return content
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
