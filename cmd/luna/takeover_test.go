package main_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"luna/internal/chat"
	"luna/internal/llm/llmtest"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// followEnd follows a reply's stream on base and sends on the returned
// channel the name of its final event (done, error or deleted) when it
// comes; ready is closed once the first event (the snapshot) arrived.
func followEnd(t *testing.T, base, token, msgID string) (ready <-chan struct{}, end <-chan string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/v1/messages/"+msgID+"/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream on %s: %d", base, resp.StatusCode)
	}
	readyCh, endCh := make(chan struct{}), make(chan string, 1)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		started := false
		for sc.Scan() {
			name, ok := strings.CutPrefix(sc.Text(), "event: ")
			if !ok {
				continue
			}
			if !started {
				started = true
				close(readyCh)
			}
			switch name {
			case "done", "error", "deleted":
				endCh <- name
				return
			}
		}
		endCh <- "cut: " + strings.TrimSpace(errString(sc.Err()))
	}()
	return readyCh, endCh
}

func errString(err error) string {
	if err == nil {
		return "EOF"
	}
	return err.Error()
}

// With three instances on PostgreSQL and the default lease settings, a
// killed instance's running reply is settled by another, and the followers
// on the other two see its end, within the bound the defaults promise:
// the lease (the last renewal came before the kill) plus one sweep
// interval. The slack covers a busy machine (process scheduling, the
// settling transaction, the signal to the followers); the old defaults
// (a 30 s lease, a 5 s sweep) miss the bound by far.
func TestKilledInstanceSettledWithinDefaultLease(t *testing.T) {
	const slack = 8 * time.Second
	bound := chat.DefaultLeaseTTL + chat.DefaultSweepInterval + slack

	bin := buildLuna(t)
	fake := llmtest.New(t)
	fake.SetDefault(slowStory())
	dbURL := storetest.URL(t, store.Postgres)
	models := crashModels(t, fake.BaseURL())
	args := []string{"--database-url", dbURL, "--data-dir", t.TempDir(), "--models-file", models}

	a := startLuna(t, bin, args...)
	b := startLuna(t, bin, args...)
	c := startLuna(t, bin, args...)
	token, msgID := startReply(t, a.url)
	readyB, endB := followEnd(t, b.url, token, msgID)
	readyC, endC := followEnd(t, c.url, token, msgID)
	for _, ready := range []<-chan struct{}{readyB, readyC} {
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			t.Fatal("a follower got no first event")
		}
	}

	killed := time.Now()
	a.kill(t)
	for name, end := range map[string]<-chan string{"b": endB, "c": endC} {
		select {
		case got := <-end:
			if got != "error" {
				t.Fatalf("follower on %s ended with %q, want the error event", name, got)
			}
		case <-time.After(bound - time.Since(killed)):
			t.Fatalf("follower on %s saw no end within %s of the kill (lease %s + sweep %s + slack %s)",
				name, bound, chat.DefaultLeaseTTL, chat.DefaultSweepInterval, slack)
		}
	}
	t.Logf("both followers saw the end %s after the kill", time.Since(killed).Round(time.Millisecond))
	wantInterrupted(t, b.url, token, msgID, time.Second)
	if out, code := runLuna(t, bin, []string{"LUNA_DATABASE_URL=" + dbURL}, "credits", "audit"); code != 0 {
		t.Fatalf("audit after crash: %d %s", code, out)
	}
}
