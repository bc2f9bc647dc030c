package chat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"luna"
	"luna/internal/events"
	"luna/internal/store"
)

// ErrStillStopping answers a delete whose running reply did not stop in
// time (its instance is unreachable); the reply is stopped or interrupted
// soon, and a retry then succeeds.
var ErrStillStopping = &luna.Error{Code: luna.CodeGenerationInProgress,
	Message: "The reply in this conversation is still being stopped; try again in a moment."}

// ConversationDeletedJSON is the data of a conversation.deleted event.
type ConversationDeletedJSON struct {
	ID string `json:"id"`
}

// DeleteConversation deletes one of the user's conversations and its
// messages. A reply still generating is stopped first, exactly as a user's
// stop (charged for what was generated), so its hold is settled before its
// message goes. The ledger keeps its entries: their references still name
// the message and the conversation. Rows of other packages that link to
// the conversation are detached by its ConversationDeleteHooks in the same
// transaction (images made from it stay in the gallery with no
// conversation).
//
// Streams of the conversation's reply end: the stopped reply's listeners
// get its final event, on every instance; later listeners find nothing.
func (s *Service) DeleteConversation(ctx context.Context, userID, id string) error {
	conv, err := s.GetConversation(ctx, userID, id)
	if err != nil {
		return err
	}
	if conv.GeneratingMessageID != "" {
		if _, err := s.Cancel(ctx, userID, conv.GeneratingMessageID); err != nil && !errors.Is(err, ErrMessageNotFound) {
			return fmt.Errorf("stop the running reply: %w", err)
		}
	}
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		// Lock the conversation first, so that a send or an image racing
		// with the delete waits and then finds it gone. PostgreSQL needs
		// FOR UPDATE: it is the lock that also holds off the foreign-key
		// checks of new image jobs (SQLite has one writer anyway).
		lock := `SELECT generating_message_id FROM conversations WHERE id = $1 AND user_id = $2`
		if s.db.Dialect == store.Postgres {
			lock += ` FOR UPDATE`
		}
		var generating sql.NullString
		err := tx.QueryRowContext(ctx, lock, id, userID).Scan(&generating)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrConversationNotFound // deleted meanwhile
		}
		if err != nil {
			return fmt.Errorf("lock conversation: %w", err)
		}
		if generating.Valid {
			// Not stopped in time, or a new reply started meanwhile: its
			// hold must be settled by its generation, not left behind.
			return ErrStillStopping
		}
		for _, hook := range s.deleteHooks {
			if err := hook(ctx, tx, id); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE conversation_id = $1`, id); err != nil {
			return fmt.Errorf("delete messages: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM conversations WHERE id = $1`, id); err != nil {
			return fmt.Errorf("delete conversation: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if conv.GeneratingMessageID != "" {
		// Wake the stopped reply's listeners on every instance (an id
		// only): any still open finds the message gone and ends.
		if err := s.bus.PublishMessage(context.WithoutCancel(ctx), conv.GeneratingMessageID); err != nil {
			s.logger.Warn("publish message signal", "err", err)
		}
	}
	s.publish(ctx, userID, events.ConversationDeleted, id)
	return nil
}
