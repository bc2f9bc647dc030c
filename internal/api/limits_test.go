package api_test

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"luna/internal/app"
	"luna/internal/credits"
	"luna/internal/imagegen/imagegentest"
	"luna/internal/llm/llmtest"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// Concurrent retries of one send all get the original pair, whatever the
// interleaving: none is refused as generation_in_progress or rate_limited,
// and none counts against the user's limits a second time. The same id
// with other content is a conflict.
func TestSendRetriesAreIdempotentUnderConcurrency(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.SetDefault(llmtest.Script{Tokens: []string{"slow"}, FirstTokenDelay: 300 * time.Millisecond})
		s := newChatServer(t, dialect, fake, func(c *app.Config) {
			c.Chat.MaxRunningPerUser = 1
			c.UserRateLimit = 4 // two conversations, the send, one more send
		})
		token := s.signup("a@example.com")
		conv, other := s.newConversation(token), s.newConversation(token)
		path := "/v1/conversations/" + conv + "/messages"
		body := map[string]string{"content": "hello", "clientMessageId": "c-1"}

		const retries = 8
		answers := make([]response, retries)
		var wg sync.WaitGroup
		for i := range retries {
			wg.Go(func() { answers[i] = s.do("POST", path, token, body) })
		}
		wg.Wait()
		pair := func(r response) (string, string) {
			v := r.json(t)
			return v["userMessage"].(map[string]any)["id"].(string), v["assistantMessage"].(map[string]any)["id"].(string)
		}
		var userID, replyID string
		for i, r := range answers {
			if r.status != http.StatusCreated {
				t.Fatalf("retry %d: %d %s", i, r.status, r.body)
			}
			u, a := pair(r)
			if i == 0 {
				userID, replyID = u, a
			} else if u != userID || a != replyID {
				t.Fatalf("retry %d got (%s, %s), retry 0 got (%s, %s)", i, u, a, userID, replyID)
			}
		}

		// The same id with another body is refused, and changes nothing.
		r := s.do("POST", path, token, map[string]string{"content": "something else", "clientMessageId": "c-1"})
		if r.status != http.StatusConflict || r.errorCode(t) != "idempotency_conflict" {
			t.Fatalf("same id, other content: %d %s", r.status, r.body)
		}
		s.waitFinal(token, replyID)

		// After the reply, a retry still gets the same pair.
		if r := s.do("POST", path, token, body); r.status != http.StatusCreated {
			t.Fatalf("retry after the reply: %d %s", r.status, r.body)
		} else if u, a := pair(r); u != userID || a != replyID {
			t.Fatalf("retry after the reply got (%s, %s)", u, a)
		}
		list := s.do("GET", path, token, nil).json(t)["items"].([]any)
		if len(list) != 2 {
			t.Fatalf("conversation has %d messages, want 2: %v", len(list), list)
		}

		// The retries were not counted: one more send fits the rate, the
		// next does not.
		s.send(token, other, "one more")
		r = s.do("POST", "/v1/conversations/"+other+"/messages", token, map[string]string{"content": "too many"})
		if r.status != http.StatusTooManyRequests || r.errorCode(t) != "rate_limited" || r.header.Get("Retry-After") == "" {
			t.Fatalf("fifth request in a minute: %d %v %s", r.status, r.header, r.body)
		}
		wantAuditClean(t, s)
	})
}

// The image path has the same contract with clientRequestId.
func TestImageRetriesAreIdempotentUnderConcurrency(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := imagegentest.NewComfyUI(t)
		fake.SetFinishAfterPolls(5)
		s := newComfyServer(t, dialect, fake, func(c *app.Config) {
			c.Images.Jobs.MaxQueuedPerUser = 1
			c.UserRateLimit = 2 // the image and one more
		})
		token := s.signup("a@example.com")
		body := map[string]any{"prompt": "a dog", "resolution": 512, "clientRequestId": "r-1"}

		const retries = 8
		answers := make([]response, retries)
		var wg sync.WaitGroup
		for i := range retries {
			wg.Go(func() { answers[i] = s.createImage(token, body) })
		}
		wg.Wait()
		var jobID string
		for i, r := range answers {
			if r.status != http.StatusAccepted {
				t.Fatalf("retry %d: %d %s", i, r.status, r.body)
			}
			id := r.json(t)["id"].(string)
			if jobID == "" {
				jobID = id
			} else if id != jobID {
				t.Fatalf("retry %d made job %s, retry 0 made %s", i, id, jobID)
			}
		}
		for name, other := range map[string]map[string]any{
			"prompt":       {"prompt": "a cat", "resolution": 512, "clientRequestId": "r-1"},
			"resolution":   {"prompt": "a dog", "resolution": 768, "clientRequestId": "r-1"},
			"conversation": {"prompt": "a dog", "resolution": 512, "clientRequestId": "r-1", "conversationId": "c"},
		} {
			if r := s.createImage(token, other); r.status != http.StatusConflict || r.errorCode(t) != "idempotency_conflict" {
				t.Errorf("same id, other %s: %d %s", name, r.status, r.body)
			}
		}
		if job := s.waitImage(token, jobID); job["status"] != "completed" {
			t.Fatalf("job = %v", job)
		}
		if r := s.createImage(token, body); r.status != http.StatusAccepted || r.json(t)["id"] != jobID {
			t.Fatalf("retry after completion: %d %s", r.status, r.body)
		}
		if c := s.credits(token); c["balance"] != 950.0 || c["reserved"] != 0.0 {
			t.Fatalf("credits = %v, want one charge", c)
		}
		// The retries were not counted against the rate.
		if r := s.createImage(token, map[string]any{"prompt": "a bird", "resolution": 512}); r.status != http.StatusAccepted {
			t.Fatalf("second image: %d %s", r.status, r.body)
		}
	})
}

// Three instances on one PostgreSQL allow the configured limits in total,
// not three times them.
func TestRateLimitsHoldAcrossInstances(t *testing.T) {
	dbURL := storetest.URL(t, store.Postgres)
	fake := llmtest.New(t)
	var servers []*testServer
	for range 3 {
		servers = append(servers, newChatServer(t, store.Postgres, fake, func(c *app.Config) {
			c.DatabaseURL = dbURL
			c.AuthRateLimit = 4
			c.UserRateLimit = 5
		}))
	}
	token := servers[0].signup("a@example.com") // the first of four sign-in attempts

	count := func(statuses []int) map[int]int {
		m := map[int]int{}
		for _, st := range statuses {
			m[st]++
		}
		return m
	}
	var logins []int
	for i := range 9 {
		r := servers[i%3].do("POST", "/v1/auth/login", "", map[string]string{"email": "a@example.com", "password": "wrong-password"})
		if r.status == http.StatusTooManyRequests && r.header.Get("Retry-After") == "" {
			t.Fatalf("429 without Retry-After: %v", r.header)
		}
		logins = append(logins, r.status)
	}
	if got := count(logins); got[http.StatusUnauthorized] != 3 || got[http.StatusTooManyRequests] != 6 {
		t.Fatalf("login statuses = %v (%v), want 3 × 401 then 429", got, logins)
	}

	var creates []int
	for i := range 9 {
		r := servers[i%3].do("POST", "/v1/conversations", token, map[string]string{"modelId": "test-model"})
		if r.status == http.StatusTooManyRequests && r.header.Get("Retry-After") == "" {
			t.Fatalf("429 without Retry-After: %v", r.header)
		}
		creates = append(creates, r.status)
	}
	if got := count(creates); got[http.StatusCreated] != 5 || got[http.StatusTooManyRequests] != 4 {
		t.Fatalf("create statuses = %v (%v), want 5 × 201 then 429", got, creates)
	}
}

// Creating conversations counts toward the per-user request rate, with
// sends and images.
func TestCreatingConversationsIsRateLimited(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		s := newChatServer(t, dialect, fake, func(c *app.Config) { c.UserRateLimit = 3 })
		token := s.signup("a@example.com")
		conv := s.newConversation(token)
		s.newConversation(token)
		s.waitFinal(token, s.send(token, conv, "hi"))
		r := s.do("POST", "/v1/conversations", token, map[string]string{"modelId": "test-model"})
		if r.status != http.StatusTooManyRequests || r.errorCode(t) != "rate_limited" {
			t.Fatalf("fourth request in a minute: %d %s", r.status, r.body)
		}
		if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 1 || secs > 60 {
			t.Fatalf("Retry-After = %q", r.header.Get("Retry-After"))
		}
		// Another user has a budget of their own.
		s.newConversation(s.signup("b@example.com"))
	})
}

// inFlight is a reverse proxy in front of a fake model server that records
// how many chat-completions requests were ever in flight at once before
// their first body byte (the fake's FirstTokenDelay). Only that phase is counted: a client
// that has read [DONE] lets go of the request while the proxy may still be
// finishing its copy.
type inFlight struct {
	mu       sync.Mutex
	now, max int
	errs     []string // requests the proxy could not forward
}

// firstWrite calls done at the first body write (or never).
type firstWrite struct {
	http.ResponseWriter
	once sync.Once
	done func()
}

func (w *firstWrite) Write(b []byte) (int, error) {
	w.once.Do(w.done)
	return w.ResponseWriter.Write(b)
}

func (w *firstWrite) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (f *inFlight) proxy(t *testing.T, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	// Streams are cut at cleanup; what the proxy logs is kept for a failure.
	rp.ErrorLog = log.New(writerFunc(func(b []byte) (int, error) {
		f.mu.Lock()
		f.errs = append(f.errs, strings.TrimSpace(string(b)))
		f.mu.Unlock()
		return len(b), nil
	}), "", 0)
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		f.mu.Lock()
		f.errs = append(f.errs, fmt.Sprintf("%s %s: %v", r.Method, r.URL.Path, err))
		f.mu.Unlock()
		w.WriteHeader(http.StatusBadGateway)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The body is read whole before it is forwarded. Forwarded as it
		// came, the transport reads it once more after the fake has
		// answered, finds it closed by this server, and cuts the stream
		// (the race the benchmark's relay met: cmd/lunabench/relay.go).
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		if r.URL.Path != "/v1/chat/completions" { // e.g. POST /tokenize
			rp.ServeHTTP(w, r)
			return
		}
		f.mu.Lock()
		f.now++
		f.max = max(f.max, f.now)
		f.mu.Unlock()
		fw := &firstWrite{ResponseWriter: w, done: func() {
			f.mu.Lock()
			f.now--
			f.mu.Unlock()
		}}
		defer fw.once.Do(fw.done)
		rp.ServeHTTP(fw, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// writerFunc is an io.Writer made of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func (f *inFlight) peak() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.max
}

// A title request takes one of the model's upstream slots like a reply:
// with a cap of one, a title and a reply never run upstream at once.
func TestTitleRequestsCountTowardTheModelCap(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.SetDefault(llmtest.Script{Tokens: []string{"Sunny", " day"}, FirstTokenDelay: 600 * time.Millisecond})
		var flight inFlight
		base := flight.proxy(t, fake.BaseURL()[:len(fake.BaseURL())-len("/v1")]) + "/v1"
		s := newTestServer(t, dialect, func(c *app.Config) {
			c.ModelsFile = modelsFile(t, base, testModelKeys)
			c.Chat = fastChat
			c.Chat.MaxRunningPerModel = 1
			c.Chat.TitleTimeout = time.Minute // a title waiting for the slot must not fall back
		})
		token := s.signup("a@example.com")
		first, second := s.newConversation(token), s.newConversation(token)
		if m := s.waitFinal(token, s.send(token, first, "weather?")); m["status"] != "complete" {
			t.Fatalf("first reply = %v", m)
		}
		// The first conversation's title request starts now; a reply in the
		// second conversation must wait for it.
		if m := s.waitFinal(token, s.send(token, second, "and tomorrow?")); m["status"] != "complete" {
			t.Fatalf("second reply = %v", m)
		}
		deadline := time.Now().Add(time.Minute)
		for len(fake.Requests()) < 4 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		for _, c := range []string{first, second} {
			for s.do("GET", "/v1/conversations/"+c, token, nil).json(t)["title"] == "" && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if got := fake.Requests(); len(got) != 4 {
			for _, r := range got {
				t.Logf("request: %q", r.Messages[len(r.Messages)-1].Content)
			}
			flight.mu.Lock()
			for _, e := range flight.errs {
				t.Logf("not forwarded: %s", e)
			}
			flight.mu.Unlock()
			t.Fatalf("upstream requests = %d, want two replies and two titles", len(got))
		}
		if got := flight.peak(); got != 1 {
			t.Fatalf("%d upstream requests waited for their first token at once with a cap of 1", got)
		}
	})
}

// A user's sends to several conversations at once are checked one after
// the other under the user's row: however they interleave, no more replies
// run than the limit allows, and no more is held than the balance has. On
// PostgreSQL a send's writes are one statement after the lock, so this
// holds only if that statement counts what the sends it waited for wrote.
func TestConcurrentSendsKeepTheUsersLimits(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.SetDefault(llmtest.Script{Tokens: []string{"slow"}, FirstTokenDelay: 2 * time.Second})
		const running, sends = 3, 8
		s := newChatServer(t, dialect, fake, func(c *app.Config) {
			c.Chat.MaxRunningPerUser = running
			c.UserRateLimit = 1000
		})
		// sendAll sends to sends fresh conversations at once and returns
		// how many were accepted, failing on any refusal not in refusals.
		sendAll := func(token string, refusals ...string) int {
			convs := make([]string, sends)
			for i := range convs {
				convs[i] = s.newConversation(token)
			}
			answers := make([]response, sends)
			var wg sync.WaitGroup
			for i := range sends {
				wg.Go(func() {
					answers[i] = s.do("POST", "/v1/conversations/"+convs[i]+"/messages", token, map[string]string{"content": "hello"})
				})
			}
			wg.Wait()
			accepted := 0
			for i, r := range answers {
				switch {
				case r.status == http.StatusCreated:
					accepted++
				case !slices.Contains(refusals, fmt.Sprint(r.status, " ", r.errorCode(t))):
					t.Fatalf("send %d: %d %s, want 201 or one of %q", i, r.status, r.body, refusals)
				}
			}
			return accepted
		}

		grant := func(token string, amount int64) {
			userID := s.do("GET", "/v1/me", token, nil).json(t)["id"].(string)
			if _, err := s.ledger().Grant(t.Context(), credits.GrantRequest{UserID: userID, Amount: amount}); err != nil {
				t.Fatal(err)
			}
		}
		for round := range 3 {
			token := s.signup(fmt.Sprintf("running%d@example.com", round))
			grant(token, 100_000) // the running limit binds, not the balance
			if got := sendAll(token, "429 rate_limited"); got != running {
				t.Fatalf("round %d: %d of %d sends accepted, want the running limit %d", round, got, sends, running)
			}
		}

		// Credits for about two and a half replies: whatever is accepted,
		// what is held never exceeds the balance.
		token := s.signup("credits@example.com")
		first := s.send(token, s.newConversation(token), "hello")
		hold := int64(s.credits(token)["reserved"].(float64))
		s.waitFinal(token, first)
		balance := int64(s.credits(token)["balance"].(float64))
		userID := s.do("GET", "/v1/me", token, nil).json(t)["id"].(string)
		if _, err := s.ledger().Adjust(t.Context(), credits.AdjustRequest{
			UserID: userID, Amount: -(balance - 5*hold/2), IdempotencyKey: "cut",
		}); err != nil {
			t.Fatal(err)
		}
		// Past the balance a send is refused with 402, past the running
		// limit (a capped reply may still fit) with 429.
		accepted := sendAll(token, "402 insufficient_credits", "429 rate_limited")
		c := s.credits(token)
		if c["reserved"].(float64) > c["balance"].(float64) || accepted < 2 || accepted > running {
			t.Fatalf("%d accepted, credits %v: held more than the balance, or limits miscounted", accepted, c)
		}
		wantAuditClean(t, s)
	})
}
