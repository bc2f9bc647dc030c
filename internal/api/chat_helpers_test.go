package api_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"luna/internal/app"
	"luna/internal/chat"
	"luna/internal/llm/llmtest"
	"luna/internal/store"
)

// fastChat makes the engine's timers short so tests run quickly.
var fastChat = chat.Config{
	FlushInterval: 40 * time.Millisecond, LeaseTTL: 2 * time.Second, LeaseRenewEvery: 300 * time.Millisecond,
	SweepInterval: 200 * time.Millisecond, HeartbeatEvery: time.Second, TitleTimeout: 5 * time.Second,
	RetryBackoff: 50 * time.Millisecond,
}

// modelsFile writes a models file with one model served by the fake
// upstream: 8k context, 256 output tokens; extra adds keys (the price is
// one of them: credits_per_1k_tokens).
func modelsFile(t *testing.T, baseURL string, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "models.toml")
	content := fmt.Sprintf(`[[model]]
id = "test-model"
name = "Test Model"
base_url = %q
api_key = "sk-test"
served_model_name = "test/served-model"
context_tokens = 8192
max_output_tokens = 256
system_prompt = "You are a test model."
%s
`, baseURL, extra)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testModelKeys price the test model at 1 credit per token, so charges are
// easy to check, and give it a short first-token timeout.
const testModelKeys = "credits_per_1k_tokens = 1000\nfirst_token_timeout = \"2s\""

// newChatServer starts Luna with the fake upstream as its model.
func newChatServer(t *testing.T, dialect store.Dialect, fake *llmtest.Fake, configure func(*app.Config)) *testServer {
	t.Helper()
	return newTestServer(t, dialect, func(c *app.Config) {
		c.ModelsFile = modelsFile(t, fake.BaseURL(), testModelKeys)
		c.Chat = fastChat
		if configure != nil {
			configure(c)
		}
	})
}

// newConversation creates a conversation with the test model.
func (s *testServer) newConversation(token string) string {
	s.t.Helper()
	r := s.do("POST", "/v1/conversations", token, map[string]string{"modelId": "test-model"})
	if r.status != http.StatusCreated {
		s.t.Fatalf("create conversation: %d %s", r.status, r.body)
	}
	return r.json(s.t)["id"].(string)
}

// send sends a message and returns the assistant message id.
func (s *testServer) send(token, conversationID, content string) string {
	s.t.Helper()
	r := s.do("POST", "/v1/conversations/"+conversationID+"/messages", token, map[string]string{"content": content})
	if r.status != http.StatusCreated {
		s.t.Fatalf("send: %d %s", r.status, r.body)
	}
	return r.json(s.t)["assistantMessage"].(map[string]any)["id"].(string)
}

// message returns GET /v1/messages/{id}.
func (s *testServer) message(token, id string) map[string]any {
	s.t.Helper()
	r := s.do("GET", "/v1/messages/"+id, token, nil)
	if r.status != http.StatusOK {
		s.t.Fatalf("get message: %d %s", r.status, r.body)
	}
	return r.json(s.t)
}

// waitFinal polls a message until it is no longer running.
func (s *testServer) waitFinal(token, id string) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		m := s.message(token, id)
		if st := m["status"]; st != "pending" && st != "streaming" {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("message %s still running after 20s", id)
	return nil
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id, name, data string
}

// sseStream reads a stream response event by event.
type sseStream struct {
	resp *http.Response
	r    *bufio.Reader
}

func (s *testServer) openStream(path, token, lastEventID string) *sseStream {
	s.t.Helper()
	req, err := http.NewRequest("GET", s.url+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("open stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		s.t.Fatalf("stream %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s.t.Cleanup(func() { resp.Body.Close() })
	if resp.Header.Get("X-Accel-Buffering") != "no" || resp.Header.Get("Cache-Control") != "no-cache" {
		s.t.Fatalf("stream headers %v: want X-Accel-Buffering: no and Cache-Control: no-cache", resp.Header)
	}
	return &sseStream{resp: resp, r: bufio.NewReader(resp.Body)}
}

// next returns the next event (comments skipped), or ok=false at the end.
func (st *sseStream) next() (ev sseEvent, ok bool) {
	for {
		line, err := st.r.ReadString('\n')
		if err != nil {
			return ev, false
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.name != "" || ev.data != "" {
				return ev, true
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data += strings.TrimPrefix(line, "data: ")
		}
	}
}

func (st *sseStream) close() { st.resp.Body.Close() }
