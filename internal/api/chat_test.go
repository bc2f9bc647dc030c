package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"luna/internal/app"
	"luna/internal/llm"
	"luna/internal/llm/llmtest"
	"luna/internal/store"
)

// cost is what tokens cost at the test model's 1,000 credits per 1,000 tokens.
func cost(tokens int) int64 { return int64(math.Ceil(float64(tokens) * 1000 / 1000)) }

func decode(t *testing.T, data string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatalf("event data %q: %v", data, err)
	}
	return v
}

func wantAuditClean(t *testing.T, s *testServer) {
	t.Helper()
	report, err := s.ledger().Audit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range report.Mismatches {
		t.Errorf("audit: %s", m)
	}
}

func TestChatReplyStreamsAndIsBilledExactly(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		tokens := []string{"Hello", ",", " wör", "ld", " — ", "日本", "語", " 🙂", "!"}
		fake.Enqueue(llmtest.Script{Tokens: tokens, TokenDelay: 30 * time.Millisecond, PromptTokens: 34})
		fake.SetDefault(llmtest.Script{Tokens: []string{"A", " title"}})
		s := newChatServer(t, dialect, fake, nil)
		token := s.signup("a@example.com")
		events := s.openStream("/v1/events", token, "")
		conv := s.newConversation(token)
		msgID := s.send(token, conv, "Say hello")

		st := s.openStream("/v1/messages/"+msgID+"/stream", token, "")
		var text strings.Builder
		deltas := 0
		var done map[string]any
		for done == nil {
			ev, ok := st.next()
			if !ok {
				t.Fatal("stream ended before done")
			}
			switch ev.name {
			case "snapshot":
				text.WriteString(decode(t, ev.data)["content"].(string))
			case "delta":
				deltas++
				text.WriteString(decode(t, ev.data)["text"].(string))
				if got := strconv.Itoa(len(text.String())); ev.id != got {
					t.Fatalf("delta id %s, want byte offset %s", ev.id, got)
				}
			case "done":
				done = decode(t, ev.data)
			default:
				t.Fatalf("unexpected event %q: %s", ev.name, ev.data)
			}
		}
		if got, want := text.String(), strings.Join(tokens, ""); got != want {
			t.Fatalf("streamed text %q, want %q", got, want)
		}
		if deltas < 3 {
			t.Fatalf("only %d delta events: the reply did not stream token by token", deltas)
		}
		usage := done["usage"].(map[string]any)
		if usage["promptTokens"] != 34.0 || usage["completionTokens"] != float64(len(tokens)) {
			t.Fatalf("usage = %v", usage)
		}
		wantCharge := cost(34 + len(tokens))
		if got := int64(done["creditsCharged"].(float64)); got != wantCharge || done["status"] != "complete" {
			t.Fatalf("done = %v, want complete and charge %d", done, wantCharge)
		}
		c := s.credits(token)
		if c["balance"] != float64(1000-wantCharge) || c["reserved"] != 0.0 {
			t.Fatalf("credits after reply = %v, want balance %d, reserved 0", c, 1000-wantCharge)
		}
		m := s.message(token, msgID)
		if m["content"] != strings.Join(tokens, "") || m["status"] != "complete" {
			t.Fatalf("stored message = %v", m)
		}
		// The request sent upstream: served model name, key, usage on, system prompt first.
		req := fake.Requests()[0]
		if req.Model != "test/served-model" || req.Authorization != "Bearer sk-test" || len(req.Messages) != 2 ||
			req.Messages[0].Role != "system" || req.Messages[1].Content != "Say hello" || req.MaxTokens <= 0 {
			t.Fatalf("upstream request = %+v", req)
		}

		// /v1/events saw the reply finish, the balance change and the title.
		seen := map[string]bool{}
		deadline := time.After(10 * time.Second)
		for !(seen["message.updated"] && seen["credits.updated:"+strconv.FormatInt(1000-wantCharge, 10)] && seen["title"]) {
			evc := make(chan sseEvent, 1)
			go func() {
				if ev, ok := events.next(); ok {
					evc <- ev
				}
			}()
			select {
			case ev := <-evc:
				seen[ev.name] = true
				data := decode(t, ev.data)
				if ev.name == "credits.updated" {
					seen["credits.updated:"+strconv.FormatFloat(data["balance"].(float64), 'f', 0, 64)] = true
				}
				if ev.name == "conversation.updated" && data["title"] == "A title" {
					seen["title"] = true
				}
			case <-deadline:
				t.Fatalf("events seen: %v", seen)
			}
		}
		wantAuditClean(t, s)
	})
}

func TestChatUpstreamFailuresReleaseCredits(t *testing.T) {
	cases := map[string]llmtest.Script{
		"error event mid-stream":  {Tokens: []string{"a", "b", "c", "d"}, ErrorEventAt: 2, ErrorMessage: "Internal server error"},
		"error event first":       {Tokens: []string{"a", "b"}, ErrorEventAt: llmtest.ErrorEventFirst, ErrorMessage: "engine failed"},
		"cut without done":        {Tokens: []string{"a", "b", "c", "d"}, CutAfter: 2},
		"upstream 500":            {Status: 500, ErrorMessage: "boom"},
		"upstream 500 flat shape": {Status: 500, ErrorShape: "flat", ErrorMessage: "boom"},
		"garbage bytes":           {Tokens: []string{"a", "b", "c"}, GarbageAt: 1},
		"second timeout":          {FirstTokenDelay: 5 * time.Second},
	}
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		for name, script := range cases {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				fake := llmtest.New(t)
				fake.SetDefault(script)
				s := newChatServer(t, dialect, fake, func(c *app.Config) {
					c.ModelsFile = modelsFile(t, fake.BaseURL(), "credits_per_1k_tokens = 1000\nfirst_token_timeout = \"300ms\"")
				})
				token := s.signup("a@example.com")
				conv := s.newConversation(token)
				msgID := s.send(token, conv, "hello")
				st := s.openStream("/v1/messages/"+msgID+"/stream", token, "")
				var last sseEvent
				for {
					ev, ok := st.next()
					if !ok {
						break
					}
					last = ev
				}
				if last.name != "error" {
					t.Fatalf("last event %q %s, want error", last.name, last.data)
				}
				data := decode(t, last.data)
				errInfo, _ := data["error"].(map[string]any)
				if data["status"] != "error" || errInfo == nil || errInfo["message"] == "" {
					t.Fatalf("error event = %v", data)
				}
				m := s.message(token, msgID)
				if m["status"] != "error" || m["creditsCharged"] != 0.0 {
					t.Fatalf("message = %v", m)
				}
				if c := s.credits(token); c["balance"] != 1000.0 || c["reserved"] != 0.0 {
					t.Fatalf("credits = %v, want all released", c)
				}
				if name == "second timeout" && len(fake.Requests()) != 2 {
					t.Fatalf("upstream saw %d requests, want 2 (one retry)", len(fake.Requests()))
				}
				// The conversation is free for the next message.
				fake.SetDefault(llmtest.Script{Tokens: []string{"ok"}})
				next := s.send(token, conv, "again")
				if m := s.waitFinal(token, next); m["status"] != "complete" {
					t.Fatalf("next reply = %v", m)
				}
				wantAuditClean(t, s)
			})
		}
	})
}

func TestChatRetriesOnceAfterFirstTokenTimeout(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.Enqueue(llmtest.Script{FirstTokenDelay: 5 * time.Second})
		fake.Enqueue(llmtest.Script{Tokens: []string{"made", " it"}})
		fake.SetDefault(llmtest.Script{Tokens: []string{"Title"}})
		s := newChatServer(t, dialect, fake, func(c *app.Config) {
			c.ModelsFile = modelsFile(t, fake.BaseURL(), "credits_per_1k_tokens = 1000\nfirst_token_timeout = \"300ms\"")
		})
		token := s.signup("a@example.com")
		msgID := s.send(token, s.newConversation(token), "hello")
		m := s.waitFinal(token, msgID)
		if m["status"] != "complete" || m["content"] != "made it" {
			t.Fatalf("message = %v", m)
		}
		if n := len(fake.Requests()); n < 2 {
			t.Fatalf("upstream saw %d requests, want a retry", n)
		}
		wantAuditClean(t, s)
	})
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// A connection refused before the first token is retried once, after a
// jittered backoff rather than at once (a restarting model server needs a
// moment), and the wait ends as soon as the reply is stopped.
func TestChatRetryBeforeFirstTokenBacksOff(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		start := func(t *testing.T, backoff time.Duration) (*testServer, string) {
			s := newTestServer(t, dialect, func(c *app.Config) {
				c.ModelsFile = modelsFile(t, "http://"+closedAddr(t)+"/v1", testModelKeys)
				c.Chat = fastChat
				c.Chat.RetryBackoff = backoff
			})
			return s, s.signup("a@example.com")
		}
		t.Run("waits", func(t *testing.T) {
			s, token := start(t, 400*time.Millisecond)
			begin := time.Now()
			m := s.waitFinal(token, s.send(token, s.newConversation(token), "hello"))
			// The backoff is at least half the configured wait.
			if elapsed := time.Since(begin); elapsed < 200*time.Millisecond {
				t.Fatalf("the reply failed after %v: the retry did not wait", elapsed)
			}
			if m["status"] != "error" || !strings.Contains(fmt.Sprint(m["error"]), "connection refused") {
				t.Fatalf("message = %v", m)
			}
			if c := s.credits(token); c["balance"] != 1000.0 || c["reserved"] != 0.0 {
				t.Fatalf("credits = %v, want all released", c)
			}
		})
		t.Run("stop ends the wait", func(t *testing.T) {
			s, token := start(t, time.Hour)
			msgID := s.send(token, s.newConversation(token), "hello")
			begin := time.Now()
			if r := s.do("POST", "/v1/messages/"+msgID+"/cancel", token, nil); r.status >= 300 {
				t.Fatalf("cancel: %d %s", r.status, r.body)
			}
			m := s.waitFinal(token, msgID)
			if elapsed := time.Since(begin); elapsed > 10*time.Second {
				t.Fatalf("the stopped reply ended after %v", elapsed)
			}
			if m["status"] != "cancelled" || m["creditsCharged"] != 0.0 {
				t.Fatalf("message = %v", m)
			}
		})
	})
}

// A "context too long" answer, as vLLM's HTTP 400 or as llama.cpp's error:
// line after a 200 (llama-server --no-context-shift), is retried once with
// fewer messages.
func TestChatContextTooLongIsRetriedWithFewerMessages(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		for _, llama := range []bool{false, true} {
			t.Run(map[bool]string{false: "vLLM 400", true: "llama.cpp error line"}[llama], func(t *testing.T) {
				contextTooLongRetried(t, dialect, llama)
			})
		}
	})
}

func contextTooLongRetried(t *testing.T, dialect store.Dialect, llama bool) {
	fake := llmtest.New(t)
	fake.SetDefault(llmtest.Script{Tokens: []string{"fine"}})
	s := newChatServer(t, dialect, fake, func(c *app.Config) {
		c.ModelsFile = modelsFile(t, fake.BaseURL(), "credits_per_1k_tokens = 10")
	})
	token := s.signup("a@example.com")
	conv := s.newConversation(token)
	for i := range 4 {
		s.waitFinal(token, s.send(token, conv, fmt.Sprintf("message %d %s", i, strings.Repeat("x", 200))))
	}
	before := len(fake.Requests())
	fake.Enqueue(llmtest.Script{ContextTooLongAboveChars: 600, LlamaCppErrors: llama})
	fake.Enqueue(llmtest.Script{Tokens: []string{"shorter"}})
	msgID := s.send(token, conv, "last question")
	if m := s.waitFinal(token, msgID); m["status"] != "complete" || m["content"] != "shorter" {
		t.Fatalf("message = %v", m)
	}
	reqs := fake.Requests()[before:]
	if len(reqs) < 2 || len(reqs[1].Messages) >= len(reqs[0].Messages) {
		t.Fatalf("retry did not drop messages: %d then %d", len(reqs[0].Messages), len(reqs[1].Messages))
	}
	if last := reqs[1].Messages[len(reqs[1].Messages)-1]; last.Content != "last question" {
		t.Fatalf("retry lost the question: %+v", last)
	}
}

func TestChatResumeDeliversEveryByteOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		var tokens []string
		for i := range 60 {
			tokens = append(tokens, []string{"é", "日本", "🙂", " word", "ß"}[i%5])
		}
		fake.Enqueue(llmtest.Script{Tokens: tokens, TokenDelay: 15 * time.Millisecond, SplitWrites: true})
		fake.SetDefault(llmtest.Script{Tokens: []string{"T"}})
		s := newChatServer(t, dialect, fake, nil)
		token := s.signup("a@example.com")
		msgID := s.send(token, s.newConversation(token), "go")

		var text strings.Builder
		lastID := ""
		for attempt := 0; ; attempt++ {
			st := s.openStream("/v1/messages/"+msgID+"/stream", token, lastID)
			read, finished := 0, false
			for {
				ev, ok := st.next()
				if !ok {
					break
				}
				switch ev.name {
				case "snapshot":
					text.Reset()
					text.WriteString(decode(t, ev.data)["content"].(string))
				case "delta":
					text.WriteString(decode(t, ev.data)["text"].(string))
				case "done":
					finished = true
				}
				lastID = ev.id
				read++
				if !finished && read == 3+attempt {
					break // drop the connection mid-reply
				}
			}
			st.close()
			if finished {
				break
			}
		}
		final := s.waitFinal(token, msgID)
		if got, want := text.String(), final["content"].(string); got != want || want != strings.Join(tokens, "") {
			t.Fatalf("resumed text %q\nwant %q", got, want)
		}
	})
}

func TestChatStopChargesForWhatWasGenerated(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		var tokens []string
		for range 200 {
			tokens = append(tokens, " tok")
		}
		fake.Enqueue(llmtest.Script{Tokens: tokens, TokenDelay: 20 * time.Millisecond, PromptTokens: 30})
		fake.SetDefault(llmtest.Script{Tokens: []string{"T"}})
		s := newChatServer(t, dialect, fake, nil)
		token := s.signup("a@example.com")
		msgID := s.send(token, s.newConversation(token), "count")
		st := s.openStream("/v1/messages/"+msgID+"/stream", token, "")
		for deltas := 0; deltas < 5; {
			ev, ok := st.next()
			if !ok {
				t.Fatal("stream ended early")
			}
			if ev.name == "delta" {
				deltas++
			}
		}
		r := s.do("POST", "/v1/messages/"+msgID+"/cancel", token, nil)
		if r.status != http.StatusOK {
			t.Fatalf("cancel: %d %s", r.status, r.body)
		}
		m := s.waitFinal(token, msgID)
		content := m["content"].(string)
		if m["status"] != "cancelled" || content == "" || len(content) >= len(strings.Join(tokens, "")) {
			t.Fatalf("stopped message = %v", m)
		}
		charged := int64(m["creditsCharged"].(float64))
		if charged <= 0 || charged >= cost(30+256) {
			t.Fatalf("charged %d for a stopped reply of %d bytes", charged, len(content))
		}
		if c := s.credits(token); c["balance"] != float64(1000-charged) || c["reserved"] != 0.0 {
			t.Fatalf("credits = %v", c)
		}
		// The fake notices the closed connection at its next write.
		abortCtx, cancelAbort := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancelAbort()
		if err := fake.WaitAborted(abortCtx, 1); err != nil {
			t.Fatalf("the upstream request was not aborted: %v", err)
		}
		// Stopping again is harmless.
		if r := s.do("POST", "/v1/messages/"+msgID+"/cancel", token, nil); r.status != http.StatusOK || r.json(t)["status"] != "cancelled" {
			t.Fatalf("second cancel: %d %s", r.status, r.body)
		}
		wantAuditClean(t, s)
	})
}

func TestChatConcurrentSendsNeverOverdraw(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.SetDefault(llmtest.Script{Tokens: []string{"x", "y", "z"}, TokenDelay: 10 * time.Millisecond, PromptTokens: 20})
		s := newChatServer(t, dialect, fake, func(c *app.Config) { c.InitialCredits = 400 })
		token := s.signup("a@example.com")
		var convs []string
		for range 10 {
			convs = append(convs, s.newConversation(token))
		}
		var wg sync.WaitGroup
		statuses := make(chan int, 50)
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := s.do("POST", "/v1/conversations/"+convs[i%10]+"/messages", token, map[string]string{"content": "hi"})
				statuses <- r.status
				if r.status >= 500 {
					t.Errorf("send: %d %s", r.status, r.body)
				}
			}()
		}
		wg.Wait()
		close(statuses)
		counts := map[int]int{}
		for st := range statuses {
			counts[st]++
		}
		if counts[201] == 0 || counts[402] == 0 {
			t.Fatalf("statuses = %v: want some accepted and some refused for credits", counts)
		}
		if c := s.credits(token); c["available"].(float64) < 0 {
			t.Fatalf("available below zero: %v", c)
		}
		// Let everything finish, then check the books.
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if c := s.credits(token); c["reserved"] == 0.0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if c := s.credits(token); c["reserved"] != 0.0 || c["available"].(float64) < 0 {
			t.Fatalf("credits after all replies = %v", c)
		}
		wantAuditClean(t, s)
	})
}

func TestChatRules(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.SetDefault(llmtest.Script{Tokens: []string{"slow"}, FirstTokenDelay: 500 * time.Millisecond})
		s := newChatServer(t, dialect, fake, nil)
		alice, bob := s.signup("alice@example.com"), s.signup("bob@example.com")
		conv := s.newConversation(alice)

		// Bad input.
		for name, body := range map[string]any{
			"empty content": map[string]string{"content": "   "},
			"too long":      map[string]string{"content": strings.Repeat("a", 32001)},
			"unknown field": map[string]any{"content": "hi", "model": "x"},
		} {
			if r := s.do("POST", "/v1/conversations/"+conv+"/messages", alice, body); r.status != 400 {
				t.Errorf("%s: %d %s", name, r.status, r.body)
			}
		}
		if r := s.do("POST", "/v1/conversations", alice, map[string]string{"modelId": "nope"}); r.status != 400 || r.errorCode(t) != "invalid_request" {
			t.Errorf("unknown model: %d %s", r.status, r.body)
		}

		// Idempotent send, then 409 while generating.
		body := map[string]string{"content": "hello", "clientMessageId": "c-1"}
		first := s.do("POST", "/v1/conversations/"+conv+"/messages", alice, body)
		again := s.do("POST", "/v1/conversations/"+conv+"/messages", alice, body)
		if first.status != 201 || again.status != 201 {
			t.Fatalf("sends: %d %s / %d %s", first.status, first.body, again.status, again.body)
		}
		a1 := first.json(t)["assistantMessage"].(map[string]any)["id"]
		a2 := again.json(t)["assistantMessage"].(map[string]any)["id"]
		if a1 != a2 {
			t.Fatalf("retried send made a second reply: %v vs %v", a1, a2)
		}
		r := s.do("POST", "/v1/conversations/"+conv+"/messages", alice, map[string]string{"content": "another"})
		if r.status != http.StatusConflict || r.errorCode(t) != "generation_in_progress" {
			t.Fatalf("second send while generating: %d %s", r.status, r.body)
		}

		// Bob sees nothing of Alice's.
		msg := a1.(string)
		for _, req := range []struct{ method, path string }{
			{"GET", "/v1/conversations/" + conv},
			{"PATCH", "/v1/conversations/" + conv},
			{"GET", "/v1/conversations/" + conv + "/messages"},
			{"POST", "/v1/conversations/" + conv + "/messages"},
			{"GET", "/v1/messages/" + msg},
			{"GET", "/v1/messages/" + msg + "/stream"},
			{"POST", "/v1/messages/" + msg + "/cancel"},
		} {
			var body any
			switch req.method {
			case "PATCH":
				body = map[string]string{"title": "mine"}
			case "POST":
				if strings.HasSuffix(req.path, "/messages") {
					body = map[string]string{"content": "hi"}
				}
			}
			if r := s.do(req.method, req.path, bob, body); r.status != 404 || r.errorCode(t) != "not_found" {
				t.Errorf("bob %s %s: %d %s", req.method, req.path, r.status, r.body)
			}
		}
		if r := s.do("GET", "/v1/conversations", bob, nil); len(r.json(t)["items"].([]any)) != 0 {
			t.Errorf("bob lists alice's conversations: %s", r.body)
		}
		s.waitFinal(alice, msg)

		// Rename, list order, history pages.
		if r := s.do("PATCH", "/v1/conversations/"+conv, alice, map[string]string{"title": "Renamed"}); r.status != 200 || r.json(t)["title"] != "Renamed" {
			t.Fatalf("rename: %d %s", r.status, r.body)
		}
		other := s.newConversation(alice)
		list := s.do("GET", "/v1/conversations?limit=1", alice, nil).json(t)
		if items := list["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != other || list["nextCursor"] == nil {
			t.Fatalf("first page = %v", list)
		}
		page2 := s.do("GET", "/v1/conversations?limit=1&cursor="+list["nextCursor"].(string), alice, nil).json(t)
		if items := page2["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != conv {
			t.Fatalf("second page = %v", page2)
		}
		if r := s.do("GET", "/v1/conversations?cursor=garbage", alice, nil); r.status != 400 {
			t.Fatalf("bad cursor: %d", r.status)
		}
		hist := s.do("GET", "/v1/conversations/"+conv+"/messages?limit=1", alice, nil).json(t)
		older := s.do("GET", "/v1/conversations/"+conv+"/messages?limit=1&cursor="+hist["nextCursor"].(string), alice, nil).json(t)
		newest := hist["items"].([]any)[0].(map[string]any)
		oldest := older["items"].([]any)[0].(map[string]any)
		if newest["role"] != "assistant" || oldest["role"] != "user" || oldest["content"] != "hello" {
			t.Fatalf("history pages: %v then %v", newest, oldest)
		}
	})
}

func TestChatFairUse(t *testing.T) {
	fake := llmtest.New(t)
	fake.SetDefault(llmtest.Script{Tokens: []string{"slow"}, FirstTokenDelay: time.Second})
	s := newChatServer(t, store.SQLite, fake, func(c *app.Config) {
		c.Chat.MaxRunningPerUser = 1
		c.UserRateLimit = 3
	})
	token := s.signup("a@example.com")
	first, second := s.newConversation(token), s.newConversation(token)
	s.send(token, first, "one")
	r := s.do("POST", "/v1/conversations/"+second+"/messages", token, map[string]string{"content": "two"})
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != "rate_limited" {
		t.Fatalf("second running reply: %d %s", r.status, r.body)
	}
	// Every 429 says when to come back (openapi.json declares Retry-After on each).
	if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 1 {
		t.Fatalf("second running reply: Retry-After %q, want a positive number of seconds", r.header.Get("Retry-After"))
	}
	s.do("POST", "/v1/conversations/"+second+"/messages", token, map[string]string{"content": "three"})
	r = s.do("POST", "/v1/conversations/"+second+"/messages", token, map[string]string{"content": "four"})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("fourth request in a minute: %d %v %s", r.status, r.header, r.body)
	}
}

// When the model cannot name the conversation, the title falls back to the
// first words of the question.
func TestChatTitleFallback(t *testing.T) {
	fake := llmtest.New(t)
	fake.Enqueue(llmtest.Script{Tokens: []string{"Sunny."}})
	fake.SetDefault(llmtest.Script{Status: 500, ErrorMessage: "no"})
	s := newChatServer(t, store.SQLite, fake, nil)
	token := s.signup("a@example.com")
	conv := s.newConversation(token)
	s.waitFinal(token, s.send(token, conv, "Tell me about the weather in Lisbon today please"))
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if title := s.do("GET", "/v1/conversations/"+conv, token, nil).json(t)["title"]; title != "" {
			if title != "Tell me about the weather in" {
				t.Fatalf("title = %q", title)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no title")
}

// TestChatCountsPromptTokens: prompts of digits, emoji and CJK, which real
// tokenizers split into about one token per byte (a 3-bytes-per-token guess
// sees a third of them), are measured with the model server's tokenizer
// (vLLM's chat form, llama.cpp's content form) or, when it has none, bounded
// by their bytes. So a message over a small model's context is refused
// before anything is sent, a long conversation is trimmed to what fits in
// one request, and the credit hold covers what the reply really costs.
func TestChatCountsPromptTokens(t *testing.T) {
	tokenizers := map[string]llmtest.Tokenizer{
		"vLLM tokenizer": llmtest.TokenizerVLLM, "llama.cpp tokenizer": llmtest.TokenizerLlamaCpp, "no tokenizer": llmtest.TokenizerNone,
	}
	// Each text of n tokens (llmtest's tokenizer, like SentencePiece with
	// byte fallback: one token per byte).
	texts := map[string]func(n int) string{
		"digits": func(n int) string { return strings.Repeat("7", n) },
		"emoji":  func(n int) string { return strings.Repeat("🙂", n/4) },
		"CJK":    func(n int) string { return strings.Repeat("語", n/3) },
	}
	const contextTokens, maxOutput = 2048, 64
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		for tname, tokenizer := range tokenizers {
			t.Run(tname, func(t *testing.T) {
				fake := llmtest.New(t)
				fake.SetTokenizer(tokenizer)
				fake.SetMaxModelLen(contextTokens)
				reply := strings.Split(strings.Repeat("x", 62), "")
				fake.SetDefault(llmtest.Script{Tokens: reply})
				s := newChatServer(t, dialect, fake, func(c *app.Config) {
					path := filepath.Join(t.TempDir(), "small.toml")
					content := fmt.Sprintf(`[[model]]
id = "test-model"
name = "Small Model"
base_url = %q
served_model_name = "test/small"
context_tokens = %d
max_output_tokens = %d
system_prompt = "You are a test model."
credits_per_1k_tokens = 100
first_token_timeout = "2s"
`, fake.BaseURL(), contextTokens, maxOutput)
					if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
						t.Fatal(err)
					}
					c.ModelsFile = path
					c.InitialCredits = 100_000
				})
				token := s.signup("a@example.com")
				// requestsWith returns the chat requests whose question was content.
				requestsWith := func(content string) []llmtest.RecordedRequest {
					var out []llmtest.RecordedRequest
					for _, r := range fake.Requests() {
						if n := len(r.Messages); n > 0 && r.Messages[n-1].Content == content {
							out = append(out, r)
						}
					}
					return out
				}
				promptTokens := func(r llmtest.RecordedRequest) int {
					msgs := make([]llm.Message, len(r.Messages))
					for i, m := range r.Messages {
						msgs[i] = llm.Message{Role: m.Role, Content: m.Content}
					}
					return llmtest.PromptTokens(msgs)
				}
				for kind, text := range texts {
					t.Run(kind, func(t *testing.T) {
						// 5,000 tokens on a 2,048-token model: refused, nothing sent.
						huge := text(5000)
						r := s.do("POST", "/v1/conversations/"+s.newConversation(token)+"/messages", token, map[string]string{"content": huge})
						if r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_request" {
							t.Errorf("send of 5,000 tokens: %d %.300s, want 400 invalid_request", r.status, r.body)
						}
						if got := requestsWith(huge); len(got) != 0 {
							t.Errorf("a prompt over the context was sent upstream %d times", len(got))
						}

						// 1,900 tokens: the hold covers prompt and reply, and the reply pays them.
						long := text(1900)
						msgID := s.send(token, s.newConversation(token), long)
						m := s.waitFinal(token, msgID)
						sent := requestsWith(long)
						if m["status"] != "complete" || len(sent) != 1 {
							t.Fatalf("reply = %v after %d upstream requests", m, len(sent))
						}
						real := promptTokens(sent[0]) + len(reply)
						want := int64(math.Ceil(float64(real) * 100 / 1000))
						if got := int64(m["creditsCharged"].(float64)); got != want {
							t.Errorf("charged %d credits, want %d (%d real tokens)", got, want, real)
						}
						var held int64
						if err := s.app.DB().QueryRowContext(t.Context(), `SELECT r.amount FROM credit_reservations r
							JOIN messages m ON m.reservation_id = r.id WHERE m.id = $1`, msgID).Scan(&held); err != nil {
							t.Fatal(err)
						}
						if held < want {
							t.Errorf("held %d credits for a reply that costs %d", held, want)
						}

						// A conversation longer than the context: trimmed to what
						// fits, in one request, keeping the newest messages.
						conv := s.newConversation(token)
						for i := range 3 {
							s.waitFinal(token, s.send(token, conv, fmt.Sprint(i)+text(700)))
						}
						question := "3" + text(700)
						if m := s.waitFinal(token, s.send(token, conv, question)); m["status"] != "complete" {
							t.Fatalf("reply in a long conversation = %v", m)
						}
						sent = requestsWith(question)
						if len(sent) != 1 {
							t.Fatalf("%d upstream requests for one reply, want 1 (no context error)", len(sent))
						}
						if n := promptTokens(sent[0]); n+sent[0].MaxTokens > contextTokens {
							t.Errorf("sent %d prompt + %d output tokens to a %d-token model", n, sent[0].MaxTokens, contextTokens)
						}
						if got := len(sent[0].Messages); got < 4 {
							t.Errorf("sent %d messages, want the system prompt and at least the last exchange", got)
						}
						if got := len(sent[0].Messages); got >= 1+7 {
							t.Errorf("sent all %d messages: nothing was trimmed", got)
						}
					})
				}
				wantAuditClean(t, s)
			})
		}
	})
}
