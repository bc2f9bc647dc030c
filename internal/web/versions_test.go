package web_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"luna/internal/app"
	"luna/internal/llm/llmtest"
)

// newestReply is the last reply shown.
const newestReply = `[...document.querySelectorAll('#chat-view article.message.assistant')].at(-1)`

// lastQuestion is the last question shown.
const lastQuestion = `[...document.querySelectorAll('#chat-view article.message.user')].at(-1)`

// clickIn clicks, with the mouse, the element sel inside the message the
// JavaScript expression article names.
func (b *browser) clickIn(article, sel string) {
	b.t.Helper()
	b.waitJS("the message", article, 10*time.Second)
	id := eval[string](b, article+`.dataset.id`)
	b.click(`#chat-view article[data-id="` + id + `"] ` + sel)
}

// estimate asks the API what a draft would hold.
func (l *luna) estimate(token string, body map[string]string) int64 {
	l.t.Helper()
	var est struct{ Credits int64 }
	if st := l.do("POST", "/v1/estimate", token, body, &est); st != http.StatusOK {
		l.t.Fatalf("estimate: %d", st)
	}
	return est.Credits
}

// TestBrowserVersions drives issue 9's per-message actions at both sizes:
// one-step start from the new chat (home on wide screens) with the model
// dropdown, the price line, copy, continue a cut-off reply, regenerate and
// page between versions, edit the last question (and page back to the old
// exchange), and the slow-model notice with keep waiting and stop.
func TestBrowserVersions(t *testing.T) {
	for _, vp := range []viewport{desktop, phone} {
		t.Run(vp.name, func(t *testing.T) {
			t.Parallel()
			fake := llmtest.New(t)
			fake.SetDefault(llmtest.Script{Tokens: []string{"Moon", " talk"}})
			// The page says the model is slow after a third of this.
			l := startLuna(t, lunaOptions{fake: fake, configure: func(c *app.Config) { c.Chat.ReplyIdleTimeout = 9 * time.Second }})
			b := newBrowser(t, vp)
			b.open(l.url)
			b.waitJS("the sign-in screen", `document.querySelector('#auth-form')`, 15*time.Second)
			b.signUp("vera@example.com")
			token := b.token()

			// Home is an empty chat on wide screens, its box focused; on
			// phones "New chat" opens it.
			if vp.mobile {
				b.click("#new-chat")
			}
			b.waitJS("the new chat with the model", `document.querySelector('#new-chat-view') && !document.querySelector('#model-select').disabled`, 10*time.Second)
			if !vp.mobile {
				if got := eval[string](b, `document.activeElement.id`); got != "new-chat-message" {
					t.Errorf("focused %q at home, want the message box", got)
				}
				if !eval[bool](b, `(() => { const s = document.querySelector('#model-select').getBoundingClientRect(), m = document.querySelector('#new-chat-message').getBoundingClientRect();
					return s.right <= m.left && s.bottom > m.top && s.top < m.bottom; })()`) {
					t.Error("the model dropdown is not beside the message box")
				}
			}
			facts := eval[string](b, `document.querySelector('#model-facts').textContent`)
			for _, want := range []string{"tokens of context", "10 credits per 1k tokens"} {
				if !strings.Contains(facts, want) {
					t.Errorf("model facts %q lack %q", facts, want)
				}
			}
			b.scan("01-new-chat")

			// The price line shows what the server would hold.
			question := "Tell me about the moon"
			b.typeInto("#new-chat-message", question)
			want := l.estimate(token, map[string]string{"modelId": "test-model", "content": question})
			b.waitJS("the price line", fmt.Sprintf(`document.querySelector('#price-line:not([hidden])')?.dataset.credits === '%d'`, want), 10*time.Second)
			if got := eval[string](b, `document.querySelector('#price-line').textContent`); !strings.Contains(got, fmt.Sprintf("%d credits", want)) {
				t.Errorf("price line %q, want %d credits", got, want)
			}
			b.shot("02-price-line")

			// Sending creates the conversation; the reply is cut off at its
			// length limit, so it can be continued.
			fake.Enqueue(llmtest.Script{Tokens: []string{"The moon", " is", " bright"}, FinishReason: "length"})
			b.pressEnter(false)
			b.waitJS("the cut-off reply", newestReply+`?.dataset.status === 'complete' && `+newestReply+`.querySelector('.continue-reply')`, 20*time.Second)
			b.waitJS("the title", `document.querySelector('#chat-title').textContent === 'Moon talk'`, 15*time.Second)
			if eval[bool](b, `!!document.querySelector('#chat-view #model-select')`) || !strings.Contains(eval[string](b, `document.querySelector('.chat-model').textContent`), "Test Model") {
				t.Error("the chat shows a model picker, or not its fixed model")
			}

			// Copy a reply.
			eval[bool](b, `(() => { window.__copied = null; navigator.clipboard.writeText = (t) => { window.__copied = t; return Promise.resolve(); }; return true; })()`)
			b.clickIn(newestReply, ".copy-reply")
			b.waitJS("the copied text", `window.__copied === 'The moon is bright' && `+newestReply+`.querySelector('.copy-reply').textContent === 'Copied'`, 5*time.Second)

			// Continue it: the same message grows.
			replyID := eval[string](b, newestReply+`.dataset.id`)
			fake.Enqueue(llmtest.Script{Tokens: []string{" tonight", "."}, TokenDelay: 20 * time.Millisecond})
			b.clickIn(newestReply, ".continue-reply")
			b.waitJS("the continued reply", newestReply+`.dataset.status === 'complete' && `+newestReply+`.querySelector('.content').textContent === 'The moon is bright tonight.'`, 20*time.Second)
			if got := eval[string](b, newestReply+`.dataset.id`); got != replyID || eval[bool](b, newestReply+`.querySelector('.continue-reply') !== null`) {
				t.Errorf("continued reply %s (was %s) still offers to continue", got, replyID)
			}
			if m := l.message(token, replyID); m.Content != "The moon is bright tonight." {
				t.Errorf("stored continued reply %q", m.Content)
			}
			b.shot("03-continued")

			// Regenerate: a second version; page back and forth.
			fake.Enqueue(llmtest.Script{Tokens: []string{"Version", " two"}, TokenDelay: 20 * time.Millisecond})
			b.clickIn(newestReply, ".regenerate-reply")
			b.waitJS("the new version", newestReply+`?.dataset.status === 'complete' && `+newestReply+`.querySelector('.content').textContent === 'Version two' && `+
				newestReply+`.querySelector('.version-label')?.textContent === '2 / 2'`, 20*time.Second)
			b.scan("04-regenerated")
			b.clickIn(newestReply, ".version-prev")
			b.waitJS("version 1", newestReply+`?.querySelector('.content').textContent === 'The moon is bright tonight.' && `+
				newestReply+`.querySelector('.version-label').textContent === '1 / 2'`, 10*time.Second)
			b.shot("05-version-1")
			b.clickIn(newestReply, ".version-next")
			b.waitJS("version 2 again", newestReply+`?.querySelector('.content').textContent === 'Version two'`, 10*time.Second)

			// Edit the last question: a new exchange; the old one stays as
			// version 1 of the question.
			b.clickIn(lastQuestion, ".edit-question")
			b.waitJS("the edit box", `document.querySelector('.edit-input') === document.activeElement`, 5*time.Second)
			b.shot("06-editing")
			eval[bool](b, `(() => { const i = document.querySelector('.edit-input'); i.value = ''; return true; })()`)
			b.typeInto(".edit-input", "Tell me about the sun")
			fake.Enqueue(llmtest.Script{Tokens: []string{"The sun", " is", " hot"}, TokenDelay: 20 * time.Millisecond})
			b.pressEnter(false)
			b.waitJS("the edited exchange", lastQuestion+`?.querySelector('.content').textContent === 'Tell me about the sun' && `+
				lastQuestion+`.querySelector('.version-label')?.textContent === '2 / 2' && `+
				newestReply+`?.dataset.status === 'complete' && `+newestReply+`.querySelector('.content').textContent === 'The sun is hot'`, 20*time.Second)
			b.scan("07-edited")
			b.clickIn(lastQuestion, ".version-prev")
			b.waitJS("the old exchange", lastQuestion+`?.querySelector('.content').textContent === 'Tell me about the moon' && `+
				newestReply+`?.querySelector('.content').textContent === 'Version two'`, 10*time.Second)
			b.clickIn(lastQuestion, ".version-next")
			b.waitJS("the new exchange", newestReply+`?.querySelector('.content').textContent === 'The sun is hot'`, 10*time.Second)
			conv := eval[string](b, `document.querySelector('#chat-view').dataset.conversationId`)

			// The price line in the chat: the conversation's shown history.
			next := "And the stars?"
			b.typeInto("#composer-input", next)
			want = l.estimate(token, map[string]string{"conversationId": conv, "content": next})
			b.waitJS("the chat's price line", fmt.Sprintf(`document.querySelector('#price-line:not([hidden])')?.dataset.credits === '%d'`, want), 10*time.Second)

			// A model that goes quiet: the notice, keep waiting, then stop.
			fake.Enqueue(llmtest.Script{Tokens: []string{"Thinking", " slowly"}, TokenDelay: time.Hour})
			b.pressEnter(false)
			b.waitJS("the slow-model notice", `document.querySelector('#slow-wait')?.checkVisibility() && `+newestReply+`.querySelector('.slow-notice').textContent.includes('The model is slow')`, 10*time.Second)
			b.scan("08-slow-model")
			b.click("#slow-wait")
			b.waitJS("the notice to go", newestReply+`.querySelector('.slow-notice').hidden`, 5*time.Second)
			b.waitJS("the notice again", `document.querySelector('#slow-stop')?.checkVisibility()`, 10*time.Second)
			b.click("#slow-stop")
			b.waitJS("the stopped reply", newestReply+`?.dataset.status === 'cancelled' && `+newestReply+`.querySelector('.slow-notice').hidden && `+
				newestReply+`.querySelector('.continue-reply')`, 10*time.Second)
			b.shot("09-stopped")

			// A new version made on another device shows here live.
			stopped := eval[string](b, newestReply+`.dataset.id`)
			fake.Enqueue(llmtest.Script{Tokens: []string{"From", " elsewhere"}})
			if st := l.do("POST", "/v1/messages/"+stopped+"/regenerate", token, map[string]string{}, nil); st != http.StatusCreated {
				t.Fatalf("regenerate through the API: %d", st)
			}
			b.waitJS("the other device's version", newestReply+`?.dataset.status === 'complete' && `+newestReply+`.querySelector('.content').textContent === 'From elsewhere' && `+
				newestReply+`.querySelector('.version-label')?.textContent === '2 / 2' && document.querySelectorAll('#chat-view article.message.assistant').length === 2`, 15*time.Second)
			b.noStrayValues()
		})
	}
}
