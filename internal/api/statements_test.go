package api_test

import (
	"net/http"
	"testing"
	"time"

	"luna/internal/app"
	"luna/internal/llm/llmtest"
	"luna/internal/store"
)

// Opening the stream of a reply generating on this instance costs one
// statement, the request's authentication: the reply's owner and text are
// in memory. Another user still finds nothing there. (PostgreSQL, where
// Luna counts the statements it sends; background work may add a
// statement now and then, so the fewest of three openings counts.)
func TestOpeningALocalStreamReadsOnlyTheSession(t *testing.T) {
	fake := llmtest.New(t)
	fake.SetDefault(llmtest.Script{Tokens: repeatedTokens(200), TokenDelay: 20 * time.Millisecond})
	s := newChatServer(t, store.Postgres, fake, func(c *app.Config) { c.Chat.FlushInterval = time.Hour })
	token := s.signup("a@example.com")
	msgID := s.send(token, s.newConversation(token), "hello")
	path := "/v1/messages/" + msgID + "/stream"

	fewest := int64(-1)
	for range 3 {
		before, counted := s.app.DB().Statements()
		if !counted {
			t.Fatal("statements are not counted on PostgreSQL")
		}
		st := s.openStream(path, token, "")
		if ev, ok := st.next(); !ok || ev.name != "snapshot" {
			t.Fatalf("first event %+v, %v; want a snapshot", ev, ok)
		}
		after, _ := s.app.DB().Statements()
		st.close()
		if n := after - before; fewest < 0 || n < fewest {
			fewest = n
		}
	}
	if fewest != 1 {
		t.Errorf("opening the stream took %d statements, want 1 (the session)", fewest)
	}

	other := s.signup("b@example.com")
	if r := s.do(http.MethodGet, path, other, nil); r.status != http.StatusNotFound {
		t.Errorf("another user's stream: %d, want 404", r.status)
	}
}
