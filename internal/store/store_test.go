package store_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"

	"luna/internal/store"
	"luna/internal/store/storetest"
)

func TestMigrateIsIdempotent(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		applied, err := db.Migrate(ctx)
		if err != nil {
			t.Fatalf("second migrate: %v", err)
		}
		if applied != 0 {
			t.Fatalf("second migrate applied %d migrations, want 0", applied)
		}
		version, err := db.SchemaVersion(ctx)
		if err != nil || version < 1 {
			t.Fatalf("schema version = %d, %v; want >= 1", version, err)
		}
	})
}

// Several instances starting at once against one PostgreSQL must not trip
// over each other's migrations.
func TestConcurrentMigrationsPostgres(t *testing.T) {
	url := storetest.EmptyURL(t, store.Postgres)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := store.Open(ctx, url, t.TempDir())
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			_, err = db.Migrate(ctx)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
}

func TestCreditEntriesAreAppendOnly(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustExec(t, db, `INSERT INTO users (id, provider, created_at, updated_at, credits_balance) VALUES ('u1', 'local', 0, 0, 10)`)
		mustExec(t, db, `INSERT INTO credit_entries (user_id, kind, balance_delta, reserved_delta, idempotency_key, fingerprint, created_at)
			VALUES ('u1', 'grant', 10, 0, 'k1', 'f', 0)`)
		if _, err := db.ExecContext(ctx, `UPDATE credit_entries SET balance_delta = 1000`); err == nil {
			t.Fatal("UPDATE of credit_entries succeeded; want refused")
		}
		if _, err := db.ExecContext(ctx, `DELETE FROM credit_entries`); err == nil {
			t.Fatal("DELETE of credit_entries succeeded; want refused")
		}
	})
}

func TestConstraintErrorsAreRecognised(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustExec(t, db, `INSERT INTO users (id, provider, created_at, updated_at) VALUES ('u1', 'local', 0, 0)`)
		_, err := db.ExecContext(ctx, `INSERT INTO users (id, provider, created_at, updated_at) VALUES ('u1', 'local', 0, 0)`)
		if !store.IsUniqueViolation(err) {
			t.Fatalf("duplicate id: got %v, want a unique violation", err)
		}
		_, err = db.ExecContext(ctx, `UPDATE users SET credits_reserved = 5 WHERE id = 'u1'`)
		if !store.IsCheckViolation(err) {
			t.Fatalf("reserved > balance: got %v, want a check violation", err)
		}
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE users SET name = 'x' WHERE id = $1`, "u1")
			return err
		})
		if err != nil {
			t.Fatalf("InTx: %v", err)
		}
	})
}

func mustExec(t *testing.T, db *store.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// Statements counts what is sent to PostgreSQL, a transaction's BEGIN and
// COMMIT included; SQLite says it does not count.
func TestStatementsCounted(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		before, counted := db.Statements()
		if counted != (db.Dialect == store.Postgres) {
			t.Fatalf("counted = %v on %s", counted, db.Dialect)
		}
		mustExec(t, db, `SELECT 1`)
		if err := db.InTx(t.Context(), func(tx *sql.Tx) error {
			_, err := tx.ExecContext(t.Context(), `SELECT 2`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		after, _ := db.Statements()
		if want := int64(4); counted && after-before != want {
			t.Errorf("statements = %d, want %d (SELECT, BEGIN, SELECT, COMMIT)", after-before, want)
		}
	})
}
