package chat

import (
	"context"
	"fmt"
	"strings"
)

// ConversationTitles returns the titles of those of ids that are the
// user's conversations; deleted (or other users') conversations are left
// out. It serves the usage history, which names the conversation of each
// reply.
func (s *Service) ConversationTitles(ctx context.Context, userID string, ids []string) (map[string]string, error) {
	titles := map[string]string{}
	if len(ids) == 0 {
		return titles, nil
	}
	args := []any{userID}
	marks := make([]string, 0, len(ids))
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		args = append(args, id)
		marks = append(marks, fmt.Sprintf("$%d", len(args)))
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, title FROM conversations WHERE user_id = $1 AND id IN (`+
		strings.Join(marks, ", ")+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("read conversation titles: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, title string
		if err := rows.Scan(&id, &title); err != nil {
			return nil, fmt.Errorf("read conversation titles: %w", err)
		}
		titles[id] = title
	}
	return titles, rows.Err()
}
