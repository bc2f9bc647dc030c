package chat

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"luna/internal/events"
	"luna/internal/store"
)

// A conversation's messages form a tree through parent_id: a reply's parent
// is the question it answers, a question's parent is the reply it follows
// (none for the first). Versions of a message — regenerated replies, edited
// questions — are siblings. The conversation records the leaf it shows
// (leaf_message_id); what clients list and what is sent to the model is the
// path from that leaf up to the root.

// The walks up and down the tree stop at depth 100,000: a conversation never
// gets near it, and a cycle (which no code writes) could not loop forever.

// pathCTE selects, as "shown", the ids of the message $1 and its ancestors.
const pathCTE = `WITH RECURSIVE shown (id, parent_id, depth) AS (
		SELECT id, parent_id, 0 FROM messages WHERE id = $1
		UNION ALL
		SELECT m.id, m.parent_id, shown.depth + 1 FROM messages m JOIN shown ON m.id = shown.parent_id
		WHERE shown.depth < 100000)
	`

type queryer interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

// pathTo returns the message id and its ancestors, oldest first: at most
// the newest limit of them, and only those that belong in a prompt when
// promptOnly is set (questions, and replies with text that did not fail).
func pathTo(ctx context.Context, q queryer, id string, limit int, promptOnly bool) ([]Message, error) {
	if id == "" {
		return nil, nil
	}
	query := pathCTE + `SELECT ` + messageColumns + ` FROM messages WHERE id IN (SELECT id FROM shown)`
	if promptOnly {
		query += ` AND (role = 'user' OR (role = 'assistant' AND content <> '' AND status IN ('complete', 'cancelled', 'interrupted')))`
	}
	query += ` ORDER BY created_at DESC, id DESC LIMIT $2`
	rows, err := q.QueryContext(ctx, query, id, limit)
	if err != nil {
		return nil, fmt.Errorf("load conversation path: %w", err)
	}
	defer rows.Close()
	var list []Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("load conversation path: %w", err)
		}
		list = append(list, m)
	}
	for i, j := 0, len(list)-1; i < j; i, j = i+1, j-1 {
		list[i], list[j] = list[j], list[i]
	}
	return list, rows.Err()
}

// WithVersions fills in the Versions of messages of one conversation: the
// ids of each one's siblings (itself included), oldest first.
func (s *Service) WithVersions(ctx context.Context, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	var args store.Args
	conversation := args.Add(msgs[0].ConversationID)
	var parents []string
	root := false
	seen := map[string]bool{}
	for _, m := range msgs {
		switch {
		case m.ParentID == "":
			root = true
		case !seen[m.ParentID]:
			seen[m.ParentID] = true
			parents = append(parents, m.ParentID)
		}
	}
	var cond []string
	if len(parents) > 0 {
		cond = append(cond, `parent_id IN (`+args.AddList(parents)+`)`)
	}
	if root {
		cond = append(cond, `parent_id IS NULL`)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, COALESCE(parent_id, '') FROM messages
		WHERE conversation_id = `+conversation+` AND (`+strings.Join(cond, " OR ")+`) ORDER BY created_at, id`, args.Values()...)
	if err != nil {
		return fmt.Errorf("load message versions: %w", err)
	}
	defer rows.Close()
	siblings := map[string][]string{}
	for rows.Next() {
		var id, parent string
		if err := rows.Scan(&id, &parent); err != nil {
			return fmt.Errorf("load message versions: %w", err)
		}
		siblings[parent] = append(siblings[parent], id)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load message versions: %w", err)
	}
	for i := range msgs {
		msgs[i].Versions = siblings[msgs[i].ParentID]
		if len(msgs[i].Versions) == 0 {
			msgs[i].Versions = []string{msgs[i].ID}
		}
	}
	return nil
}

// WithVersion returns m with its Versions filled in.
func (s *Service) WithVersion(ctx context.Context, m Message) (Message, error) {
	msgs := []Message{m}
	err := s.WithVersions(ctx, msgs)
	return msgs[0], err
}

// SelectVersion shows the version messageID of a message: the
// conversation's path then goes through it, down to its newest descendant
// (where the user last worked on that version). It is refused while a reply
// is generating in the conversation.
func (s *Service) SelectVersion(ctx context.Context, userID, messageID string) (Conversation, error) {
	m, err := s.GetMessage(ctx, userID, messageID)
	if err != nil {
		return Conversation{}, err
	}
	var leaf string
	err = s.db.QueryRowContext(ctx, `WITH RECURSIVE below (id, created_at, depth) AS (
			SELECT id, created_at, 0 FROM messages WHERE id = $1
			UNION ALL
			SELECT m.id, m.created_at, below.depth + 1 FROM messages m JOIN below ON m.parent_id = below.id
			WHERE below.depth < 100000)
		SELECT id FROM below ORDER BY created_at DESC, id DESC LIMIT 1`, m.ID).Scan(&leaf)
	if err != nil {
		return Conversation{}, fmt.Errorf("find the newest message under %s: %w", m.ID, err)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE conversations SET leaf_message_id = $3
		WHERE id = $1 AND user_id = $2 AND generating_message_id IS NULL`, m.ConversationID, userID, leaf)
	if err != nil {
		return Conversation{}, fmt.Errorf("select version: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.GetConversation(ctx, userID, m.ConversationID); err != nil {
			return Conversation{}, err
		}
		return Conversation{}, ErrGenerationInProgress
	}
	s.publish(ctx, userID, events.ConversationUpdated, m.ConversationID)
	return s.GetConversation(ctx, userID, m.ConversationID)
}
