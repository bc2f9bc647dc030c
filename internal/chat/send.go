package chat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"luna"
	"luna/internal/credits"
	"luna/internal/events"
	"luna/internal/models"
	"luna/internal/store"
)

// SendRequest is a user's new message.
type SendRequest struct {
	UserID          string
	ConversationID  string
	Content         string
	ClientMessageID string // optional; a retried send with the same id returns the first result
	// RateLimit, if set, counts the send against the user's request rate
	// inside its transaction, once the send is known not to be a retry:
	// retries are never counted, and neither are sends refused later in
	// the transaction (it rolls back).
	RateLimit func(ctx context.Context, tx *sql.Tx) error
}

// errRetried ends a send's transaction when it turns out to be a retry of
// a send committed meanwhile.
var errRetried = errors.New("retried send")

// Send stores the user's message and an assistant placeholder, reserves
// the most the reply can cost, and starts generating the reply. It returns
// at once with both messages.
func (s *Service) Send(ctx context.Context, req SendRequest) (userMsg, reply Message, err error) {
	content := strings.TrimSpace(req.Content)
	switch {
	case content == "":
		return Message{}, Message{}, luna.Errorf(luna.CodeInvalidRequest, "The message is empty.")
	case utf8.RuneCountInString(content) > MaxContentChars:
		return Message{}, Message{}, luna.Errorf(luna.CodeInvalidRequest, "The message is longer than %d characters.", MaxContentChars)
	case len(req.ClientMessageID) > 100:
		return Message{}, Message{}, luna.Errorf(luna.CodeInvalidRequest, "clientMessageId must be at most 100 characters.")
	}
	conv, err := s.GetConversation(ctx, req.UserID, req.ConversationID)
	if err != nil {
		return Message{}, Message{}, err
	}
	if req.ClientMessageID != "" {
		if u, r, found, err := s.findSent(ctx, s.db, conv.ID, req.ClientMessageID, content); err != nil || found {
			return u, r, err
		}
	}
	if s.engine.closing() {
		return Message{}, Message{}, ErrShuttingDown
	}
	model, err := models.Get(ctx, s.db, conv.ModelID)
	if err != nil {
		return Message{}, Message{}, err
	}
	if !model.Active {
		return Message{}, Message{}, ErrModelUnavailable
	}
	history, err := s.history(ctx, conv.ID)
	if err != nil {
		return Message{}, Message{}, err
	}
	now := s.now()
	userMsg = Message{
		ID: newID(), ConversationID: conv.ID, UserID: req.UserID, Role: "user", Content: content,
		Status: StatusComplete, ClientMessageID: req.ClientMessageID, CreatedAt: now.UTC(), UpdatedAt: now.UTC(),
	}
	// The same count decides what fits in the context and what is held.
	prompt, count := buildPrompt(model, append(history, userMsg), 0, s.promptCounter(ctx, model))
	promptTokens := count.Tokens
	if promptTokens+s.cfg.MinReplyTokens > model.ContextTokens {
		return Message{}, Message{}, luna.Errorf(luna.CodeInvalidRequest, "The message is too long for this model's context window.")
	}
	maxTokens := min(model.MaxOutputTokens, model.ContextTokens-promptTokens)

	replyAt := now.Add(1e6) // one millisecond later: the reply sorts after the question
	reply = Message{
		ID: newID(), ConversationID: conv.ID, UserID: req.UserID, Role: "assistant", Status: StatusPending,
		ParentID: userMsg.ID, CreatedAt: replyAt.UTC(), UpdatedAt: replyAt.UTC(),
	}
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		// Lock the user's row: this user's sends count their running
		// replies one after the other (SQLite serialises anyway).
		if _, err := tx.ExecContext(ctx, `UPDATE users SET updated_at = updated_at WHERE id = $1`, req.UserID); err != nil {
			return fmt.Errorf("lock user: %w", err)
		}
		if req.ClientMessageID != "" {
			// A retry of this send may have committed while this one
			// waited for the lock: answer with its messages, before any
			// limit counts this request.
			u, r, found, err := s.findSent(ctx, tx, conv.ID, req.ClientMessageID, content)
			if err != nil {
				return err
			}
			if found {
				userMsg, reply = u, r
				return errRetried
			}
		}
		if req.RateLimit != nil {
			if err := req.RateLimit(ctx, tx); err != nil {
				return err
			}
		}
		var running int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages WHERE user_id = $1 AND status IN ('pending', 'streaming')`,
			req.UserID).Scan(&running); err != nil {
			return fmt.Errorf("count running replies: %w", err)
		}
		if running >= s.cfg.MaxRunningPerUser {
			return ErrTooManyRunning
		}
		// Cap the reply to what the balance affords rather than refusing.
		balance, err := credits.BalanceTx(ctx, tx, req.UserID)
		if err != nil {
			return err
		}
		affordable := model.TokensAffordable(balance.Available) - int64(promptTokens)
		reply.MaxTokens = int(min(int64(maxTokens), max(affordable, 0)))
		if reply.MaxTokens < s.cfg.MinReplyTokens {
			return credits.ErrInsufficientCredits
		}
		res, err := tx.ExecContext(ctx, `UPDATE conversations SET generating_message_id = $3, updated_at = $4,
			last_message_preview = $5 WHERE id = $1 AND user_id = $2 AND generating_message_id IS NULL`,
			conv.ID, req.UserID, reply.ID, store.NowMillis(now), preview(content))
		if err != nil {
			return fmt.Errorf("claim conversation: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return s.whyNotClaimed(ctx, tx, conv.ID)
		}
		// A free model places no hold (and charges nothing).
		var holdID any
		if amount := model.Cost(int64(promptTokens + reply.MaxTokens)); amount > 0 {
			hold, err := s.ledger.ReserveTx(ctx, tx, credits.ReserveRequest{
				UserID: req.UserID, Amount: amount, TTL: s.cfg.ReservationTTL,
				IdempotencyKey: "reply:" + reply.ID, Reference: credits.MessageReference(conv.ID, reply.ID),
			})
			if err != nil {
				return err
			}
			reply.ReservationID, holdID = hold.ID, hold.ID
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO messages (id, conversation_id, user_id, role, content, status,
				client_message_id, created_at, updated_at) VALUES ($1, $2, $3, 'user', $4, 'complete', $5, $6, $6)`,
			userMsg.ID, conv.ID, req.UserID, content, nullString(req.ClientMessageID), store.NowMillis(now)); err != nil {
			return fmt.Errorf("insert user message: %w", err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO messages (id, conversation_id, user_id, role, status, parent_id,
				reservation_id, max_tokens, lease_owner, lease_expires_at, created_at, updated_at)
			VALUES ($1, $2, $3, 'assistant', 'pending', $4, $5, $6, $7, $8, $9, $9)`,
			reply.ID, conv.ID, req.UserID, userMsg.ID, holdID, reply.MaxTokens, s.engine.instanceID,
			store.NowMillis(now.Add(s.cfg.LeaseTTL)), store.NowMillis(replyAt))
		if err != nil {
			return fmt.Errorf("insert reply: %w", err)
		}
		return nil
	})
	if errors.Is(err, errRetried) {
		return userMsg, reply, nil
	}
	if store.IsUniqueViolation(err) && req.ClientMessageID != "" {
		// A concurrent retry of the same send won the race.
		if u, r, found, ferr := s.findSent(ctx, s.db, conv.ID, req.ClientMessageID, content); ferr != nil || found {
			return u, r, ferr
		}
	}
	if err != nil {
		return Message{}, Message{}, err
	}
	s.engine.start(reply, model, append(history, userMsg), prompt, count)
	conv.GeneratingMessageID, conv.UpdatedAt, conv.LastMessagePreview = reply.ID, now.UTC(), preview(content)
	s.publish(ctx, req.UserID, events.MessageCreated, userMsg.ID)
	s.publish(ctx, req.UserID, events.MessageCreated, reply.ID)
	s.publish(ctx, req.UserID, events.ConversationUpdated, conv.ID)
	s.publishCredits(ctx, req.UserID)
	return userMsg, reply, nil
}

// findSent returns the messages of an earlier send with the same client id,
// or ErrClientMessageIDReuse when that send had other content.
func (s *Service) findSent(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, conversationID, clientMessageID, content string) (userMsg, reply Message, found bool, err error) {
	userMsg, err = scanMessage(q.QueryRowContext(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE conversation_id = $1 AND client_message_id = $2`, conversationID, clientMessageID))
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, Message{}, false, nil
	}
	if err != nil {
		return Message{}, Message{}, false, fmt.Errorf("find sent message: %w", err)
	}
	if userMsg.Content != content {
		return Message{}, Message{}, false, ErrClientMessageIDReuse
	}
	reply, err = scanMessage(q.QueryRowContext(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE parent_id = $1 AND role = 'assistant'`, userMsg.ID))
	if err != nil {
		return Message{}, Message{}, false, fmt.Errorf("find reply of sent message: %w", err)
	}
	return userMsg, reply, true, nil
}

// historyLimit bounds how many earlier messages are considered for the
// prompt; the context budget usually cuts sooner.
const historyLimit = 200

// history returns the conversation's earlier messages that belong in a
// prompt, oldest first: user messages and assistant replies with text.
func (s *Service) history(ctx context.Context, conversationID string) ([]Message, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE conversation_id = $1 AND (role = 'user' OR (role = 'assistant' AND content <> '' AND status IN ('complete', 'cancelled', 'interrupted')))
		ORDER BY created_at DESC, id DESC LIMIT $2`, conversationID, historyLimit)
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	defer rows.Close()
	var list []Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("load history: %w", err)
		}
		list = append(list, m)
	}
	for i, j := 0, len(list)-1; i < j; i, j = i+1, j-1 {
		list[i], list[j] = list[j], list[i]
	}
	return list, rows.Err()
}
