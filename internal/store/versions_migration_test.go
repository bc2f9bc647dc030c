package store_test

import (
	"context"
	"database/sql"
	"testing"

	"luna/internal/store"
	"luna/internal/store/storetest"
)

// Migration 11 turns existing conversations into one line of the message
// tree: each question follows the reply before it, and the newest message
// is the conversation's shown leaf.
func TestMessageVersionsMigrationLinksExistingMessages(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(string(dialect), func(t *testing.T) {
			ctx := context.Background()
			db := openMigratedTo(t, dialect, 10)
			for _, q := range []string{
				`INSERT INTO users (id, provider, email, email_normalized, created_at, updated_at) VALUES ('u', 'local', 'a@b', 'a@b', 0, 0)`,
				`INSERT INTO models (id, display_name, base_url, served_model_name, context_tokens, max_output_tokens, millicredits_per_1k, created_at, updated_at)
					VALUES ('m', 'M', 'http://x', 'm', 100, 10, 0, 0, 0)`,
				`INSERT INTO conversations (id, user_id, model_id, created_at, updated_at) VALUES ('c1', 'u', 'm', 0, 0), ('c2', 'u', 'm', 0, 0)`,
				// Two exchanges (the second reply failed), and a question
				// whose reply shares its millisecond.
				`INSERT INTO messages (id, conversation_id, user_id, role, status, parent_id, created_at, updated_at) VALUES
					('q1', 'c1', 'u', 'user', 'complete', NULL, 1, 1),
					('r1', 'c1', 'u', 'assistant', 'complete', 'q1', 2, 2),
					('q2', 'c1', 'u', 'user', 'complete', NULL, 3, 3),
					('r2', 'c1', 'u', 'assistant', 'error', 'q2', 4, 4),
					('q3', 'c1', 'u', 'user', 'complete', NULL, 5, 5),
					('r3', 'c1', 'u', 'assistant', 'complete', 'q3', 5, 5)`,
			} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if _, err := db.Migrate(ctx); err != nil {
				t.Fatalf("migrate up: %v", err)
			}
			want := map[string]string{"q1": "", "r1": "q1", "q2": "r1", "r2": "q2", "q3": "r2", "r3": "q3"}
			for id, parent := range want {
				var got sql.NullString
				if err := db.QueryRowContext(ctx, `SELECT parent_id FROM messages WHERE id = $1`, id).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got.String != parent {
					t.Errorf("%s's parent = %q, want %q", id, got.String, parent)
				}
			}
			for conv, leaf := range map[string]string{"c1": "r3", "c2": ""} {
				var got sql.NullString
				if err := db.QueryRowContext(ctx, `SELECT leaf_message_id FROM conversations WHERE id = $1`, conv).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got.String != leaf {
					t.Errorf("%s's leaf = %q, want %q", conv, got.String, leaf)
				}
			}
		})
	}
}

// openMigratedTo opens an empty database of dialect migrated up to
// version, for a test of the migrations after it.
func openMigratedTo(t *testing.T, dialect store.Dialect, version int64) *store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, storetest.EmptyURL(t, dialect), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.MigrateUpTo(ctx, version); err != nil {
		t.Fatalf("migrate to %d: %v", version, err)
	}
	return db
}
