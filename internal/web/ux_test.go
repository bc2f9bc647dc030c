package web_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"luna/internal/llm/llmtest"
)

// axeSource is axe-core's minified build (testdata/axe-core, see its
// README), read once.
var axeSource = sync.OnceValues(func() (string, error) {
	data, err := os.ReadFile("testdata/axe-core/axe.min.js")
	return string(data), err
})

// axeViolation is one failed rule of an axe-core scan.
type axeViolation struct {
	ID      string   `json:"id"`
	Impact  string   `json:"impact"`
	Help    string   `json:"help"`
	Targets []string `json:"targets"`
}

// scan checks the screen as it is: axe-core (injected through the
// DevTools protocol, so the page's own policy stays as it is) must find no
// violation, and the screen must show exactly one level-one heading. It
// saves a screenshot of the screen.
func (b *browser) scan(screen string) {
	b.t.Helper()
	b.shot(screen)
	src, err := axeSource()
	if err != nil {
		b.t.Fatalf("axe-core: %v", err)
	}
	if !eval[bool](b, `typeof window.axe === 'object'`) {
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		defer cancel()
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](src+"\n;true")); err != nil {
			b.t.Fatalf("%s: inject axe-core: %v", b.vp.name, err)
		}
	}
	violations := eval[[]axeViolation](b, `axe.run(document, { resultTypes: ['violations'] }).then((r) =>
		r.violations.map((v) => ({ id: v.id, impact: v.impact || '', help: v.help, targets: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) })))`)
	for _, v := range violations {
		b.t.Errorf("%s, %s: axe %s (%s): %s at %v", b.vp.name, screen, v.ID, v.Impact, v.Help, v.Targets)
	}
	visibleH1 := eval[[]string](b, `[...document.querySelectorAll('h1')].filter((e) => e.checkVisibility()).map((e) => e.textContent)`)
	if len(visibleH1) != 1 {
		b.t.Errorf("%s, %s: visible level-one headings %q, want exactly one", b.vp.name, screen, visibleH1)
	}
}

// sidebar shows the sidebar (on phones it is a screen of its own).
func (b *browser) sidebar() {
	b.t.Helper()
	if b.vp.mobile && eval[string](b, `document.body.dataset.pane`) == "main" {
		b.click("#back")
		b.waitJS("the list screen", `document.body.dataset.pane === 'list'`, 5*time.Second)
	}
}

// key presses a key in the focused element.
func (b *browser) key(k string) {
	b.t.Helper()
	b.do(chromedp.KeyEvent(k))
}

// smallTargets lists the visible controls smaller than 44×44 CSS pixels
// (links inside text are exempt, as WCAG's inline exception says).
func (b *browser) smallTargets() []string {
	return eval[[]string](b, `[...document.querySelectorAll('button, a[href], input, select, textarea, [role=tab], label:has(input)')]
		.filter((e) => e.checkVisibility() && !e.closest('.content, .field-hint, .form-error, .usage-what, p'))
		.filter((e) => !(e.matches('input[type=radio], input[type=checkbox]') && e.closest('label')))
		.map((e) => [e, e.getBoundingClientRect()])
		.filter(([, r]) => r.width < 44 || r.height < 44)
		.map(([e, r]) => (e.id ? '#' + e.id : e.tagName.toLowerCase() + '.' + [...e.classList].join('.')) + ' ' + Math.round(r.width) + 'x' + Math.round(r.height))`)
}

// markdownReply is a reply with the Markdown a preview must not show and a
// code block to colour.
const markdownReply = "## Plan\n\nUse **bold** ideas and `small` steps, see [the docs](https://example.com/).\n\n" +
	"```go\nfunc main() {\n\tfmt.Println(\"hi\") // greet\n}\n```\n"

// slowReply is a reply that takes a few seconds to stream.
func slowReply() llmtest.Script {
	var tokens []string
	for i := range 260 {
		tokens = append(tokens, fmt.Sprintf("word%d ", i))
		if i%12 == 11 {
			tokens = append(tokens, "\n\n")
		}
	}
	return llmtest.Script{Tokens: tokens, TokenDelay: 30 * time.Millisecond}
}

// TestBrowserChatUX drives what issue 9 asked of the web app at both
// sizes: the usage history behind the balance, deleting conversations (from
// the list, from the chat, and live from another device), and the polish
// (the wait banner, jump to latest, plain previews, coloured code, the
// account menu, the focus ring, tabs with arrow keys, 44 px targets).
func TestBrowserChatUX(t *testing.T) {
	for _, vp := range []viewport{desktop, phone} {
		t.Run(vp.name, func(t *testing.T) {
			t.Parallel()
			fake := llmtest.New(t)
			fake.SetDefault(llmtest.Script{Tokens: []string{"Short", " answer."}})
			l := startLuna(t, lunaOptions{fake: fake})
			b := newBrowser(t, vp)
			b.open(l.url)
			b.waitJS("the sign-in screen", `document.querySelector('#auth-form')`, 15*time.Second)

			// Sign-in tabs are ARIA tabs: arrow keys, Home and End move.
			b.do(chromedp.Focus(chromedp.CSS("#tab-signin")))
			b.key(kb.ArrowRight)
			b.waitJS("Create account selected by the arrow key", `document.activeElement.id === 'tab-signup' &&
				document.querySelector('#tab-signup').getAttribute('aria-selected') === 'true' && !document.querySelector('#auth-name').closest('.field').hidden &&
				document.querySelector('#tab-signin').tabIndex === -1 && document.querySelector('#auth-panel').getAttribute('aria-labelledby') === 'tab-signup'`, 5*time.Second)
			b.key(kb.ArrowLeft)
			b.waitJS("Sign in selected again", `document.activeElement.id === 'tab-signin' && document.querySelector('#tab-signin').getAttribute('aria-selected') === 'true'`, 5*time.Second)
			b.key(kb.End)
			b.waitJS("End selects the last tab", `document.activeElement.id === 'tab-signup'`, 5*time.Second)
			b.key(kb.Home)
			b.waitJS("Home selects the first tab", `document.activeElement.id === 'tab-signin'`, 5*time.Second)
			b.shot("01-tabs")

			b.signUp("grace@example.com")
			token := b.token()
			if vp.mobile {
				if small := b.smallTargets(); len(small) > 0 {
					t.Errorf("phone: controls under 44 px on the list: %v", small)
				}
			}

			// The account menu: email, credits, usage, sign-out; Escape closes it.
			b.click("#account-button")
			b.waitJS("the account menu", `!document.querySelector('#account-menu').hidden && document.querySelector('#account-button').getAttribute('aria-expanded') === 'true'`, 5*time.Second)
			menu := eval[string](b, `document.querySelector('#account-menu').textContent`)
			for _, want := range []string{"grace@example.com", "1,000 credits available", "Usage history", "Sign out"} {
				if !strings.Contains(menu, want) {
					t.Errorf("account menu %q lacks %q", menu, want)
				}
			}
			b.shot("02-account-menu")
			b.key(kb.Escape)
			b.waitJS("the menu to close, focus back on its button", `document.querySelector('#account-menu').hidden && document.activeElement.id === 'account-button'`, 5*time.Second)

			// A reply in Markdown: the list's preview is plain, the code coloured.
			fake.Enqueue(llmtest.Script{Tokens: chunks(markdownReply, 9), TokenDelay: 5 * time.Millisecond})
			b.click("#new-chat")
			b.waitJS("the model", `document.querySelector('#model-select option[value]:not([value=""])')`, 10*time.Second)
			b.typeInto("#new-chat-message", "Make a **plan**")
			b.pressEnter(false)
			b.waitJS("the reply", newestAssistant+`?.dataset.status === 'complete'`, 20*time.Second)
			firstConv := eval[string](b, `document.querySelector('#chat-view').dataset.conversationId`)
			b.waitJS("the title (the model writes it too)", `document.querySelector('#chat-title').textContent === 'Short answer'`, 15*time.Second)
			b.waitJS("coloured code", newestAssistant+`.querySelector('.md-code code.hljs span.hljs-keyword')?.textContent === 'func'`, 5*time.Second)
			if got := eval[string](b, newestAssistant+`.querySelector('.md-code code').textContent`); got != "func main() {\n\tfmt.Println(\"hi\") // greet\n}" {
				t.Errorf("coloured code text = %q", got)
			}
			b.shot("03-coloured-code")
			b.sidebar()
			b.waitJS("the plain preview", `document.querySelector('#conversation-list .conversation-preview')?.textContent.startsWith('Plan Use bold ideas and small steps, see the docs.')`, 10*time.Second)
			if p := eval[string](b, `document.querySelector('#conversation-list .conversation-preview').textContent`); strings.ContainsAny(p, "*`#[") {
				t.Errorf("preview shows Markdown: %q", p)
			}
			b.shot("04-plain-preview")

			// A long reply: scrolled up mid-reply, "Jump to latest" appears and works.
			b.click("#conversation-list .conversation-link")
			b.waitJS("the conversation", `document.querySelector('#chat-view article.message.assistant')`, 10*time.Second)
			fake.Enqueue(slowReply())
			b.typeInto("#composer-input", "Tell me a long story")
			b.pressEnter(false)
			b.waitJS("the long reply to overflow", `(() => { const s = document.querySelector('#messages'); return s.scrollHeight > s.clientHeight * 1.6; })()`, 20*time.Second)
			eval[bool](b, `(document.querySelector('#messages').scrollTop = 0, true)`)
			b.waitJS("Jump to latest", `!document.querySelector('#jump-latest').hidden && `+newestAssistant+`.dataset.status !== 'complete'`, 5*time.Second)
			b.shot("05-jump-to-latest")

			// Sending while the reply runs: the banner asks to wait...
			b.typeInto("#composer-input", "And another")
			b.pressEnter(false)
			b.waitJS("the wait banner", `!document.querySelector('#chat-error').hidden && document.querySelector('#chat-error').textContent.includes('Wait for the reply')`, 5*time.Second)
			b.shot("06-wait-banner")
			b.click("#jump-latest")
			b.waitJS("the bottom", `(() => { const s = document.querySelector('#messages'); return s.scrollHeight - s.scrollTop - s.clientHeight < 80; })() && document.querySelector('#jump-latest').hidden`, 5*time.Second)
			// ... and goes once the reply has ended.
			b.waitJS("the long reply to finish", newestAssistant+`.dataset.status === 'complete'`, 30*time.Second)
			b.waitJS("the wait banner to go", `document.querySelector('#chat-error').hidden`, 5*time.Second)
			b.shot("07-reply-ended")

			// The message list shows a focus ring when reached with the keyboard.
			b.do(chromedp.Focus(chromedp.CSS("#delete-conversation")))
			for i := 0; i < 6 && !eval[bool](b, `document.activeElement.id === 'messages'`); i++ {
				b.key(kb.Tab)
			}
			if ring := eval[string](b, `(() => { const s = document.querySelector('#messages'); return s.matches(':focus-visible') ? getComputedStyle(s).outlineStyle + ' ' + getComputedStyle(s).outlineWidth : 'not focused'; })()`); ring != "solid 2px" {
				t.Errorf("message list focus ring: %q", ring)
			}
			b.shot("08-focus-ring")
			if vp.mobile {
				if small := b.smallTargets(); len(small) > 0 {
					t.Errorf("phone: controls under 44 px in a chat: %v", small)
				}
			}

			// The balance opens the usage history: the replies' charges and holds, linked to the conversation.
			b.click("#credits")
			b.waitJS("the usage history", `document.querySelectorAll('#usage-list .usage-entry').length === 5`, 10*time.Second)
			usage := eval[string](b, `document.querySelector('#usage-view').textContent`)
			for _, want := range []string{"Welcome credits", "Reply", "Held for a reply", "released"} {
				if !strings.Contains(usage, want) {
					t.Errorf("usage history %q lacks %q", usage, want)
				}
			}
			b.waitJS("the entries to link the conversation", `[...document.querySelectorAll('#usage-list a.usage-target')].some((a) => a.getAttribute('href') === '#/c/' + `+jsString(firstConv)+`)`, 5*time.Second)
			if got, want := eval[string](b, `document.querySelector('#usage-available').textContent`), fmt.Sprintf("%s credits", commas(l.credits(token).Available)); got != want {
				t.Errorf("usage shows %q available, want %q", got, want)
			}
			b.noStrayValues()
			b.shot("09-usage")

			// Another conversation, deleted from the list with a confirmation.
			var second struct{ ID string }
			l.do("POST", "/v1/conversations", token, map[string]string{"modelId": "test-model", "title": "To be deleted"}, &second)
			b.sidebar()
			row := `#conversation-list .conversation[data-id=` + jsString(second.ID) + `]`
			b.waitJS("the new conversation in the list", `document.querySelector('`+row+`')`, 10*time.Second)
			eval[bool](b, `(document.querySelector('`+row+` .conversation-delete').click(), true)`)
			b.waitJS("the confirmation", `document.querySelector('#delete-dialog')?.open && document.activeElement.textContent === 'Cancel'`, 5*time.Second)
			if got := eval[string](b, `document.querySelector('#delete-dialog-title').textContent`); got != "Delete “To be deleted”?" {
				t.Errorf("confirmation title %q", got)
			}
			b.shot("10-delete-confirm")
			b.key(kb.Escape) // cancelled: nothing happens
			b.waitJS("the dialog to close", `!document.querySelector('#delete-dialog')`, 5*time.Second)
			if st := l.do("GET", "/v1/conversations/"+second.ID, token, nil, nil); st != 200 {
				t.Fatalf("a cancelled delete deleted: %d", st)
			}
			eval[bool](b, `(document.querySelector('`+row+` .conversation-delete').click(), true)`)
			b.click("#delete-dialog-confirm")
			b.waitJS("the row to go", `!document.querySelector('`+row+`') && !document.querySelector('#delete-dialog')`, 10*time.Second)
			if st := l.do("GET", "/v1/conversations/"+second.ID, token, nil, nil); st != 404 {
				t.Fatalf("deleted conversation: GET %d", st)
			}
			b.shot("11-deleted-from-list")

			// Deleted on another device while open here, mid-reply: the
			// screen says so, the list updates, the reply was stopped.
			b.sidebar()
			b.click(`#conversation-list .conversation[data-id=` + jsString(firstConv) + `] .conversation-link`)
			b.waitJS("the conversation", `document.querySelector('#chat-view article.message.assistant')`, 10*time.Second)
			fake.Enqueue(slowReply())
			b.typeInto("#composer-input", "One more long story")
			b.pressEnter(false)
			b.waitJS("the reply to stream", newestAssistant+`.dataset.status === 'streaming'`, 10*time.Second)
			if st := l.do("DELETE", "/v1/conversations/"+firstConv, token, nil, nil); st != 204 {
				t.Fatalf("delete from another device: %d", st)
			}
			b.waitJS("the deleted notice", `document.querySelector('#chat-view h1')?.textContent === 'Conversation deleted'`, 10*time.Second)
			b.waitJS("the list to empty", `document.querySelectorAll('#conversation-list .conversation').length === 0`, 10*time.Second)
			b.shot("12-deleted-elsewhere")
			waitFor(t, "nothing held", 10*time.Second, func() bool { return l.credits(token).Reserved == 0 })

			// The usage history keeps the entries of the deleted conversation.
			b.open(l.url + "/#/usage")
			b.waitJS("the usage history", `document.querySelectorAll('#usage-list .usage-entry').length === 7`, 10*time.Second)
			b.shot("13-usage-after-delete")
			b.noStrayValues()
			// Also after a reload (the API says the conversation is gone).
			b.do(chromedp.Reload())
			b.waitJS("the usage history again", `document.querySelectorAll('#usage-list .usage-entry').length === 7`, 10*time.Second)
			if n := eval[int](b, `[...document.querySelectorAll('#usage-list .usage-target')].filter((e) => e.textContent === 'in a deleted conversation' && e.tagName !== 'A').length`); n != 6 {
				t.Errorf("%d entries say they were in a deleted conversation, want the 6 of its replies", n)
			}
		})
	}
}

// commas formats n as the page does (en-US grouping).
func commas(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// TestBrowserAccessibility scans every screen of the web app with axe-core
// at both sizes: no violations, one level-one heading each.
func TestBrowserAccessibility(t *testing.T) {
	for _, vp := range []viewport{desktop, phone} {
		t.Run(vp.name, func(t *testing.T) {
			t.Parallel()
			fake := llmtest.New(t)
			fake.SetDefault(llmtest.Script{Tokens: chunks(markdownReply+"\n| a | b |\n|---|---|\n| 1 | 2 |\n\n> quoted\n\n- one\n- two\n", 12)})
			l := startLuna(t, lunaOptions{fake: fake})
			b := newBrowser(t, vp)
			b.open(l.url)
			b.waitJS("the sign-in screen", `document.querySelector('#auth-form')`, 15*time.Second)
			b.scan("sign-in")
			b.click("#tab-signup")
			b.scan("sign-up")

			b.signUp("alan@example.com")
			token := b.token()
			b.scan("home")
			b.click("#account-button")
			b.scan("account-menu")
			b.key(kb.Escape)

			b.click("#new-chat")
			b.waitJS("the model", `document.querySelector('#model-select option[value]:not([value=""])')`, 10*time.Second)
			b.scan("new-chat")
			b.typeInto("#new-chat-message", "Show me everything")
			b.pressEnter(false)
			b.waitJS("the reply", newestAssistant+`?.dataset.status === 'complete'`, 20*time.Second)
			b.waitJS("the title", `document.querySelector('#chat-title').textContent === 'Plan'`, 15*time.Second)
			b.scan("chat")
			b.click("#delete-conversation")
			b.waitJS("the confirmation", `document.querySelector('#delete-dialog')?.open`, 5*time.Second)
			b.scan("delete-confirm")
			b.key(kb.Escape)
			b.waitJS("the dialog to close", `!document.querySelector('#delete-dialog')`, 5*time.Second)

			b.sidebar()
			b.click("#open-images")
			b.waitJS("the image form", `document.querySelector('#image-cost')`, 5*time.Second)
			b.typeInto("#image-prompt", "A lighthouse at dusk")
			b.click("#image-generate")
			b.waitJS("the finished image", `document.querySelector('#gallery .image-card[data-status=completed] img')?.complete`, 30*time.Second)
			b.scan("images")
			b.click("#gallery .image-card .thumb")
			b.waitJS("the full-size view", `document.querySelector('#lightbox').open`, 10*time.Second)
			b.scan("image-full-size")
			b.key(kb.Escape)

			b.click("#credits")
			b.waitJS("the usage history", `document.querySelectorAll('#usage-list .usage-entry').length >= 5`, 10*time.Second)
			b.scan("usage")

			var other struct{ ID string }
			l.do("POST", "/v1/conversations", l.signup("someone@example.com"), map[string]string{"modelId": "test-model"}, &other)
			b.open(l.url + "/#/c/" + other.ID)
			b.waitJS("not found", `document.querySelector('.not-found')`, 10*time.Second)
			b.scan("not-found")

			conv := eval[string](b, `document.querySelector('#conversation-list .conversation').dataset.id`)
			b.open(l.url + "/#/c/" + conv)
			b.waitJS("the conversation", `document.querySelector('#chat-view article.message.assistant')`, 10*time.Second)
			if st := l.do("DELETE", "/v1/conversations/"+conv, token, nil, nil); st != 204 {
				t.Fatalf("delete: %d", st)
			}
			b.waitJS("the deleted notice", `document.querySelector('#chat-view h1')?.textContent === 'Conversation deleted'`, 10*time.Second)
			b.scan("deleted")
		})
	}
}
