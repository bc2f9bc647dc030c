package store

import (
	"context"
	"path/filepath"
	"testing"
)

// Migration 4 rebuilds SQLite's credit_entries (to allow the charge kind):
// the entries, their ids and the append-only guard must survive it.
func TestTrueChargesMigrationKeepsTheLedger(t *testing.T) {
	ctx := context.Background()
	db, err := openSQLite(ctx, filepath.Join(t.TempDir(), "luna.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	provider, err := db.migrationProvider()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider.UpTo(ctx, 3); err != nil {
		t.Fatalf("migrate to 3: %v", err)
	}
	for _, q := range []string{
		`INSERT INTO users (id, provider, email, email_normalized, credits_balance, created_at, updated_at) VALUES ('u1', 'local', 'a@b', 'a@b', 30, 0, 0)`,
		`INSERT INTO credit_entries (user_id, kind, balance_delta, reserved_delta, idempotency_key, fingerprint, created_at)
			VALUES ('u1', 'grant', 10, 0, 'k1', 'f', 0), ('u1', 'grant', 20, 0, 'k2', 'f', 0)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := provider.Up(ctx); err != nil {
		t.Fatalf("migrate up: %v", err)
	}
	var n, sum, maxID int64
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*), SUM(balance_delta), MAX(id) FROM credit_entries`).Scan(&n, &sum, &maxID); err != nil {
		t.Fatal(err)
	}
	if n != 2 || sum != 30 || maxID != 2 {
		t.Fatalf("entries after the migration: %d, sum %d, max id %d; want 2, 30, 2", n, sum, maxID)
	}
	var id int64
	if err := db.QueryRowContext(ctx, `INSERT INTO credit_entries (user_id, kind, balance_delta, reserved_delta, idempotency_key, fingerprint, shortfall, created_at)
		VALUES ('u1', 'charge', -5, 0, 'k3', 'f', 2, 0) RETURNING id`).Scan(&id); err != nil {
		t.Fatalf("insert a charge: %v", err)
	}
	if id != 3 {
		t.Fatalf("new entry id %d, want 3", id)
	}
	if _, err := db.ExecContext(ctx, `UPDATE credit_entries SET balance_delta = 0 WHERE id = 1`); err == nil {
		t.Fatal("credit_entries accepts updates after the migration")
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM credit_entries WHERE id = 1`); err == nil {
		t.Fatal("credit_entries accepts deletes after the migration")
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO credit_entries (user_id, kind, balance_delta, reserved_delta, idempotency_key, fingerprint, created_at)
		VALUES ('u1', 'gift', 1, 0, 'k4', 'f', 0)`); err == nil {
		t.Fatal("credit_entries accepts an unknown kind after the migration")
	}
}
