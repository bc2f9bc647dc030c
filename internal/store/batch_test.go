package store_test

import (
	"database/sql"
	"errors"
	"testing"
	"time"

	"luna/internal/store"
	"luna/internal/store/storetest"
)

// A batch is all or nothing, counts its statements, and a statement after
// one that waited for a row lock sees what the lock's holder committed.
func TestRunBatch(t *testing.T) {
	ctx := t.Context()
	if err := storetest.Open(t, store.SQLite).RunBatch(ctx); !errors.Is(err, store.ErrNoBatch) {
		t.Fatalf("SQLite: %v, want ErrNoBatch", err)
	}
	db := storetest.Open(t, store.Postgres)
	mustExec(t, db, `CREATE TABLE counters (id TEXT PRIMARY KEY, n BIGINT NOT NULL)`)
	mustExec(t, db, `CREATE TABLE events (counter TEXT NOT NULL)`)
	mustExec(t, db, `INSERT INTO counters VALUES ('a', 0)`)
	count := func() (n int) {
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM events`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// All or nothing: the second statement fails, the first is undone.
	err := db.RunBatch(ctx,
		store.BatchStatement{SQL: `INSERT INTO events VALUES ($1)`, Args: []any{"a"}},
		store.BatchStatement{SQL: `SELECT CAST($1::text AS integer)`, Args: []any{"not a number"}})
	if err == nil || count() != 0 {
		t.Fatalf("failed batch: err %v, %d events kept, want an error and none", err, count())
	}
	before, _ := db.Statements()
	var n int64
	if err := db.RunBatch(ctx,
		store.BatchStatement{SQL: `INSERT INTO events VALUES ($1)`, Args: []any{"a"}},
		store.BatchStatement{SQL: `UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n`, Args: []any{"a"}, Scan: []any{&n}}); err != nil {
		t.Fatal(err)
	}
	if after, _ := db.Statements(); n != 1 || count() != 1 || after-before != 2 {
		t.Fatalf("n = %d, %d events, %d statements counted; want 1, 1, 2", n, count(), after-before)
	}
	var none int
	if err := db.RunBatch(ctx, store.BatchStatement{SQL: `SELECT 1 WHERE FALSE`, Scan: []any{&none}}); !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("no row: %v, want sql.ErrNoRows", err)
	}

	// A transaction holds the counter's row, adds an event, and commits a
	// moment later; the batch's lock waits for it, and its count, a
	// statement after the lock, sees that event.
	locked := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `SELECT n FROM counters WHERE id = 'a' FOR UPDATE`); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO events VALUES ('a')`); err != nil {
				return err
			}
			close(locked)
			time.Sleep(200 * time.Millisecond)
			return nil
		})
	}()
	<-locked
	var seen int
	if err := db.RunBatch(ctx,
		store.BatchStatement{SQL: `SELECT n FROM counters WHERE id = 'a' FOR UPDATE`},
		store.BatchStatement{SQL: `SELECT COUNT(*) FROM events`, Scan: []any{&seen}}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if seen != 2 {
		t.Fatalf("the statement after the lock counted %d events, want 2 (the lock holder's included)", seen)
	}
}
