package main_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"luna/internal/credits"
	"luna/internal/store"
)

// `luna backup` copies the SQLite database while a server runs and
// another process keeps granting credits; the copy, restored as a data
// dir, migrates, passes the audit and holds every grant committed before
// the backup started, and no half-made one.
func TestBackupDuringWritesAndRestore(t *testing.T) {
	bin := buildLuna(t)
	dataDir := t.TempDir()
	env := []string{"LUNA_DATA_DIR=" + dataDir}
	if out, code := runLuna(t, bin, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %d %s", code, out)
	}
	startLuna(t, bin, "--data-dir", dataDir)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := store.Open(ctx, "", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `INSERT INTO users (id, provider, email, email_normalized, created_at, updated_at)
		VALUES ('u1', 'local', 'ada@example.com', 'ada@example.com', 0, 0)`); err != nil {
		t.Fatal(err)
	}
	// The writer grants 1 credit at a time; committed is the number of
	// the last grant whose transaction has committed.
	ledger := credits.NewLedger(db)
	var committed atomic.Int64
	writerDone := make(chan error, 1)
	go func() {
		for i := int64(1); ctx.Err() == nil; i++ {
			_, err := ledger.Grant(ctx, credits.GrantRequest{UserID: "u1", Amount: 1,
				IdempotencyKey: fmt.Sprintf("w%d", i), Reference: "backup-test", Note: fmt.Sprint(i)})
			if err != nil {
				if ctx.Err() != nil {
					err = nil // stopped by the test
				}
				writerDone <- err
				return
			}
			committed.Store(i)
		}
		writerDone <- nil
	}()
	waitFor := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for committed.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("the writer committed %d grants in 30s, want %d", committed.Load(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(100)

	backupFile := filepath.Join(t.TempDir(), "luna-backup.db")
	before := committed.Load()
	out, code := runLuna(t, bin, env, "backup", "--to", backupFile)
	after := committed.Load()
	// The running server keeps images in the data dir: the output says to copy them too.
	if code != 0 || !strings.Contains(out, "backed up") || !strings.Contains(out, filepath.Join(dataDir, "images")) {
		t.Fatalf("backup: exit %d\n%s", code, out)
	}
	waitFor(after + 20) // the writes went on during and after the backup
	cancel()
	if err := <-writerDone; err != nil {
		t.Fatalf("writer: %v", err)
	}

	// Restore: the copy becomes the database of a fresh data dir.
	restored := t.TempDir()
	data, err := os.ReadFile(backupFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(restored, "luna.db"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	renv := []string{"LUNA_DATA_DIR=" + restored}
	if out, code := runLuna(t, bin, renv, "migrate"); code != 0 || !strings.Contains(out, "schema version") {
		t.Fatalf("migrate the restored copy: %d %s", code, out)
	}
	if out, code := runLuna(t, bin, renv, "credits", "audit"); code != 0 || !strings.Contains(out, "0 mismatches") {
		t.Fatalf("audit of the restored copy: %d %s", code, out)
	}
	rdb, err := sql.Open("sqlite", filepath.Join(restored, "luna.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	var count, highest, balance int64
	if err := rdb.QueryRow(`SELECT count(*), coalesce(max(CAST(note AS INTEGER)), 0) FROM credit_entries
		WHERE user_id = 'u1' AND kind = 'grant'`).Scan(&count, &highest); err != nil {
		t.Fatal(err)
	}
	if err := rdb.QueryRow(`SELECT credits_balance FROM users WHERE id = 'u1'`).Scan(&balance); err != nil {
		t.Fatal(err)
	}
	t.Logf("grants committed: %d before the backup started, %d when it ended; in the copy: %d", before, after, count)
	// Grants commit in order: the copy holds grants 1..count, every one
	// committed before the backup began, and none beyond what had
	// committed (or was committing) when it ended.
	if count != highest || balance != count {
		t.Errorf("copy: %d grants, highest %d, balance %d: want a gapless run with a matching balance", count, highest, balance)
	}
	if count < before || count > after+1 {
		t.Errorf("copy holds %d grants; want between %d (committed before the backup) and %d", count, before, after+1)
	}

	// An existing file is kept unless --force.
	if out, code := runLuna(t, bin, env, "backup", "--to", backupFile); code != 1 || !strings.Contains(out, "--force") {
		t.Errorf("backup over an existing file: exit %d, want 1 with a hint at --force\n%s", code, out)
	}
	if got, err := os.ReadFile(backupFile); err != nil || len(got) != len(data) {
		t.Errorf("the existing backup changed: %d bytes, %v", len(got), err)
	}
	if out, code := runLuna(t, bin, env, "backup", "--to", backupFile, "--force"); code != 0 {
		t.Errorf("backup --force: exit %d\n%s", code, out)
	}
	if left, _ := filepath.Glob(backupFile + ".tmp-*"); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestBackupRefusals(t *testing.T) {
	bin := buildLuna(t)
	dir := t.TempDir()
	to := filepath.Join(dir, "copy.db")
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"PostgreSQL", []string{"backup", "--database-url", "postgres://luna@127.0.0.1:1/luna", "--to", to}, 1, "pg_dump"},
		{"no database yet", []string{"backup", "--data-dir", filepath.Join(dir, "empty"), "--to", to}, 1, "no SQLite database"},
		{"no --to", []string{"backup", "--data-dir", dir}, 2, "--to"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, code := runLuna(t, bin, nil, c.args...)
			if code != c.code || !strings.Contains(out, c.want) {
				t.Errorf("exit %d, want %d with %q\n%s", code, c.code, c.want, out)
			}
			if _, err := os.Stat(to); err == nil {
				t.Errorf("%s was written", to)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "empty")); err == nil {
		t.Error("backup of a missing database created its data dir")
	}
}
