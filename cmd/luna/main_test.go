package main_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// buildLuna compiles the real binary once per test run.
func buildLuna(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "luna")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runLuna runs an admin command and returns its output and exit code.
func runLuna(t *testing.T, bin string, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return string(out), exitErr.ExitCode()
	}
	if err != nil {
		t.Fatalf("luna %v: %v", args, err)
	}
	return string(out), 0
}

// A fresh data dir: `luna serve` on a free port answers /healthz and
// /readyz within seconds, and stops cleanly on SIGTERM.
func TestServeFreshStart(t *testing.T) {
	bin := buildLuna(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir)
	cmd.Env = os.Environ()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })

	urlFound := make(chan string, 1)
	var logs strings.Builder
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		re := regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urlFound <- m[1]
			}
		}
	}()
	var url string
	select {
	case url = <-urlFound:
	case <-time.After(30 * time.Second):
		t.Fatalf("no listening URL in the log after 30s")
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
	}
	t.Logf("serving /healthz and /readyz %v after start", time.Since(start).Round(time.Millisecond))

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { <-logDone; done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("luna serve exited with %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("luna serve did not stop after SIGTERM\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "stopped") {
		t.Fatalf("no clean stop in the log:\n%s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(dataDir, "luna.db")); err != nil {
		t.Fatalf("no SQLite database in the data dir: %v", err)
	}
}

// The admin commands work on the same database the server uses, and the
// audit exits non-zero when the ledger and the balances disagree.
func TestAdminCommands(t *testing.T) {
	bin := buildLuna(t)
	dataDir := t.TempDir()
	env := []string{"LUNA_DATA_DIR=" + dataDir}

	if out, code := runLuna(t, bin, env, "migrate"); code != 0 || !strings.Contains(out, "schema version") {
		t.Fatalf("migrate: %d %s", code, out)
	}
	out, code := runLuna(t, bin, env, "invites", "create", "--count", "2", "--uses", "3", "--credits", "100")
	codes := strings.Fields(out)
	if code != 0 || len(codes) != 2 {
		t.Fatalf("invites create: %d %q", code, out)
	}
	if out, code := runLuna(t, bin, env, "invites", "list"); code != 0 || !strings.Contains(out, codes[0]) || !strings.Contains(out, "0/3") {
		t.Fatalf("invites list: %d %s", code, out)
	}

	// A user, made directly in the database (sign-up is tested elsewhere).
	db, err := sql.Open("sqlite", filepath.Join(dataDir, "luna.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), `INSERT INTO users (id, provider, email, email_normalized, created_at, updated_at)
		VALUES ('u1', 'local', 'Ada@example.com', 'ada@example.com', 0, 0)`); err != nil {
		t.Fatal(err)
	}
	if out, code := runLuna(t, bin, env, "credits", "grant", "--user", "ADA@example.com", "--amount", "250", "--key", "k1"); code != 0 || !strings.Contains(out, "balance 250") {
		t.Fatalf("grant: %d %s", code, out)
	}
	// Same key again: granted once.
	if out, code := runLuna(t, bin, env, "credits", "grant", "--user", "u1", "--amount", "250", "--key", "k1"); code != 0 || !strings.Contains(out, "balance 250") {
		t.Fatalf("repeated grant: %d %s", code, out)
	}
	if out, code := runLuna(t, bin, env, "users", "list"); code != 0 || !strings.Contains(out, "Ada@example.com") || !strings.Contains(out, "250") {
		t.Fatalf("users list: %d %s", code, out)
	}
	if out, code := runLuna(t, bin, env, "credits", "audit"); code != 0 || !strings.Contains(out, "0 mismatches") {
		t.Fatalf("clean audit: %d %s", code, out)
	}
	if _, err := db.ExecContext(context.Background(), `UPDATE users SET credits_balance = 999 WHERE id = 'u1'`); err != nil {
		t.Fatal(err)
	}
	if out, code := runLuna(t, bin, env, "credits", "audit"); code != 1 || !strings.Contains(out, "MISMATCH") {
		t.Fatalf("audit of a tampered balance: exit %d %s, want 1 with MISMATCH", code, out)
	}

	// Usage errors exit 2.
	for _, args := range [][]string{{}, {"frobnicate"}, {"credits", "grant", "--user", "u1"}, {"serve", "--no-such-flag"}} {
		if out, code := runLuna(t, bin, env, args...); code != 2 {
			t.Errorf("luna %v: exit %d, want 2\n%s", args, code, out)
		}
	}
	if out, code := runLuna(t, bin, env, "credits", "grant", "--user", "nobody@example.com", "--amount", "5"); code != 1 || !strings.Contains(out, "not found") {
		t.Errorf("grant to unknown user: %d %s", code, out)
	}
	// Bad environment values are reported, not ignored.
	if out, code := runLuna(t, bin, append(env, "LUNA_INITIAL_CREDITS=lots"), "serve"); code != 2 || !strings.Contains(out, "LUNA_INITIAL_CREDITS") {
		t.Errorf("bad env value: %d %s", code, out)
	}
}
