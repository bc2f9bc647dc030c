package store_test

import (
	"context"
	"testing"

	"luna/internal/store/storetest"
)

// Migration 12 moves each user's processing image job from users to
// images' own image_slots table, and leaves the old column for instances
// of the previous release still running during an upgrade.
func TestImageSlotsMigrationKeepsHeldSlots(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(string(dialect), func(t *testing.T) {
			ctx := context.Background()
			db := openMigratedTo(t, dialect, 11)
			if _, err := db.ExecContext(ctx, `INSERT INTO users (id, provider, email, email_normalized, processing_image_job_id, created_at, updated_at)
				VALUES ('u1', 'local', 'a@b', 'a@b', 'job-1', 0, 0), ('u2', 'local', 'c@d', 'c@d', NULL, 0, 0)`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Migrate(ctx); err != nil {
				t.Fatalf("migrate up: %v", err)
			}
			rows, err := db.QueryContext(ctx, `SELECT user_id, job_id FROM image_slots`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			got := map[string]string{}
			for rows.Next() {
				var user, job string
				if err := rows.Scan(&user, &job); err != nil {
					t.Fatal(err)
				}
				got[user] = job
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got["u1"] != "job-1" {
				t.Fatalf("image_slots = %v, want u1 holding job-1", got)
			}
			// The old column stays for the previous release's instances
			// during a rolling upgrade: their slot updates still work.
			if _, err := db.ExecContext(ctx, `UPDATE users SET processing_image_job_id = NULL
				WHERE id = $1 AND processing_image_job_id = $2`, "u1", "job-1"); err != nil {
				t.Fatalf("the previous release's slot update: %v", err)
			}
		})
	}
}
