package images

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"

	"luna/internal/store"
	"luna/internal/store/storetest"
)

// The user's processing slot admits one job at a time, however many
// workers (each in its own transaction, as on several instances) take it
// at once; the holder may take it again (a resumed job), and only the
// holder frees it.
func TestSlotAdmitsOneJobPerUser(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, `INSERT INTO users (id, provider, email, email_normalized, created_at, updated_at)
			VALUES ('u1', 'local', 'a@b', 'a@b', 0, 0), ('u2', 'local', 'c@d', 'c@d', 0, 0)`); err != nil {
			t.Fatal(err)
		}
		take := func(j Job) (took bool, err error) {
			err = db.InTx(ctx, func(tx *sql.Tx) error {
				took, err = takeSlotTx(ctx, tx, j)
				return err
			})
			return took, err
		}
		release := func(j Job) {
			if err := db.InTx(ctx, func(tx *sql.Tx) error { return releaseSlot(ctx, tx, j) }); err != nil {
				t.Fatal(err)
			}
		}
		for round := range 3 {
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				holders []Job
			)
			start := make(chan struct{})
			for i := range 8 {
				j := Job{ID: fmt.Sprintf("job-%d-%d", round, i), UserID: "u1"}
				wg.Go(func() {
					<-start
					took, err := take(j)
					if err != nil {
						t.Error(err)
					}
					if took {
						mu.Lock()
						holders = append(holders, j)
						mu.Unlock()
					}
				})
			}
			close(start)
			wg.Wait()
			if len(holders) != 1 {
				t.Fatalf("round %d: %d jobs took the slot, want 1", round, len(holders))
			}
			holder := holders[0]
			if took, err := take(holder); err != nil || !took {
				t.Fatalf("holder takes its slot again: %v, %v", took, err)
			}
			if took, err := take(Job{ID: "other-user-job", UserID: "u2"}); err != nil || !took {
				t.Fatalf("another user's job: %v, %v", took, err)
			}
			release(Job{ID: "not-the-holder", UserID: "u1"})
			if took, err := take(Job{ID: "late", UserID: "u1"}); err != nil || took {
				t.Fatalf("slot freed by a job that did not hold it: %v, %v", took, err)
			}
			release(holder)
			release(Job{ID: "other-user-job", UserID: "u2"})
		}
	})
}
