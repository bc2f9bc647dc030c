package api_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"luna/internal/app"
	"luna/internal/imagegen/imagegentest"
	"luna/internal/llm/llmtest"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// entries reads every page of the user's usage history with the given
// page size, newest first.
func (s *testServer) entries(token string, limit int) []map[string]any {
	s.t.Helper()
	var all []map[string]any
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			s.t.Fatal("usage history does not end")
		}
		q := url.Values{"limit": {fmt.Sprint(limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		r := s.do("GET", "/v1/credits/entries?"+q.Encode(), token, nil)
		if r.status != http.StatusOK {
			s.t.Fatalf("GET /v1/credits/entries: %d %s", r.status, r.body)
		}
		page := r.json(s.t)
		items := page["items"].([]any)
		if len(items) > limit {
			s.t.Fatalf("page of %d entries, asked for %d", len(items), limit)
		}
		for _, it := range items {
			all = append(all, it.(map[string]any))
		}
		next, _ := page["nextCursor"].(string)
		if next == "" {
			if page["nextCursor"] != nil {
				s.t.Fatalf("nextCursor %v: want a cursor or null", page["nextCursor"])
			}
			return all
		}
		cursor = next
	}
}

func TestUsageHistory(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.SetDefault(llmtest.Script{Tokens: []string{"Hi", " there"}, PromptTokens: 20})
		comfy := imagegentest.NewComfyUI(t)
		s := newChatServer(t, dialect, fake, func(c *app.Config) {
			c.Images.Backend, c.Images.ComfyUIURL = "comfyui", comfy.URL
			fastImages(c)
		})
		token := s.signup("a@example.com")
		other := s.signup("b@example.com")

		// A new account's history: the sign-up grant.
		got := s.entries(token, 10)
		if len(got) != 1 || got[0]["kind"] != "grant" || got[0]["amount"] != 1000.0 || got[0]["for"].(map[string]any)["type"] != "signup" {
			t.Fatalf("new account's history = %v", got)
		}

		conv := s.newConversation(token)
		if r := s.do("PATCH", "/v1/conversations/"+conv, token, map[string]string{"title": "Usage"}); r.status != http.StatusOK {
			t.Fatalf("rename: %d %s", r.status, r.body)
		}
		var replies []string
		for i := range 3 {
			id := s.send(token, conv, fmt.Sprintf("question %d", i))
			if m := s.waitFinal(token, id); m["status"] != "complete" {
				t.Fatalf("reply = %v", m)
			}
			replies = append(replies, id)
		}
		r := s.createImage(token, map[string]any{"prompt": "a fox", "resolution": 512})
		if r.status != http.StatusAccepted {
			t.Fatalf("create image: %d %s", r.status, r.body)
		}
		imageID := r.json(t)["id"].(string)
		if job := s.waitImage(token, imageID); job["status"] != "completed" {
			t.Fatalf("image = %v", job)
		}

		// Pages of 2 give the same entries as one big page, newest first,
		// none repeated or skipped.
		all := s.entries(token, 100)
		paged := s.entries(token, 2)
		if len(all) != len(paged) {
			t.Fatalf("%d entries in one page, %d in pages of 2", len(all), len(paged))
		}
		for i := range all {
			if all[i]["id"] != paged[i]["id"] {
				t.Fatalf("entry %d: %v in one page, %v in pages of 2", i, all[i]["id"], paged[i]["id"])
			}
			if i > 0 && !before(t, all[i], all[i-1]) {
				t.Fatalf("entries not newest first: %v then %v", all[i-1], all[i])
			}
		}
		// grant + (reserve + capture) per reply + (reserve + capture) for the image.
		if want := 1 + 2*len(replies) + 2; len(all) != want {
			t.Fatalf("%d entries, want %d: %v", len(all), want, all)
		}
		var balance, reserved float64
		seen := map[string]map[string]bool{} // message or image id → kinds
		for _, e := range all {
			balance += e["amount"].(float64)
			reserved += e["reservedDelta"].(float64)
			ref := e["for"].(map[string]any)
			if _, err := time.Parse(time.RFC3339Nano, e["createdAt"].(string)); err != nil {
				t.Fatalf("createdAt of %v: %v", e, err)
			}
			switch ref["type"] {
			case "message":
				if ref["conversationId"] != conv || ref["conversationTitle"] != "Usage" || ref["imageId"] != nil {
					t.Fatalf("reply entry = %v", e)
				}
				add(seen, ref["messageId"].(string), e["kind"].(string))
			case "image":
				if ref["imageId"] != imageID || ref["messageId"] != nil || ref["conversationId"] != nil || ref["conversationTitle"] != nil {
					t.Fatalf("image entry = %v", e)
				}
				add(seen, imageID, e["kind"].(string))
			case "signup":
			default:
				t.Fatalf("unexpected entry %v", e)
			}
		}
		for _, id := range append(replies, imageID) {
			if !seen[id]["reserve"] || !seen[id]["capture"] {
				t.Fatalf("entries of %s: %v", id, seen[id])
			}
		}
		// The entries add up to the balance.
		c := s.credits(token)
		if balance != c["balance"] || reserved != c["reserved"] {
			t.Fatalf("entries sum to balance %v reserved %v; credits %v", balance, reserved, c)
		}

		// Another user sees only their own grant.
		if theirs := s.entries(other, 100); len(theirs) != 1 || theirs[0]["kind"] != "grant" {
			t.Fatalf("other user's history = %v", theirs)
		}

		// Bad input: 400 in the error shape, never a 500.
		cursorOf := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
		for _, q := range []string{
			"limit=0", "limit=101", "limit=-1", "limit=abc", "limit=1e3",
			"cursor=" + url.QueryEscape("not a cursor"), "cursor=%25%25", "cursor=" + cursorOf("123|abc"),
			"cursor=" + cursorOf("seq:-5"), "cursor=" + cursorOf("seq:0"), "cursor=" + cursorOf("seq:x5"), "cursor=" + cursorOf("5"),
			"cursor=" + cursorOf("seq:99999999999999999999999"), "cursor=" + cursorOf("seq:5\x00"), "cursor=" + cursorOf("|"),
			"cursor=" + cursorOf("1767225600123|019ad2c4-5c1e-7b3a-9f00-2d1c0b4e8a11"), // a conversation list's cursor
		} {
			r := s.do("GET", "/v1/credits/entries?"+q, token, nil)
			if r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_request" {
				t.Errorf("?%s: %d %s", q, r.status, r.body)
			}
		}
		if r := s.do("GET", "/v1/credits/entries", "", nil); r.status != http.StatusUnauthorized {
			t.Errorf("without a token: %d", r.status)
		}
	})
}

func add(m map[string]map[string]bool, id, kind string) {
	if m[id] == nil {
		m[id] = map[string]bool{}
	}
	m[id][kind] = true
}

// before reports whether entry a is older than entry b (by time, then id).
func before(t *testing.T, a, b map[string]any) bool {
	t.Helper()
	ta, _ := time.Parse(time.RFC3339Nano, a["createdAt"].(string))
	tb, _ := time.Parse(time.RFC3339Nano, b["createdAt"].(string))
	return !ta.After(tb) && a["id"] != b["id"]
}

func TestDeleteConversation(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.SetDefault(llmtest.Script{Tokens: []string{"Hi", " there"}, PromptTokens: 20})
		comfy := imagegentest.NewComfyUI(t)
		s := newChatServer(t, dialect, fake, func(c *app.Config) {
			c.Images.Backend, c.Images.ComfyUIURL = "comfyui", comfy.URL
			fastImages(c)
		})
		token := s.signup("a@example.com")
		other := s.signup("b@example.com")
		events := s.openStream("/v1/events", token, "")

		conv := s.newConversation(token)
		keep := s.newConversation(token)
		reply := s.waitFinal(token, s.send(token, conv, "hello"))
		replyID := reply["id"].(string)
		userID := s.do("GET", "/v1/conversations/"+conv+"/messages", token, nil).json(t)["items"].([]any)[0].(map[string]any)["id"].(string)
		r := s.createImage(token, map[string]any{"prompt": "a fox", "resolution": 512, "conversationId": conv})
		if r.status != http.StatusAccepted {
			t.Fatalf("create image: %d %s", r.status, r.body)
		}
		imageID := r.json(t)["id"].(string)
		s.waitImage(token, imageID)
		entriesBefore := s.entries(token, 100)
		creditsBefore := s.credits(token)

		// Another user's delete answers like a missing conversation and
		// changes nothing.
		if r := s.do("DELETE", "/v1/conversations/"+conv, other, nil); r.status != http.StatusNotFound || r.errorCode(t) != "not_found" {
			t.Fatalf("other user's delete: %d %s", r.status, r.body)
		}
		for _, id := range []string{"", "nope", "00000000-0000-0000-0000-000000000000", strings.Repeat("x", 300), "%00", "..%2f..%2fv1%2fme"} {
			if r := s.do("DELETE", "/v1/conversations/"+id, token, nil); r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed {
				t.Errorf("DELETE /v1/conversations/%s: %d %s", id, r.status, r.body)
			}
		}
		if r := s.do("GET", "/v1/conversations/"+conv, token, nil); r.status != http.StatusOK {
			t.Fatalf("conversation gone after refused deletes: %d", r.status)
		}

		if r := s.do("DELETE", "/v1/conversations/"+conv, token, nil); r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		// Gone, with its messages; twice is 404.
		for _, path := range []string{"/v1/conversations/" + conv, "/v1/conversations/" + conv + "/messages",
			"/v1/messages/" + replyID, "/v1/messages/" + userID, "/v1/messages/" + replyID + "/stream"} {
			if r := s.do("GET", path, token, nil); r.status != http.StatusNotFound {
				t.Errorf("GET %s after delete: %d %s", path, r.status, r.body)
			}
		}
		if r := s.do("POST", "/v1/conversations/"+conv+"/messages", token, map[string]string{"content": "again"}); r.status != http.StatusNotFound {
			t.Errorf("send after delete: %d %s", r.status, r.body)
		}
		if r := s.do("DELETE", "/v1/conversations/"+conv, token, nil); r.status != http.StatusNotFound || r.errorCode(t) != "not_found" {
			t.Fatalf("second delete: %d %s", r.status, r.body)
		}
		list := s.do("GET", "/v1/conversations", token, nil).json(t)["items"].([]any)
		if len(list) != 1 || list[0].(map[string]any)["id"] != keep {
			t.Fatalf("conversations after delete = %v", list)
		}
		// The image stays in the gallery, unlinked.
		job := s.do("GET", "/v1/images/"+imageID, token, nil)
		if job.status != http.StatusOK || job.json(t)["conversationId"] != nil || job.json(t)["status"] != "completed" {
			t.Fatalf("image after delete: %d %s", job.status, job.body)
		}
		// The ledger keeps every entry and its references (the conversation
		// has no title any more); credits unchanged.
		after := s.entries(token, 100)
		if len(after) != len(entriesBefore) {
			t.Fatalf("ledger changed by the delete:\nbefore %v\nafter  %v", entriesBefore, after)
		}
		for i, e := range after {
			ref, refBefore := e["for"].(map[string]any), entriesBefore[i]["for"].(map[string]any)
			if ref["type"] == "message" && (refBefore["conversationTitle"] == nil || ref["conversationTitle"] != nil || ref["conversationId"] != conv) {
				t.Fatalf("reply entry before the delete %v, after %v", entriesBefore[i], e)
			}
			delete(ref, "conversationTitle")
			delete(refBefore, "conversationTitle")
			if fmt.Sprint(e) != fmt.Sprint(entriesBefore[i]) {
				t.Fatalf("entry changed by the delete: before %v, after %v", entriesBefore[i], e)
			}
		}
		if c := s.credits(token); fmt.Sprint(c) != fmt.Sprint(creditsBefore) {
			t.Fatalf("credits %v, before %v", c, creditsBefore)
		}
		// A new image can no longer name the deleted conversation.
		if r := s.createImage(token, map[string]any{"prompt": "x", "resolution": 512, "conversationId": conv}); r.status != http.StatusNotFound {
			t.Fatalf("image for a deleted conversation: %d %s", r.status, r.body)
		}
		// Clients are told.
		waitEvent(t, events, "conversation.deleted", func(data map[string]any) bool { return data["id"] == conv })
		wantAuditClean(t, s)
	})
}

// waitEvent reads events until one named name whose data matches.
func waitEvent(t *testing.T, st *sseStream, name string, match func(map[string]any) bool) {
	t.Helper()
	found := make(chan bool, 1)
	go func() {
		for {
			ev, ok := st.next()
			if !ok {
				found <- false
				return
			}
			if ev.name == name && match(decode(t, ev.data)) {
				found <- true
				return
			}
		}
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatalf("stream ended before a %s event", name)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s event within 10s", name)
	}
}

// slowTokens is a long reply that takes a few seconds.
func slowTokens() llmtest.Script {
	var tokens []string
	for range 300 {
		tokens = append(tokens, " tok")
	}
	return llmtest.Script{Tokens: tokens, TokenDelay: 15 * time.Millisecond, PromptTokens: 30}
}

// readDeltas reads a reply stream until n deltas arrived.
func readDeltas(t *testing.T, st *sseStream, n int) {
	t.Helper()
	for deltas := 0; deltas < n; {
		ev, ok := st.next()
		if !ok {
			t.Fatal("stream ended early")
		}
		if ev.name == "delta" {
			deltas++
		}
	}
}

// wantStreamEnds reads a reply stream to its end, which must come soon,
// and returns its last terminal event (done, error or deleted).
func wantStreamEnds(t *testing.T, st *sseStream) (name string, data map[string]any) {
	t.Helper()
	type terminal struct {
		name string
		data map[string]any
	}
	ended := make(chan terminal, 1)
	go func() {
		var last terminal
		for {
			ev, ok := st.next()
			if !ok {
				ended <- last
				return
			}
			if ev.name == "done" || ev.name == "error" || ev.name == "deleted" {
				last = terminal{ev.name, decode(t, ev.data)}
			}
		}
	}()
	select {
	case last := <-ended:
		return last.name, last.data
	case <-time.After(15 * time.Second):
		t.Fatal("the stream of the deleted conversation's reply did not end")
		return "", nil
	}
}

func TestDeleteConversationWhileGenerating(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.Enqueue(slowTokens())
		fake.SetDefault(llmtest.Script{Tokens: []string{"T"}})
		s := newChatServer(t, dialect, fake, nil)
		token := s.signup("a@example.com")
		conv := s.newConversation(token)
		msgID := s.send(token, conv, "count")
		st := s.openStream("/v1/messages/"+msgID+"/stream", token, "")
		readDeltas(t, st, 5)

		if r := s.do("DELETE", "/v1/conversations/"+conv, token, nil); r.status != http.StatusNoContent {
			t.Fatalf("delete while generating: %d %s", r.status, r.body)
		}
		// Stopped as a user stop: the stream ends with its final event,
		// the generation is aborted, and what was generated is charged.
		name, final := wantStreamEnds(t, st)
		if name != "done" || final["status"] != "cancelled" {
			t.Fatalf("final event of the stopped reply = %s %v", name, final)
		}
		charged := final["creditsCharged"].(float64)
		if charged <= 0 || charged >= float64(cost(30+256)) {
			t.Fatalf("charged %v for a reply stopped mid-way", charged)
		}
		for deadline := time.Now().Add(5 * time.Second); fake.Aborted() == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the upstream request was not aborted")
			}
		}
		if r := s.do("GET", "/v1/messages/"+msgID, token, nil); r.status != http.StatusNotFound {
			t.Fatalf("message after delete: %d", r.status)
		}
		if c := s.credits(token); c["balance"] != 1000-charged || c["reserved"] != 0.0 {
			t.Fatalf("credits = %v, charged %v", c, charged)
		}
		// The ledger shows the charge, for the deleted message.
		var capture map[string]any
		for _, e := range s.entries(token, 100) {
			if ref := e["for"].(map[string]any); e["kind"] == "capture" && ref["messageId"] == msgID && ref["conversationId"] == conv {
				capture = e
			}
		}
		if capture == nil || capture["amount"] != -charged {
			t.Fatalf("capture entry of the deleted reply = %v", capture)
		}
		wantAuditClean(t, s)
	})
}

// Two instances on one PostgreSQL: a reply generated by A and streamed
// through B; the conversation is deleted through B. A stops the reply
// (settled as a user stop), B's stream ends, and both instances' event
// streams get conversation.deleted.
func TestDeleteConversationAcrossInstances(t *testing.T) {
	fake := llmtest.New(t)
	fake.Enqueue(slowTokens())
	fake.SetDefault(llmtest.Script{Tokens: []string{"T"}})
	dbURL := storetest.URL(t, store.Postgres)
	a := newChatServer(t, store.Postgres, fake, func(c *app.Config) { c.DatabaseURL = dbURL })
	b := newChatServer(t, store.Postgres, fake, func(c *app.Config) { c.DatabaseURL = dbURL })

	token := a.signup("a@example.com")
	eventsA := a.openStream("/v1/events", token, "")
	eventsB := b.openStream("/v1/events", token, "")
	conv := a.newConversation(token)
	msgID := a.send(token, conv, "count")
	streamB := b.openStream("/v1/messages/"+msgID+"/stream", token, "")
	streamA := a.openStream("/v1/messages/"+msgID+"/stream", token, "")
	readDeltas(t, streamB, 3)

	if r := b.do("DELETE", "/v1/conversations/"+conv, token, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete through B: %d %s", r.status, r.body)
	}
	// A (generating) streams from memory: it sees the stop. B reads the
	// database: it sees the stop, or, when the delete was quicker than the
	// signal, that the conversation is gone.
	if name, final := wantStreamEnds(t, streamA); name != "done" || final["status"] != "cancelled" {
		t.Fatalf("A's stream: final event %s %v", name, final)
	}
	if name, final := wantStreamEnds(t, streamB); !(name == "done" && final["status"] == "cancelled") &&
		!(name == "deleted" && final["messageId"] == msgID) {
		t.Fatalf("B's stream: final event %s %v", name, final)
	}
	if r := a.do("GET", "/v1/messages/"+msgID, token, nil); r.status != http.StatusNotFound {
		t.Fatalf("message on A after delete: %d", r.status)
	}
	if r := b.do("GET", "/v1/messages/"+msgID+"/stream", token, nil); r.status != http.StatusNotFound {
		t.Fatalf("stream on B after delete: %d", r.status)
	}
	waitEvent(t, eventsA, "conversation.deleted", func(d map[string]any) bool { return d["id"] == conv })
	waitEvent(t, eventsB, "conversation.deleted", func(d map[string]any) bool { return d["id"] == conv })
	if c := a.credits(token); c["reserved"] != 0.0 || c["balance"].(float64) >= 1000 {
		t.Fatalf("credits = %v: want the stopped reply charged and nothing held", c)
	}
	wantAuditClean(t, a)
}

// Deleting a conversation while images are being made for it (and replies
// sent to it): every request gets a clear answer, never a 500, and
// nothing is left half done.
func TestDeleteConversationRaces(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.SetDefault(llmtest.Script{Tokens: []string{"Hi"}})
		comfy := imagegentest.NewComfyUI(t)
		s := newChatServer(t, dialect, fake, func(c *app.Config) {
			c.Images.Backend, c.Images.ComfyUIURL = "comfyui", comfy.URL
			c.InitialCredits = 100000
			fastImages(c)
		})
		token := s.signup("a@example.com")
		for range 15 {
			conv := s.newConversation(token)
			var wg sync.WaitGroup
			statuses := make(chan string, 3)
			run := func(name, method, path string, body any) {
				defer wg.Done()
				r := s.do(method, path, token, body)
				statuses <- fmt.Sprintf("%s %d %s", name, r.status, r.body)
			}
			wg.Add(3)
			go run("image", "POST", "/v1/images", map[string]any{"prompt": "x", "resolution": 512, "conversationId": conv})
			go run("send", "POST", "/v1/conversations/"+conv+"/messages", map[string]string{"content": "hi"})
			go run("delete", "DELETE", "/v1/conversations/"+conv, nil)
			wg.Wait()
			close(statuses)
			for st := range statuses {
				name, rest, _ := strings.Cut(st, " ")
				code := rest[:3]
				ok := map[string][]string{"image": {"202", "404", "429"}, "send": {"201", "404", "429"}, "delete": {"204", "409"}}[name]
				if !slices.Contains(ok, code) {
					t.Errorf("%s: %s", name, rest)
				}
			}
		}
		// Whatever won, every hold settles.
		for deadline := time.Now().Add(20 * time.Second); s.credits(token)["reserved"] != 0.0; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("credits still held: %v", s.credits(token))
			}
		}
		wantAuditClean(t, s)
	})
}
