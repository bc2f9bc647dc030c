package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"luna/internal/imagegen/imagegentest"
	"luna/internal/llm/llmtest"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// lunaProcess is a running `luna serve`.
type lunaProcess struct {
	cmd *exec.Cmd
	url string
}

func startLuna(t *testing.T, bin string, args ...string) *lunaProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = os.Environ()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case url := <-found:
		return &lunaProcess{cmd: cmd, url: url}
	case <-time.After(30 * time.Second):
		t.Fatal("luna did not start")
		return nil
	}
}

func (p *lunaProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL: no clean shutdown
		t.Fatal(err)
	}
	p.cmd.Wait() // killed
}

func call(t *testing.T, method, url, token string, body any) map[string]any {
	t.Helper()
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, url, r)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var v map[string]any
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 || json.Unmarshal(data, &v) != nil {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, data)
	}
	return v
}

// startReply signs up, starts a conversation and sends a message; it
// returns the token and the reply's id once some of its text is persisted.
func startReply(t *testing.T, base string) (token, msgID string) {
	t.Helper()
	token = call(t, "POST", base+"/v1/auth/signup", "", map[string]string{"email": "a@example.com", "password": "password123"})["token"].(string)
	conv := call(t, "POST", base+"/v1/conversations", token, map[string]string{"modelId": "crash-model"})["id"].(string)
	sent := call(t, "POST", base+"/v1/conversations/"+conv+"/messages", token, map[string]string{"content": "tell me a long story"})
	msgID = sent["assistantMessage"].(map[string]any)["id"].(string)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		m := call(t, "GET", base+"/v1/messages/"+msgID, token, nil)
		if len(m["content"].(string)) > 20 {
			return token, msgID
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no reply text persisted")
	return "", ""
}

func crashModels(t *testing.T, baseURL string) string {
	path := filepath.Join(t.TempDir(), "models.toml")
	os.WriteFile(path, []byte(fmt.Sprintf(`[[model]]
id = "crash-model"
name = "Crash"
base_url = %q
served_model_name = "m"
context_tokens = 4096
max_output_tokens = 1000
`, baseURL)), 0o600)
	return path
}

func slowStory() llmtest.Script {
	var tokens []string
	for range 2000 {
		tokens = append(tokens, " once")
	}
	return llmtest.Script{Tokens: tokens, TokenDelay: 10 * time.Millisecond}
}

// wantInterrupted waits for the reply to be interrupted with its text kept
// and every credit released.
func wantInterrupted(t *testing.T, base, token, msgID string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var m map[string]any
	for time.Now().Before(deadline) {
		m = call(t, "GET", base+"/v1/messages/"+msgID, token, nil)
		if m["status"] == "interrupted" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if m["status"] != "interrupted" || !strings.HasPrefix(m["content"].(string), " once once") {
		t.Fatalf("after the crash: %v", m)
	}
	me := call(t, "GET", base+"/v1/me", token, nil)
	if c := me["credits"].(map[string]any); c["balance"] != 1000.0 || c["reserved"] != 0.0 {
		t.Fatalf("credits after the crash = %v, want all released", c)
	}
}

func TestKilledServerInterruptsItsReply(t *testing.T) {
	bin := buildLuna(t)
	fake := llmtest.New(t)
	fake.SetDefault(slowStory())
	dataDir := t.TempDir()
	models := crashModels(t, fake.BaseURL())

	first := startLuna(t, bin, "--data-dir", dataDir, "--models-file", models)
	token, msgID := startReply(t, first.url)
	first.kill(t)

	second := startLuna(t, bin, "--data-dir", dataDir, "--models-file", models)
	wantInterrupted(t, second.url, token, msgID, 10*time.Second)
	if out, code := runLuna(t, bin, []string{"LUNA_DATA_DIR=" + dataDir}, "credits", "audit"); code != 0 {
		t.Fatalf("audit after crash: %d %s", code, out)
	}
}

func TestKilledInstanceIsSettledByAnother(t *testing.T) {
	bin := buildLuna(t)
	fake := llmtest.New(t)
	fake.SetDefault(slowStory())
	dbURL := storetest.URL(t, store.Postgres)
	models := crashModels(t, fake.BaseURL())
	args := []string{"--database-url", dbURL, "--data-dir", t.TempDir(), "--models-file", models, "--generation-lease", "2s"}

	a := startLuna(t, bin, args...)
	b := startLuna(t, bin, args...)
	token, msgID := startReply(t, a.url)
	a.kill(t)
	wantInterrupted(t, b.url, token, msgID, 15*time.Second)
	if out, code := runLuna(t, bin, []string{"LUNA_DATABASE_URL=" + dbURL}, "credits", "audit"); code != 0 {
		t.Fatalf("audit after crash: %d %s", code, out)
	}
}

// A server killed while an image is processing, then restarted after an
// outage longer than the job's credit hold: the job completes with one
// upstream submission and one charge, from its hold (start-up renews the
// holds of the queued jobs before the expiry sweeper runs).
func TestKilledServerFinishesItsImage(t *testing.T) {
	bin := buildLuna(t)
	for _, dialect := range storetest.Dialects {
		t.Run(string(dialect), func(t *testing.T) { killDuringImage(t, bin, dialect) })
	}
}

func killDuringImage(t *testing.T, bin string, dialect store.Dialect) {
	fake := imagegentest.NewComfyUI(t)
	fake.SetNeverFinish(true)
	dataDir := t.TempDir()
	args := []string{"--data-dir", dataDir, "--image-backend", "comfyui", "--comfyui-url", fake.URL, "--image-lease", "2s"}
	auditEnv := []string{"LUNA_DATA_DIR=" + dataDir}
	dbURL := ""
	if dialect == store.Postgres {
		dbURL = storetest.URL(t, store.Postgres)
		args = append(args, "--database-url", dbURL)
		auditEnv = append(auditEnv, "LUNA_DATABASE_URL="+dbURL)
	}

	first := startLuna(t, bin, args...)
	token := call(t, "POST", first.url+"/v1/auth/signup", "", map[string]string{"email": "a@example.com", "password": "password123"})["token"].(string)
	job := call(t, "POST", first.url+"/v1/images", token, map[string]any{"prompt": "a lighthouse", "resolution": 512})
	select {
	case <-fake.Submitted():
	case <-time.After(15 * time.Second):
		t.Fatal("the job was not submitted")
	}
	first.kill(t)
	fake.SetNeverFinish(false)
	// An hour passes: the hold's lifetime (image timeout + 30 min) is over.
	db, err := store.Open(context.Background(), dbURL, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), `UPDATE credit_reservations SET expires_at = expires_at - 3600000`); err != nil {
		t.Fatal(err)
	}

	second := startLuna(t, bin, args...)
	deadline := time.Now().Add(30 * time.Second)
	var done map[string]any
	for time.Now().Before(deadline) {
		done = call(t, "GET", second.url+"/v1/images/"+job["id"].(string), token, nil)
		if done["status"] == "completed" || done["status"] == "failed" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if done["status"] != "completed" {
		t.Fatalf("after restart: %v", done)
	}
	if subs := fake.Submissions(); len(subs) != 1 {
		t.Fatalf("%d upstream submissions, want 1", len(subs))
	}
	me := call(t, "GET", second.url+"/v1/me", token, nil)
	if c := me["credits"].(map[string]any); c["balance"] != 950.0 || c["reserved"] != 0.0 {
		t.Fatalf("credits = %v, want one charge of 50", c)
	}
	var status string
	if err := db.QueryRowContext(context.Background(), `SELECT status FROM credit_reservations`).Scan(&status); err != nil || status != "captured" {
		t.Fatalf("hold %q (%v), want captured: it expired while its job was queued", status, err)
	}
	if out, code := runLuna(t, bin, auditEnv, "credits", "audit"); code != 0 {
		t.Fatalf("audit: %d %s", code, out)
	}
}

// SIGTERM lets running replies finish for --shutdown-timeout, then
// interrupts the rest, releasing their credits; the process exits cleanly.
func TestGracefulShutdownDuringReplies(t *testing.T) {
	bin := buildLuna(t)
	cases := []struct {
		name       string
		script     llmtest.Script
		grace      string
		wantStatus string
	}{
		{"finishes within the grace period", llmtest.Script{Tokens: []string{" a", " short", " reply"}, TokenDelay: 300 * time.Millisecond}, "10s", "complete"},
		{"interrupted at the deadline", slowStory(), "1s", "interrupted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := llmtest.New(t)
			fake.SetDefault(tc.script)
			dataDir := t.TempDir()
			args := []string{"--data-dir", dataDir, "--models-file", crashModels(t, fake.BaseURL()), "--shutdown-timeout", tc.grace}
			p := startLuna(t, bin, args...)
			token := call(t, "POST", p.url+"/v1/auth/signup", "", map[string]string{"email": "a@example.com", "password": "password123"})["token"].(string)
			conv := call(t, "POST", p.url+"/v1/conversations", token, map[string]string{"modelId": "crash-model"})["id"].(string)
			sent := call(t, "POST", p.url+"/v1/conversations/"+conv+"/messages", token, map[string]string{"content": "hi"})
			msgID := sent["assistantMessage"].(map[string]any)["id"].(string)
			time.Sleep(400 * time.Millisecond) // let some text arrive
			if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			waited := make(chan error, 1)
			go func() { waited <- p.cmd.Wait() }()
			select {
			case err := <-waited:
				if err != nil {
					t.Fatalf("luna exited with %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("luna did not stop")
			}
			again := startLuna(t, bin, args...)
			m := call(t, "GET", again.url+"/v1/messages/"+msgID, token, nil)
			if m["status"] != tc.wantStatus || m["content"] == "" {
				t.Fatalf("after shutdown: %v", m)
			}
			me := call(t, "GET", again.url+"/v1/me", token, nil)
			if c := me["credits"].(map[string]any); c["reserved"] != 0.0 {
				t.Fatalf("credits after shutdown = %v", c)
			}
		})
	}
}

// A SQLite server killed during replies and restarted after an outage
// longer than their credit holds' lifetime: at start-up both the orphaned
// replies' interruption and the expiry sweeper are due for the same holds.
// The interruption runs first and releases each hold once; the sweeper
// finds nothing left to void, and the ledger stays whole.
func TestRestartAfterALongOutageReleasesEachHoldOnce(t *testing.T) {
	bin := buildLuna(t)
	fake := llmtest.New(t)
	fake.SetDefault(slowStory())
	dataDir := t.TempDir()
	args := []string{"--data-dir", dataDir, "--models-file", crashModels(t, fake.BaseURL()), "--sweep-interval", "100ms"}

	first := startLuna(t, bin, args...)
	token := call(t, "POST", first.url+"/v1/auth/signup", "", map[string]string{"email": "a@example.com", "password": "password123"})["token"].(string)
	var replies []string
	for range 3 {
		conv := call(t, "POST", first.url+"/v1/conversations", token, map[string]string{"modelId": "crash-model"})["id"].(string)
		sent := call(t, "POST", first.url+"/v1/conversations/"+conv+"/messages", token, map[string]string{"content": "tell me a long story"})
		replies = append(replies, sent["assistantMessage"].(map[string]any)["id"].(string))
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, id := range replies {
		for len(call(t, "GET", first.url+"/v1/messages/"+id, token, nil)["content"].(string)) <= 20 {
			if time.Now().After(deadline) {
				t.Fatal("no reply text persisted")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	first.kill(t)

	// Two hours pass: the holds' 30-minute lifetime is over.
	ctx := context.Background()
	db, err := store.Open(ctx, "", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `UPDATE credit_reservations SET expires_at = expires_at - 7200000, created_at = created_at - 7200000`); err != nil {
		t.Fatal(err)
	}

	second := startLuna(t, bin, args...)
	for _, id := range replies {
		wantInterrupted(t, second.url, token, id, 10*time.Second)
	}
	time.Sleep(300 * time.Millisecond) // a few sweeps
	rows, err := db.QueryContext(ctx, `SELECT r.status, COUNT(e.id), MIN(e.kind), MAX(e.kind) FROM credit_reservations r
		JOIN credit_entries e ON e.reservation_id = r.id GROUP BY r.id, r.status`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	holds := 0
	for rows.Next() {
		var status, firstKind, lastKind string
		var entries int
		if err := rows.Scan(&status, &entries, &firstKind, &lastKind); err != nil {
			t.Fatal(err)
		}
		holds++
		if status != "released" || entries != 2 || firstKind != "release" || lastKind != "reserve" {
			t.Errorf("hold %s with %d entries (%s … %s), want released by the interruption: reserve, release", status, entries, firstKind, lastKind)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if holds != len(replies) {
		t.Fatalf("%d holds, want %d", holds, len(replies))
	}
	if out, code := runLuna(t, bin, []string{"LUNA_DATA_DIR=" + dataDir}, "credits", "audit"); code != 0 {
		t.Fatalf("audit after the restart: %d %s", code, out)
	}
}

// A regenerated reply, then a continued one, whose instance is killed
// mid-way: each is interrupted with its text kept, its run's hold released,
// the earlier version and its charge untouched, and the audit clean. On
// SQLite the restarted server settles them; on PostgreSQL the other
// instance does.
func TestKilledDuringRegenerateAndContinue(t *testing.T) {
	bin := buildLuna(t)
	for _, dialect := range storetest.Dialects {
		t.Run(string(dialect), func(t *testing.T) { killDuringActions(t, bin, dialect) })
	}
}

func killDuringActions(t *testing.T, bin string, dialect store.Dialect) {
	fake := llmtest.New(t)
	fake.SetDefault(slowStory())
	fake.Enqueue(llmtest.Script{Tokens: []string{"Short", " and", " cut"}, FinishReason: "length"})
	models := crashModels(t, fake.BaseURL())
	args := []string{"--data-dir", t.TempDir(), "--models-file", models, "--generation-lease", "2s"}
	env := []string{"LUNA_DATA_DIR=" + args[1]}
	if dialect == store.Postgres {
		dbURL := storetest.URL(t, dialect)
		args = append(args, "--database-url", dbURL)
		env = []string{"LUNA_DATABASE_URL=" + dbURL}
	}
	// killAndSettle kills p and returns the instance that settles its
	// reply: a restart on SQLite, a second instance on PostgreSQL.
	var other *lunaProcess
	if dialect == store.Postgres {
		other = startLuna(t, bin, args...)
	}
	killAndSettle := func(p *lunaProcess) *lunaProcess {
		p.kill(t)
		if other != nil {
			return other
		}
		return startLuna(t, bin, args...)
	}
	waitStatus := func(base, token, id string, want func(m map[string]any) bool) map[string]any {
		t.Helper()
		var m map[string]any
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if m = call(t, "GET", base+"/v1/messages/"+id, token, nil); want(m) {
				return m
			}
		}
		t.Fatalf("message %s is %v", id, m)
		return nil
	}

	p := startLuna(t, bin, args...)
	token := call(t, "POST", p.url+"/v1/auth/signup", "", map[string]string{"email": "a@example.com", "password": "password123"})["token"].(string)
	conv := call(t, "POST", p.url+"/v1/conversations", token, map[string]string{"modelId": "crash-model"})["id"].(string)
	first := call(t, "POST", p.url+"/v1/conversations/"+conv+"/messages", token, map[string]string{"content": "a story"})["assistantMessage"].(map[string]any)["id"].(string)
	done := waitStatus(p.url, token, first, func(m map[string]any) bool { return m["status"] == "complete" })
	charged := done["creditsCharged"].(float64)

	// Regenerate, and kill the instance while the new version streams.
	regen := call(t, "POST", p.url+"/v1/messages/"+first+"/regenerate", token, map[string]string{"clientRequestId": "regen"})
	second := regen["assistantMessage"].(map[string]any)["id"].(string)
	waitStatus(p.url, token, second, func(m map[string]any) bool { return len(m["content"].(string)) > 20 })
	p = killAndSettle(p)
	m := waitStatus(p.url, token, second, func(m map[string]any) bool { return m["status"] == "interrupted" })
	if !strings.HasPrefix(m["content"].(string), " once once") || m["creditsCharged"] != 0.0 || m["versionIndex"] != 2.0 {
		t.Fatalf("regenerated reply after the crash: %v", m)
	}
	if m := call(t, "GET", p.url+"/v1/messages/"+first, token, nil); m["content"] != "Short and cut" || m["creditsCharged"] != charged {
		t.Fatalf("first version after the crash: %v", m)
	}
	wantCredits := func(base string) {
		t.Helper()
		c := call(t, "GET", base+"/v1/me", token, nil)["credits"].(map[string]any)
		if c["balance"] != 1000-charged || c["reserved"] != 0.0 {
			t.Fatalf("credits = %v, want %v and nothing held", c, 1000-charged)
		}
		if out, code := runLuna(t, bin, env, "credits", "audit"); code != 0 {
			t.Fatalf("audit after crash: %d %s", code, out)
		}
	}
	wantCredits(p.url)

	// Continue the interrupted version, and kill its instance too (on
	// PostgreSQL, a third instance settles it).
	if dialect == store.Postgres {
		p, other = other, startLuna(t, bin, args...)
	}
	before := m["content"].(string)
	call(t, "POST", p.url+"/v1/messages/"+second+"/continue", token, map[string]string{"clientRequestId": "cont"})
	waitStatus(p.url, token, second, func(m map[string]any) bool { return len(m["content"].(string)) > len(before)+20 })
	p = killAndSettle(p)
	m = waitStatus(p.url, token, second, func(m map[string]any) bool { return m["status"] == "interrupted" })
	if content := m["content"].(string); !strings.HasPrefix(content, before) || len(content) <= len(before)+20 || m["creditsCharged"] != 0.0 {
		t.Fatalf("continued reply after the crash: %v", m)
	}
	wantCredits(p.url)
}
