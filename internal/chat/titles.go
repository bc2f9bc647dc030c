package chat

import (
	"context"
	"fmt"

	"luna/internal/store"
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
	var args store.Args
	user := args.Add(userID)
	unique := make([]string, 0, len(ids))
	seen := map[string]bool{}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			unique = append(unique, id)
		}
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, title FROM conversations WHERE user_id = `+user+` AND id IN (`+
		args.AddList(unique)+`)`, args.Values()...)
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
