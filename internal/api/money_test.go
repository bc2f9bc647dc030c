package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"luna/internal/app"
	"luna/internal/credits"
	"luna/internal/imagegen/imagegentest"
	"luna/internal/llm/llmtest"
	"luna/internal/store"
)

// holdOf returns the status, extra charge and shortfall of the credit hold
// placed for reference (message:<id> or image:<id>, perhaps followed by
// more words).
func (s *testServer) holdOf(reference string) (status string, extra, shortfall int64) {
	s.t.Helper()
	err := s.app.DB().QueryRowContext(context.Background(), `SELECT status, extra_charged, shortfall
		FROM credit_reservations WHERE reference = $1 OR reference LIKE $2`, reference, reference+" %").Scan(&status, &extra, &shortfall)
	if err != nil {
		s.t.Fatalf("hold of %s: %v", reference, err)
	}
	return status, extra, shortfall
}

// voidHolds expires every active hold now, as a sweeper whose clock ran a
// day ahead would: holds that are voided although their reply or image
// is still alive.
func (s *testServer) voidHolds() int {
	s.t.Helper()
	ahead := credits.NewLedger(s.app.DB(), credits.WithClock(func() time.Time { return time.Now().Add(24 * time.Hour) }))
	n, err := ahead.SweepExpired(context.Background(), 1000)
	if err != nil {
		s.t.Fatalf("void holds: %v", err)
	}
	return n
}

// sweepUntil runs the app's expiry sweeper every 50 ms until done is
// closed, as `luna serve` does (every 30 s).
func (s *testServer) sweepUntil(done <-chan struct{}) {
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := s.ledger().SweepExpired(context.Background(), 100); err != nil {
					s.t.Errorf("sweep: %v", err)
					return
				}
			}
		}
	}()
}

func repeatedTokens(n int) []string {
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = " tok"
	}
	return tokens
}

// A reply pays price × the usage the upstream reports, even beyond its
// hold: the overage comes from the available balance, never below zero,
// and what the balance lacks is recorded on the message.
func TestChatChargesTheTrueCostBeyondTheHold(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.SetDefault(llmtest.Script{Tokens: []string{"T"}})
		s := newChatServer(t, dialect, fake, nil)
		tests := []struct {
			name          string
			promptTokens  int
			wantCharged   int64
			wantShortfall int64
		}{
			// The hold is about the prompt estimate (~20) + 256 output tokens.
			{"within the balance", 600, cost(600 + 5), 0},
			{"beyond the balance", 5000, 1000, cost(5000+5) - 1000},
		}
		for i, tt := range tests {
			token := s.signup(string(rune('a'+i)) + "@example.com")
			fake.Enqueue(llmtest.Script{Tokens: []string{"a", "b", "c", "d", "e"}, PromptTokens: tt.promptTokens})
			msgID := s.send(token, s.newConversation(token), "Say hello")
			m := s.waitFinal(token, msgID)
			if m["status"] != "complete" || m["content"] != "abcde" || m["promptTokens"] != float64(tt.promptTokens) {
				t.Fatalf("%s: message = %v", tt.name, m)
			}
			if got := int64(m["creditsCharged"].(float64)); got != tt.wantCharged {
				t.Errorf("%s: creditsCharged = %d, want %d", tt.name, got, tt.wantCharged)
			}
			if got, _ := m["creditsShortfall"].(float64); int64(got) != tt.wantShortfall {
				t.Errorf("%s: creditsShortfall = %v, want %d", tt.name, m["creditsShortfall"], tt.wantShortfall)
			}
			if c := s.credits(token); c["balance"] != float64(1000-tt.wantCharged) || c["reserved"] != 0.0 {
				t.Errorf("%s: credits = %v, want balance %d", tt.name, c, 1000-tt.wantCharged)
			}
			if status, _, shortfall := s.holdOf("message:" + msgID); status != credits.StatusCaptured || shortfall != tt.wantShortfall {
				t.Errorf("%s: hold %s with shortfall %d", tt.name, status, shortfall)
			}
		}
		wantAuditClean(t, s)
	})
}

// A reply that runs longer than its hold's lifetime keeps its hold: the
// engine renews it with the reply's lease, so the sweeper leaves it alone.
func TestChatHoldLivesAsLongAsItsReply(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.Enqueue(llmtest.Script{Tokens: repeatedTokens(30), TokenDelay: 100 * time.Millisecond, PromptTokens: 40})
		fake.SetDefault(llmtest.Script{Tokens: []string{"T"}})
		s := newChatServer(t, dialect, fake, func(c *app.Config) { c.Chat.ReservationTTL = time.Second })
		token := s.signup("a@example.com")
		msgID := s.send(token, s.newConversation(token), "a long story")
		done := make(chan struct{})
		s.sweepUntil(done)
		m := s.waitFinal(token, msgID)
		close(done)
		want := cost(40 + 30)
		if m["status"] != "complete" || m["creditsCharged"] != float64(want) {
			t.Fatalf("reply = %v, want complete and charged %d", m, want)
		}
		if status, extra, _ := s.holdOf("message:" + msgID); status != credits.StatusCaptured || extra != 0 {
			t.Fatalf("hold %s (extra %d), want captured: it expired under a live reply", status, extra)
		}
		if c := s.credits(token); c["balance"] != float64(1000-want) || c["reserved"] != 0.0 {
			t.Fatalf("credits = %v", c)
		}
		wantAuditClean(t, s)
	})
}

// A reply whose hold was voided anyway still completes, keeps its text and
// pays from the available balance in the same transaction.
func TestChatLateCompletionAfterItsHoldWasVoided(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.Enqueue(llmtest.Script{Tokens: repeatedTokens(20), TokenDelay: 50 * time.Millisecond, PromptTokens: 40})
		fake.SetDefault(llmtest.Script{Tokens: []string{"T"}})
		s := newChatServer(t, dialect, fake, nil)
		token := s.signup("a@example.com")
		msgID := s.send(token, s.newConversation(token), "a story")
		st := s.openStream("/v1/messages/"+msgID+"/stream", token, "")
		for ev, ok := st.next(); ev.name != "delta"; ev, ok = st.next() {
			if !ok {
				t.Fatal("stream ended before any text")
			}
		}
		if n := s.voidHolds(); n != 1 {
			t.Fatalf("voided %d holds, want 1", n)
		}
		m := s.waitFinal(token, msgID)
		want := cost(40 + 20)
		if m["status"] != "complete" || m["content"] != strings.Join(repeatedTokens(20), "") || m["creditsCharged"] != float64(want) {
			t.Fatalf("late reply = %v, want complete with its text, charged %d", m, want)
		}
		if status, extra, shortfall := s.holdOf("message:" + msgID); status != credits.StatusExpired || extra != want || shortfall != 0 {
			t.Fatalf("hold %s, extra %d, shortfall %d; want expired and %d charged after", status, extra, shortfall, want)
		}
		if c := s.credits(token); c["balance"] != float64(1000-want) || c["reserved"] != 0.0 {
			t.Fatalf("credits = %v", c)
		}
		wantAuditClean(t, s)
	})
}

// A free model (credits_per_1k_tokens = 0) places no hold and charges
// nothing, even to a user with no credits; the usage is still recorded.
func TestChatFreeModel(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		fake.SetDefault(llmtest.Script{Tokens: []string{"free", " text"}, PromptTokens: 25})
		s := newChatServer(t, dialect, fake, func(c *app.Config) {
			c.ModelsFile = modelsFile(t, fake.BaseURL(), "credits_per_1k_tokens = 0")
			c.InitialCredits = 0
		})
		token := s.signup("a@example.com")
		conv := s.newConversation(token)
		for range 2 {
			r := s.do("POST", "/v1/conversations/"+conv+"/messages", token, map[string]string{"content": "hello"})
			if r.status != http.StatusCreated {
				t.Fatalf("send to a free model: %d %s", r.status, r.body)
			}
			msgID := r.json(t)["assistantMessage"].(map[string]any)["id"].(string)
			m := s.waitFinal(token, msgID)
			if m["status"] != "complete" || m["creditsCharged"] != 0.0 || m["promptTokens"] != 25.0 || m["completionTokens"] != 2.0 {
				t.Fatalf("free reply = %v", m)
			}
		}
		if c := s.credits(token); c["balance"] != 0.0 || c["reserved"] != 0.0 {
			t.Fatalf("credits = %v", c)
		}
		var holds int
		if err := s.app.DB().QueryRowContext(context.Background(), `SELECT COUNT(*) FROM credit_reservations`).Scan(&holds); err != nil || holds != 0 {
			t.Fatalf("%d holds (%v), want none", holds, err)
		}
		wantAuditClean(t, s)
	})
}

// An image whose hold was voided while it was being made is still
// completed and kept, and paid from the available balance; the user's
// processing slot is free for the next image.
func TestImageLateCompletionAfterItsHoldWasVoided(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := imagegentest.NewComfyUI(t)
		fake.SetNeverFinish(true)
		s := newComfyServer(t, dialect, fake, func(c *app.Config) { c.Images.Jobs.Timeout = 20 * time.Second })
		token := s.signup("a@example.com")
		job := s.createImage(token, map[string]any{"prompt": "a lighthouse", "resolution": 512}).json(t)
		select {
		case <-fake.Submitted():
		case <-time.After(15 * time.Second):
			t.Fatal("the job was not submitted")
		}
		if n := s.voidHolds(); n != 1 {
			t.Fatalf("voided %d holds, want 1", n)
		}
		fake.SetNeverFinish(false)
		done := s.waitImage(token, job["id"].(string))
		if done["status"] != "completed" || done["image"] == nil {
			t.Fatalf("late image = %v, want completed with its image", done)
		}
		if status, extra, _ := s.holdOf("image:" + job["id"].(string)); status != credits.StatusExpired || extra != 50 {
			t.Fatalf("hold %s, extra %d; want expired and 50 charged after", status, extra)
		}
		if c := s.credits(token); c["balance"] != 950.0 || c["reserved"] != 0.0 {
			t.Fatalf("credits = %v, want one charge of 50", c)
		}
		next := s.createImage(token, map[string]any{"prompt": "another", "resolution": 512}).json(t)
		if done := s.waitImage(token, next["id"].(string)); done["status"] != "completed" {
			t.Fatalf("next image = %v", done)
		}
		wantAuditClean(t, s)
	})
}

// An image job that takes longer than its hold's lifetime keeps its hold:
// the worker renews it with the job's lease.
func TestImageHoldLivesAsLongAsItsJob(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := imagegentest.NewComfyUI(t)
		fake.SetFinishAfterPolls(150) // ~3 s of 20 ms polls
		s := newComfyServer(t, dialect, fake, func(c *app.Config) {
			c.Images.Jobs.Timeout = 20 * time.Second
			c.Images.Jobs.HoldTTL = 2 * time.Second
		})
		token := s.signup("a@example.com")
		job := s.createImage(token, map[string]any{"prompt": "a lighthouse", "resolution": 512}).json(t)
		done := make(chan struct{})
		s.sweepUntil(done)
		finished := s.waitImage(token, job["id"].(string))
		close(done)
		if finished["status"] != "completed" {
			t.Fatalf("image = %v", finished)
		}
		if status, extra, _ := s.holdOf("image:" + job["id"].(string)); status != credits.StatusCaptured || extra != 0 {
			t.Fatalf("hold %s (extra %d), want captured: it expired under a live job", status, extra)
		}
		if c := s.credits(token); c["balance"] != 950.0 || c["reserved"] != 0.0 {
			t.Fatalf("credits = %v", c)
		}
		wantAuditClean(t, s)
	})
}
