package api_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"luna/internal/app"
	"luna/internal/llm/llmtest"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// act posts a per-message action and returns the response.
func (s *testServer) act(token, messageID, action string, body map[string]string) response {
	s.t.Helper()
	if body == nil {
		body = map[string]string{}
	}
	return s.do("POST", "/v1/messages/"+messageID+"/"+action, token, body)
}

// actionReply returns the assistant message of an action's answer.
func actionReply(t *testing.T, r response) map[string]any {
	t.Helper()
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		t.Fatalf("action: %d %s", r.status, r.body)
	}
	return r.json(t)["assistantMessage"].(map[string]any)
}

// shown returns the messages a conversation shows, oldest first.
func (s *testServer) shown(token, conv string) []map[string]any {
	s.t.Helper()
	r := s.do("GET", "/v1/conversations/"+conv+"/messages", token, nil)
	if r.status != http.StatusOK {
		s.t.Fatalf("list messages: %d %s", r.status, r.body)
	}
	var out []map[string]any
	for _, m := range r.json(s.t)["items"].([]any) {
		out = append(out, m.(map[string]any))
	}
	return out
}

// waitTitled waits for the conversation's title: the title request after
// the first reply goes to the fake too, and must not take a script
// enqueued for a later reply.
func (s *testServer) waitTitled(token, conv string) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r := s.do("GET", "/v1/conversations/"+conv, token, nil)
		if r.status == http.StatusOK && r.json(s.t)["title"] != "" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Fatalf("conversation %s has no title after 10s", conv)
}

// contents returns the messages' texts joined with " | ".
func contents(msgs []map[string]any) string {
	var parts []string
	for _, m := range msgs {
		parts = append(parts, fmt.Sprint(m["content"]))
	}
	return strings.Join(parts, " | ")
}

// chatRequests returns the fake's recorded requests that are replies (not
// title requests), in order.
func chatRequests(fake *llmtest.Fake) []llmtest.RecordedRequest {
	var out []llmtest.RecordedRequest
	for _, r := range fake.Requests() {
		if len(r.Messages) > 0 && r.Messages[0].Role == "system" {
			out = append(out, r)
		}
	}
	return out
}

func roles(r llmtest.RecordedRequest) string {
	var parts []string
	for _, m := range r.Messages[1:] {
		parts = append(parts, m.Role+":"+m.Content)
	}
	return strings.Join(parts, " / ")
}

func TestRegenerateKeepsVersionsAndHistoryFollowsTheShownOne(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.Enqueue(llmtest.Script{Tokens: []string{"One"}, PromptTokens: 20})
		fake.SetDefault(llmtest.Script{Tokens: []string{"Title"}, PromptTokens: 20})
		dbURL := storetest.URL(t, dialect)
		a := newChatServer(t, dialect, fake, func(c *app.Config) { c.DatabaseURL = dbURL })
		b := a // a second instance on PostgreSQL: actions work from any instance
		if dialect == store.Postgres {
			b = newChatServer(t, dialect, fake, func(c *app.Config) { c.DatabaseURL = dbURL })
		}
		token := a.signup("a@example.com")
		conv := a.newConversation(token)
		first := a.send(token, conv, "Question")
		a.waitFinal(token, first)
		a.waitTitled(token, conv)

		fake.Enqueue(llmtest.Script{Tokens: []string{"Tw", "o"}, TokenDelay: 20 * time.Millisecond, PromptTokens: 20})
		r := b.act(token, first, "regenerate", map[string]string{"clientRequestId": "regen-1"})
		if r.status != http.StatusCreated {
			t.Fatalf("regenerate: %d %s", r.status, r.body)
		}
		if r.json(t)["userMessage"] != nil {
			t.Fatalf("regenerate answered a user message: %s", r.body)
		}
		second := actionReply(t, r)
		id2 := second["id"].(string)
		if id2 == first || second["parentId"] == nil || second["versionIndex"] != 2.0 || second["versionCount"] != 2.0 {
			t.Fatalf("new version = %v", second)
		}
		// A retry with the same id is the same action.
		again := actionReply(t, b.act(token, first, "regenerate", map[string]string{"clientRequestId": "regen-1"}))
		if again["id"] != id2 {
			t.Fatalf("retried regenerate made %v, want %s", again["id"], id2)
		}
		// The new version streams from the other instance.
		st := a.openStream("/v1/messages/"+id2+"/stream", token, "")
		var text strings.Builder
		for done := false; !done; {
			ev, ok := st.next()
			if !ok {
				t.Fatal("stream ended before done")
			}
			switch ev.name {
			case "snapshot":
				text.WriteString(decode(t, ev.data)["content"].(string))
			case "delta":
				text.WriteString(decode(t, ev.data)["text"].(string))
			case "done", "error":
				done = true
			}
		}
		if text.String() != "Two" {
			t.Fatalf("streamed %q, want Two", text.String())
		}
		a.waitFinal(token, id2)
		msgs := a.shown(token, conv)
		if got := contents(msgs); got != "Question | Two" {
			t.Fatalf("shown = %q", got)
		}
		ids := msgs[1]["versionIds"].([]any)
		if len(ids) != 2 || ids[0] != first || ids[1] != id2 || msgs[1]["versionIndex"] != 2.0 {
			t.Fatalf("versions = %v", msgs[1])
		}
		// The regenerated reply was asked without the first version.
		reqs := chatRequests(fake)
		if got := roles(reqs[len(reqs)-1]); got != "user:Question" {
			t.Fatalf("regenerate sent %q", got)
		}

		// Page back to version 1: the history sent next uses it.
		sel := b.do("POST", "/v1/messages/"+first+"/select", token, nil)
		if sel.status != http.StatusOK {
			t.Fatalf("select: %d %s", sel.status, sel.body)
		}
		if got := contents(a.shown(token, conv)); got != "Question | One" {
			t.Fatalf("after select, shown = %q", got)
		}
		next := a.send(token, conv, "Next")
		a.waitFinal(token, next)
		reqs = chatRequests(fake)
		if got := roles(reqs[len(reqs)-1]); got != "user:Question / assistant:One / user:Next" {
			t.Fatalf("history sent = %q", got)
		}
		// Version 2 still leads to its own (empty) continuation.
		b.do("POST", "/v1/messages/"+id2+"/select", token, nil)
		if got := contents(a.shown(token, conv)); got != "Question | Two" {
			t.Fatalf("after selecting version 2, shown = %q", got)
		}
		// Each version was charged for itself; nothing is held.
		var charged float64
		for _, id := range []string{first, id2, next} {
			charged += a.message(token, id)["creditsCharged"].(float64)
		}
		if c := a.credits(token); c["balance"] != 1000-charged || c["reserved"] != 0.0 {
			t.Fatalf("credits = %v after charges of %v", c, charged)
		}
		wantAuditClean(t, a)
	})
}

func TestContinueAppendsToTheSameMessage(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.Enqueue(llmtest.Script{Tokens: []string{"Once", " upon"}, FinishReason: "length", PromptTokens: 20})
		fake.SetDefault(llmtest.Script{Tokens: []string{"Title"}, PromptTokens: 20})
		s := newChatServer(t, dialect, fake, nil)
		token := s.signup("a@example.com")
		conv := s.newConversation(token)
		id := s.send(token, conv, "Tell a story")
		m := s.waitFinal(token, id)
		if m["status"] != "complete" || m["finishReason"] != "length" {
			t.Fatalf("cut-off reply = %v", m)
		}
		firstCharge := m["creditsCharged"].(float64)
		s.waitTitled(token, conv)

		fake.Enqueue(llmtest.Script{Tokens: []string{" a", " time", "…"}, TokenDelay: 20 * time.Millisecond, PromptTokens: 25})
		r := s.act(token, id, "continue", map[string]string{"clientRequestId": "cont-1"})
		if r.status != http.StatusOK {
			t.Fatalf("continue: %d %s", r.status, r.body)
		}
		if got := actionReply(t, r); got["id"] != id || got["status"] != "pending" || got["content"] != "Once upon" {
			t.Fatalf("continued message = %v", got)
		}
		// Resume exactly where the client's text ends.
		st := s.openStream("/v1/messages/"+id+"/stream", token, strconv.Itoa(len("Once upon")))
		text := "Once upon"
		for done := false; !done; {
			ev, ok := st.next()
			if !ok {
				t.Fatal("stream ended before done")
			}
			switch ev.name {
			case "snapshot":
				t.Fatalf("resumed stream sent a snapshot: %s", ev.data)
			case "delta":
				text += decode(t, ev.data)["text"].(string)
				if ev.id != strconv.Itoa(len(text)) {
					t.Fatalf("delta id %s, want %d", ev.id, len(text))
				}
			case "done":
				done = true
			}
		}
		m = s.waitFinal(token, id)
		if text != "Once upon a time…" || m["content"] != text || m["status"] != "complete" || m["finishReason"] != "stop" {
			t.Fatalf("continued to %q: %v", text, m)
		}
		// The upstream continued the assistant message.
		reqs := chatRequests(fake)
		last := reqs[len(reqs)-1]
		if !last.ContinueFinalMessage || roles(last) != "user:Tell a story / assistant:Once upon" {
			t.Fatalf("continue request: continue=%v %q", last.ContinueFinalMessage, roles(last))
		}
		// Charged for this run only: its prompt and the three new tokens.
		if got, want := m["creditsCharged"].(float64), firstCharge+float64(cost(25+3)); got != want {
			t.Fatalf("charged %v in all, want %v", got, want)
		}
		if m["completionTokens"] != 5.0 {
			t.Fatalf("completion tokens %v, want 2+3", m["completionTokens"])
		}
		// A retry is the same action: nothing more runs or is charged.
		if again := actionReply(t, s.act(token, id, "continue", map[string]string{"clientRequestId": "cont-1"})); again["id"] != id || again["status"] != "complete" {
			t.Fatalf("retried continue = %v", again)
		}
		// Now it is complete: nothing to continue.
		if r := s.act(token, id, "continue", nil); r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_request" {
			t.Fatalf("continue a complete reply: %d %s", r.status, r.body)
		}
		if c := s.credits(token); c["balance"] != 1000-m["creditsCharged"].(float64) || c["reserved"] != 0.0 {
			t.Fatalf("credits = %v", c)
		}
		wantAuditClean(t, s)
	})
}

func TestContinueAStoppedReply(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.Enqueue(llmtest.Script{Tokens: []string{"a", "b", "c", "d", "e", "f", "g", "h"}, TokenDelay: time.Hour, PromptTokens: 20})
		fake.SetDefault(llmtest.Script{Tokens: []string{"Title"}, PromptTokens: 20})
		s := newChatServer(t, dialect, fake, nil)
		token := s.signup("a@example.com")
		id := s.send(token, s.newConversation(token), "Letters")
		st := s.openStream("/v1/messages/"+id+"/stream", token, "")
		// Wait for the first token (in the snapshot, or a delta).
		for {
			ev, ok := st.next()
			if !ok {
				t.Fatal("stream ended before the first token")
			}
			if ev.name == "delta" || (ev.name == "snapshot" && decode(t, ev.data)["content"] != "") {
				break
			}
		}
		st.close()
		if r := s.do("POST", "/v1/messages/"+id+"/cancel", token, nil); r.status != http.StatusOK || r.json(t)["status"] != "cancelled" {
			t.Fatalf("cancel: %d %s", r.status, r.body)
		}
		fake.Enqueue(llmtest.Script{Tokens: []string{"b", "c"}, PromptTokens: 22})
		actionReply(t, s.act(token, id, "continue", nil))
		m := s.waitFinal(token, id)
		if m["content"] != "abc" || m["status"] != "complete" {
			t.Fatalf("continued stopped reply = %v", m)
		}
		// The first complete reply names the conversation, from its question.
		s.waitTitled(token, m["conversationId"].(string))
		var titleAsk string
		for _, r := range fake.Requests() {
			if len(r.Messages) == 1 && strings.HasPrefix(r.Messages[0].Content, "Write a short title") {
				titleAsk = r.Messages[0].Content
			}
		}
		if !strings.Contains(titleAsk, "User: Letters\n") || !strings.Contains(titleAsk, "Assistant: abc") {
			t.Fatalf("title request %q", titleAsk)
		}
		wantAuditClean(t, s)
	})
}

func TestEditKeepsTheOldExchange(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.Enqueue(llmtest.Script{Tokens: []string{"Paris"}, PromptTokens: 20})
		fake.SetDefault(llmtest.Script{Tokens: []string{"Title"}, PromptTokens: 20})
		s := newChatServer(t, dialect, fake, nil)
		token := s.signup("a@example.com")
		conv := s.newConversation(token)
		a1 := s.send(token, conv, "Capital of France?")
		s.waitFinal(token, a1)
		s.waitTitled(token, conv)
		q1 := s.shown(token, conv)[0]["id"].(string)

		// Only the last question can be edited; a reply cannot.
		if r := s.act(token, a1, "edit", map[string]string{"content": "x"}); r.status != http.StatusBadRequest {
			t.Fatalf("edit a reply: %d %s", r.status, r.body)
		}
		for _, bad := range []string{"", "   ", strings.Repeat("x", 32_001)} {
			if r := s.act(token, q1, "edit", map[string]string{"content": bad}); r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_request" {
				t.Fatalf("edit to %d chars: %d %s", len(bad), r.status, r.body)
			}
		}

		fake.Enqueue(llmtest.Script{Tokens: []string{"Berlin"}, PromptTokens: 20})
		r := s.act(token, q1, "edit", map[string]string{"content": "Capital of Germany?", "clientRequestId": "edit-1"})
		if r.status != http.StatusCreated {
			t.Fatalf("edit: %d %s", r.status, r.body)
		}
		q2 := r.json(t)["userMessage"].(map[string]any)
		a2 := actionReply(t, r)
		if q2["content"] != "Capital of Germany?" || q2["versionIndex"] != 2.0 || q2["versionCount"] != 2.0 || a2["parentId"] != q2["id"] {
			t.Fatalf("edit answered %s", r.body)
		}
		again := s.act(token, q1, "edit", map[string]string{"content": "Capital of Germany?", "clientRequestId": "edit-1"})
		if again.json(t)["userMessage"].(map[string]any)["id"] != q2["id"] || actionReply(t, again)["id"] != a2["id"] {
			t.Fatalf("retried edit = %s", again.body)
		}
		s.waitFinal(token, a2["id"].(string))
		if got := contents(s.shown(token, conv)); got != "Capital of Germany? | Berlin" {
			t.Fatalf("shown = %q", got)
		}
		reqs := chatRequests(fake)
		if got := roles(reqs[len(reqs)-1]); got != "user:Capital of Germany?" {
			t.Fatalf("edit sent %q", got)
		}
		// The old exchange is an earlier version.
		if r := s.do("POST", "/v1/messages/"+q1+"/select", token, nil); r.status != http.StatusOK {
			t.Fatalf("select: %d %s", r.status, r.body)
		}
		if got := contents(s.shown(token, conv)); got != "Capital of France? | Paris" {
			t.Fatalf("old version shown = %q", got)
		}
		// Editing an earlier question (not the last one shown) is refused.
		a3 := s.send(token, conv, "And Spain?")
		s.waitFinal(token, a3)
		if r := s.act(token, q1, "edit", map[string]string{"content": "y"}); r.status != http.StatusBadRequest {
			t.Fatalf("edit an earlier question: %d %s", r.status, r.body)
		}
		wantAuditClean(t, s)
	})
}

func TestMessageActionRules(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.Enqueue(llmtest.Script{Tokens: []string{"Done"}, PromptTokens: 20})
		fake.SetDefault(llmtest.Script{Tokens: []string{"Title"}, PromptTokens: 20})
		s := newChatServer(t, dialect, fake, nil)
		token, other := s.signup("a@example.com"), s.signup("b@example.com")
		conv := s.newConversation(token)
		first := s.send(token, conv, "Hi")
		s.waitFinal(token, first)
		s.waitTitled(token, conv)
		q := s.shown(token, conv)[0]["id"].(string)

		unknown := "0190a8f0-0000-7000-8000-000000000000"
		for _, tc := range []struct {
			name, token, id, action string
			body                    map[string]string
			status                  int
			code                    string
		}{
			{"unknown id", token, unknown, "regenerate", nil, 404, "not_found"},
			{"not a uuid", token, "nope", "continue", nil, 404, "not_found"},
			{"another user's reply", other, first, "regenerate", nil, 404, "not_found"},
			{"another user's question", other, q, "edit", map[string]string{"content": "x"}, 404, "not_found"},
			{"another user's select", other, first, "select", nil, 404, "not_found"},
			{"continue a complete reply", token, first, "continue", nil, 400, "invalid_request"},
			{"regenerate a question", token, q, "regenerate", nil, 400, "invalid_request"},
			{"content on regenerate", token, first, "regenerate", map[string]string{"content": "x"}, 400, "invalid_request"},
			{"unknown field", token, first, "regenerate", map[string]string{"foo": "x"}, 400, "invalid_request"},
			{"long request id", token, first, "regenerate", map[string]string{"clientRequestId": strings.Repeat("k", 101)}, 400, "invalid_request"},
		} {
			path := "/v1/messages/" + tc.id + "/" + tc.action
			var body any = tc.body
			if tc.body == nil {
				body = map[string]string{}
			}
			r := s.do("POST", path, tc.token, body)
			if r.status != tc.status || r.errorCode(t) != tc.code {
				t.Errorf("%s: %d %s, want %d %s", tc.name, r.status, r.body, tc.status, tc.code)
			}
		}

		// While a reply generates: regenerate, continue, edit and select are 409.
		fake.Enqueue(llmtest.Script{Tokens: []string{"slow", "er"}, TokenDelay: time.Hour, PromptTokens: 20})
		running := actionReply(t, s.act(token, first, "regenerate", map[string]string{"clientRequestId": "r1"}))
		id := running["id"].(string)
		for _, tc := range []struct{ id, action string }{{id, "regenerate"}, {id, "continue"}, {q, "edit"}, {first, "select"}} {
			body := map[string]string{}
			if tc.action == "edit" {
				body["content"] = "x"
			}
			if r := s.act(token, tc.id, tc.action, body); r.status != http.StatusConflict || r.errorCode(t) != "generation_in_progress" {
				t.Errorf("%s while generating: %d %s", tc.action, r.status, r.body)
			}
		}
		// Its retry is not a conflict: it is the same action.
		if again := actionReply(t, s.act(token, first, "regenerate", map[string]string{"clientRequestId": "r1"})); again["id"] != id {
			t.Fatalf("retry while generating = %v", again)
		}
		// The same request id for another action is a conflict.
		if r := s.act(token, q, "edit", map[string]string{"content": "x", "clientRequestId": "r1"}); r.status != http.StatusConflict {
			t.Fatalf("reused request id: %d %s", r.status, r.body)
		}
		if r := s.do("POST", "/v1/messages/"+id+"/cancel", token, nil); r.status != http.StatusOK {
			t.Fatalf("cancel: %d %s", r.status, r.body)
		}
		// The old version is no longer the last reply shown.
		if r := s.act(token, first, "regenerate", nil); r.status != http.StatusBadRequest {
			t.Fatalf("regenerate an earlier version: %d %s", r.status, r.body)
		}
		// A conversation with versions and recorded actions can be deleted;
		// its request ids go with it.
		if r := s.do("DELETE", "/v1/conversations/"+conv, token, nil); r.status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		if r := s.act(token, first, "regenerate", map[string]string{"clientRequestId": "r1"}); r.status != http.StatusNotFound {
			t.Fatalf("regenerate in a deleted conversation: %d %s", r.status, r.body)
		}
		wantAuditClean(t, s)
	})
}

func TestEstimateIsWhatSendingHolds(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.SetDefault(llmtest.Script{Tokens: []string{"Ok", "ay"}, TokenDelay: time.Hour, PromptTokens: 20})
		s := newChatServer(t, dialect, fake, func(c *app.Config) { c.InitialCredits = 200 })
		token, other := s.signup("a@example.com"), s.signup("b@example.com")
		draft := "How much will this cost?"

		r := s.do("POST", "/v1/estimate", token, map[string]string{"modelId": "test-model", "content": draft})
		if r.status != http.StatusOK {
			t.Fatalf("estimate: %d %s", r.status, r.body)
		}
		est := r.json(t)
		// 200 credits at 1 per token cannot pay the 256-token output budget.
		if est["enough"] != true || est["capped"] != true || est["credits"] != 200.0 || est["creditsAvailable"] != 200.0 {
			t.Fatalf("estimate = %v", est)
		}
		conv := s.newConversation(token)
		r = s.do("POST", "/v1/estimate", token, map[string]string{"conversationId": conv, "content": draft})
		if r.status != http.StatusOK || r.json(t)["credits"] != est["credits"] || r.json(t)["promptTokens"] != est["promptTokens"] {
			t.Fatalf("estimate for the new conversation: %d %s, want %v", r.status, r.body, est)
		}
		id := s.send(token, conv, draft)
		if c := s.credits(token); c["reserved"] != est["credits"] {
			t.Fatalf("send held %v, estimate said %v", c["reserved"], est["credits"])
		}
		if m := s.message(token, id); m["status"] == "complete" {
			t.Fatal("the reply should still be running")
		}
		// Nothing left: the estimate says so, and a send is refused with the
		// same figures.
		r = s.do("POST", "/v1/estimate", token, map[string]string{"modelId": "test-model", "content": draft})
		est = r.json(t)
		if est["enough"] != false || est["credits"] != 0.0 || est["creditsAvailable"] != 0.0 || est["creditsNeeded"].(float64) <= 0 {
			t.Fatalf("estimate without credits = %v", est)
		}
		conv2 := s.newConversation(token)
		r = s.do("POST", "/v1/conversations/"+conv2+"/messages", token, map[string]string{"content": draft})
		if r.status != http.StatusPaymentRequired {
			t.Fatalf("send without credits: %d %s", r.status, r.body)
		}
		e := r.json(t)["error"].(map[string]any)
		if e["code"] != "insufficient_credits" || e["creditsNeeded"] != est["creditsNeeded"] || e["creditsAvailable"] != 0.0 ||
			!strings.Contains(e["message"].(string), fmt.Sprint(est["creditsNeeded"])) {
			t.Fatalf("402 = %v, estimate %v", e, est)
		}

		// An image refused for credits says the same kind of figures.
		r = s.createImage(token, map[string]any{"prompt": "a lighthouse", "resolution": 512})
		if r.status != http.StatusPaymentRequired {
			t.Fatalf("image without credits: %d %s", r.status, r.body)
		}
		if e := r.json(t)["error"].(map[string]any); e["creditsNeeded"] != 50.0 || e["creditsAvailable"] != 0.0 {
			t.Fatalf("image 402 = %v", e)
		}

		for _, tc := range []struct {
			name   string
			token  string
			body   map[string]string
			status int
		}{
			{"neither", token, map[string]string{"content": "x"}, 400},
			{"both", token, map[string]string{"modelId": "test-model", "conversationId": conv, "content": "x"}, 400},
			{"unknown model", token, map[string]string{"modelId": "nope", "content": "x"}, 400},
			{"too long", token, map[string]string{"modelId": "test-model", "content": strings.Repeat("x", 32_001)}, 400},
			{"unknown field", token, map[string]string{"modelId": "test-model", "draft": "x"}, 400},
			{"another user's conversation", other, map[string]string{"conversationId": conv, "content": "x"}, 404},
			{"not a uuid", token, map[string]string{"conversationId": "../x", "content": "x"}, 404},
			{"unauthenticated", "", map[string]string{"modelId": "test-model"}, 401},
		} {
			if r := s.do("POST", "/v1/estimate", tc.token, tc.body); r.status != tc.status {
				t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
			}
		}
		if r := s.do("POST", "/v1/messages/"+id+"/cancel", token, nil); r.status != http.StatusOK {
			t.Fatalf("cancel: %d %s", r.status, r.body)
		}
		wantAuditClean(t, s)
	})
}

func TestSilentReplyEndsAtTheIdleLimit(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		// One token, then silence (the fake waits until the client hangs up).
		fake.Enqueue(llmtest.Script{Tokens: []string{"Thinking", " more"}, TokenDelay: time.Hour, PromptTokens: 20})
		fake.SetDefault(llmtest.Script{Tokens: []string{"Title"}})
		s := newChatServer(t, dialect, fake, func(c *app.Config) { c.Chat.ReplyIdleTimeout = 300 * time.Millisecond })
		token := s.signup("a@example.com")
		id := s.send(token, s.newConversation(token), "Hello?")
		m := s.waitFinal(token, id)
		e, _ := m["error"].(map[string]any)
		if m["status"] != "error" || m["content"] != "Thinking" || e == nil || !strings.Contains(e["message"].(string), "nothing arrived") {
			t.Fatalf("silent reply = %v", m)
		}
		if c := s.credits(token); c["balance"] != 1000.0 || c["reserved"] != 0.0 || m["creditsCharged"] != 0.0 {
			t.Fatalf("credits = %v, charged %v", c, m["creditsCharged"])
		}
		wantAuditClean(t, s)
	})
}

// Before the first token the idle limit is the wait of each attempt (the
// model sets no first-token timeout of its own): a model that never
// answers ends the reply as an error after the one retry.
func TestSilentModelBeforeTheFirstToken(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.SetDefault(llmtest.Script{Hang: true})
		s := newChatServer(t, dialect, fake, func(c *app.Config) {
			c.ModelsFile = modelsFile(t, fake.BaseURL(), "credits_per_1k_tokens = 1000")
			c.Chat.ReplyIdleTimeout = 300 * time.Millisecond
		})
		token := s.signup("a@example.com")
		id := s.send(token, s.newConversation(token), "Anyone there?")
		m := s.waitFinal(token, id)
		e, _ := m["error"].(map[string]any)
		if m["status"] != "error" || e == nil || !strings.Contains(e["message"].(string), "did not start answering within 300ms") {
			t.Fatalf("silent model = %v", m)
		}
		if n := len(chatRequests(fake)); n != 2 {
			t.Fatalf("%d requests, want the first and one retry", n)
		}
		if c := s.credits(token); c["balance"] != 1000.0 || c["reserved"] != 0.0 {
			t.Fatalf("credits = %v", c)
		}
		wantAuditClean(t, s)
	})
}

// Concurrent retries of one action make one version; concurrent different
// actions on the same reply: one wins, the others get 409.
func TestConcurrentActionsMakeOneVersion(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.Enqueue(llmtest.Script{Tokens: []string{"One"}, PromptTokens: 20})
		fake.SetDefault(llmtest.Script{Tokens: []string{"Again"}, PromptTokens: 20})
		s := newChatServer(t, dialect, fake, nil)
		token := s.signup("a@example.com")
		conv := s.newConversation(token)
		first := s.send(token, conv, "Hi")
		s.waitFinal(token, first)
		s.waitTitled(token, conv)

		run := func(bodies []map[string]string) []response {
			out := make([]response, len(bodies))
			var wg sync.WaitGroup
			for i, body := range bodies {
				wg.Add(1)
				go func() {
					defer wg.Done()
					out[i] = s.do("POST", "/v1/messages/"+first+"/regenerate", token, body)
				}()
			}
			wg.Wait()
			return out
		}
		same := make([]map[string]string, 6)
		for i := range same {
			same[i] = map[string]string{"clientRequestId": "same"}
		}
		ids := map[any]bool{}
		for _, r := range run(same) {
			ids[actionReply(t, r)["id"]] = true
		}
		if len(ids) != 1 {
			t.Fatalf("retries made %d versions: %v", len(ids), ids)
		}
		for id := range ids {
			s.waitFinal(token, id.(string))
		}
		if got := len(s.shown(token, conv)[1]["versionIds"].([]any)); got != 2 {
			t.Fatalf("%d versions after the retries, want 2", got)
		}

		// Now the new version is the last reply: act on it, six times at
		// once; the one that wins is still generating when the others check.
		first = s.shown(token, conv)[1]["id"].(string)
		fake.Enqueue(llmtest.Script{Tokens: []string{"Slow", "ly"}, TokenDelay: time.Hour, PromptTokens: 20})
		different := make([]map[string]string, 6)
		for i := range different {
			different[i] = map[string]string{"clientRequestId": fmt.Sprintf("r%d", i)}
		}
		created, conflicts := 0, 0
		for _, r := range run(different) {
			switch r.status {
			case http.StatusCreated:
				created++
				id := r.json(t)["assistantMessage"].(map[string]any)["id"].(string)
				if c := s.do("POST", "/v1/messages/"+id+"/cancel", token, nil); c.status != http.StatusOK {
					t.Fatalf("cancel: %d %s", c.status, c.body)
				}
			case http.StatusConflict:
				conflicts++
			default:
				t.Errorf("concurrent regenerate: %d %s", r.status, r.body)
			}
		}
		if created != 1 || conflicts != 5 {
			t.Fatalf("%d created, %d conflicts; want 1 and 5", created, conflicts)
		}
		if c := s.credits(token); c["reserved"] != 0.0 {
			t.Fatalf("credits = %v", c)
		}
		wantAuditClean(t, s)
	})
}
