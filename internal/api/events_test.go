package api_test

import (
	"strings"
	"testing"
	"time"

	"luna/internal/app"
	"luna/internal/imagegen/imagegentest"
	"luna/internal/llm/llmtest"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// nextMatching reads events until one named name satisfies match, failing
// after 10 s.
func nextMatching(t *testing.T, st *sseStream, name string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		evc := make(chan sseEvent, 1)
		go func() {
			if ev, ok := st.next(); ok {
				evc <- ev
			}
		}()
		select {
		case ev := <-evc:
			if ev.name == name {
				if data := decode(t, ev.data); match(data) {
					return data
				}
			}
		case <-deadline:
			t.Fatalf("no %s event matched within 10s", name)
			return nil
		}
	}
}

// No event is dropped, however long the prompt, title or content: with
// two instances on PostgreSQL, B's /v1/events shows what A changed (a
// notification carries ids; B reads the rest), and on SQLite the one
// instance does the same.
func TestLongContentEventsReachEveryInstance(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake, comfy := llmtest.New(t), imagegentest.NewComfyUI(t)
		fake.SetDefault(llmtest.Script{Tokens: []string{"Fine", "."}})
		dbURL := storetest.URL(t, dialect)
		configure := func(c *app.Config) {
			c.DatabaseURL, c.InitialCredits = dbURL, 100_000
			c.Images.Backend, c.Images.ComfyUIURL = "comfyui", comfy.URL
			fastImages(c)
		}
		a := newChatServer(t, dialect, fake, configure)
		b := a
		if dialect == store.Postgres {
			b = newChatServer(t, dialect, fake, configure)
		}
		token := a.signup("a@example.com")
		events := b.openStream("/v1/events", token, "")

		// A title of 200 characters that JSON escapes or encodes long.
		title := strings.Repeat("🙂<&\"", 50)
		conv := a.newConversation(token)
		if r := a.do("PATCH", "/v1/conversations/"+conv, token, map[string]string{"title": title}); r.status != 200 {
			t.Fatalf("rename: %d %s", r.status, r.body)
		}
		nextMatching(t, events, "conversation.updated", func(c map[string]any) bool { return c["title"] == title })

		// A long message.
		content := strings.Repeat("日本🙂<>", 400) // 2,000 characters, 4,800 bytes: fits the 8k context
		reply := a.send(token, conv, content)
		nextMatching(t, events, "message.updated", func(m map[string]any) bool { return m["id"] == reply && m["status"] == "complete" })
		nextMatching(t, events, "conversation.updated", func(c map[string]any) bool {
			return c["id"] == conv && c["generatingMessageId"] == nil
		})

		// An image with a 2,000-character prompt.
		prompt := strings.Repeat("🙂<&\\", 500)
		r := a.createImage(token, map[string]any{"prompt": prompt, "resolution": 512})
		if r.status != 202 {
			t.Fatalf("create image: %d %s", r.status, r.body)
		}
		id := r.json(t)["id"].(string)
		img := nextMatching(t, events, "image.updated", func(j map[string]any) bool { return j["id"] == id && j["status"] == "completed" })
		if img["prompt"] != prompt || img["image"] == nil {
			t.Fatalf("image event = %v", img)
		}
		nextMatching(t, events, "credits.updated", func(c map[string]any) bool { return c["reserved"] == 0.0 })
	})
}
