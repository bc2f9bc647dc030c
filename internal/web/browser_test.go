package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"luna/internal/app"
	"luna/internal/credits"
	"luna/internal/llm/llmtest"
)

// These tests drive Luna's web app in real headless Chromium against a
// whole Luna (demo model and demo images, or a fake vLLM) on loopback.

// sameAsStored checks that a message on screen is exactly the stored text,
// rendered: the page's renderer applied to the stored content must give the
// very same DOM (nothing lost, nothing repeated).
func sameAsStored(b *browser, messageID, stored string) {
	b.t.Helper()
	type result struct {
		Equal            bool
		Screen, Expected string
	}
	r := eval[result](b, fmt.Sprintf(`(async () => {
		const { renderMarkdown } = await import('/static/js/markdown.js');
		const el = document.querySelector('article.message[data-id=' + JSON.stringify(%s) + '] .content');
		if (!el) return { equal: false, screen: '(message not on screen)', expected: '' };
		const want = el.cloneNode(false);
		want.append(renderMarkdown(%s));
		return { equal: want.isEqualNode(el), screen: el.textContent, expected: want.textContent };
	})()`, jsString(messageID), jsString(stored)))
	if !r.Equal {
		b.t.Fatalf("%s: message %s on screen differs from the stored text\non screen: %q\nstored:    %q", b.vp.name, messageID, r.Screen, r.Expected)
	}
}

// recordReplyLengths makes the page note every length the newest reply's
// text takes, as it is rendered.
func recordReplyLengths(b *browser) {
	eval[bool](b, `(() => {
		window.__lengths = [];
		const note = () => {
			const all = document.querySelectorAll('#chat-view article.message.assistant .content');
			const el = all[all.length - 1];
			if (!el) return;
			const n = el.textContent.length;
			if (window.__lengths[window.__lengths.length - 1] !== n) window.__lengths.push(n);
		};
		new MutationObserver(note).observe(document.body, { subtree: true, childList: true, characterData: true });
		return true;
	})()`)
}

// newestAssistant is a JS expression for the newest reply on screen.
const newestAssistant = `[...document.querySelectorAll('#chat-view article.message.assistant')].pop()`

func TestBrowserJourney(t *testing.T) {
	for _, vp := range []viewport{desktop, phone} {
		t.Run(vp.name, func(t *testing.T) {
			t.Parallel()
			l := startLuna(t, lunaOptions{})
			b := newBrowser(t, vp)
			b.open(l.url)
			b.waitJS("the sign-in screen", `document.querySelector('#auth-form')`, 15*time.Second)
			b.shot("01-sign-in")

			b.signUp("ada@example.com")
			b.waitJS("the starting balance", `document.querySelector('#credits').dataset.available === '1000'`, 10*time.Second)
			if got := eval[string](b, `document.querySelector('#credits').textContent`); !strings.Contains(got, "1,000") {
				t.Errorf("balance shows %q", got)
			}
			b.shot("02-signed-in")
			token := b.token()

			// A new conversation with the demo model, labelled, with its price and context.
			b.click("#new-chat")
			b.waitJS("the demo model", `document.querySelector('#model-select option[value="luna-demo"]') && !document.querySelector('#model-select').disabled`, 10*time.Second)
			model := eval[string](b, `document.querySelector('#model-select option[value="luna-demo"]').textContent + ' ' + document.querySelector('#model-facts').textContent`)
			for _, want := range []string{"demo", "tokens of context", "credits per 1k tokens"} {
				if !strings.Contains(model, want) {
					t.Errorf("model option %q lacks %q", model, want)
				}
			}
			b.shot("03-new-chat")

			recordReplyLengths(b)
			b.typeInto("#new-chat-message", "Tell me about the moon tonight")
			b.pressEnter(false) // Enter sends
			b.waitJS("the reply to start", newestAssistant, 10*time.Second)
			b.waitJS("the reply to finish", newestAssistant+`.dataset.status === 'complete'`, 30*time.Second)
			b.shot("04-reply")

			// The reply grew over several renders, not all at once.
			lengths := eval[[]int](b, `window.__lengths`)
			final := lengths[len(lengths)-1]
			partial := 0
			for i, n := range lengths {
				if i > 0 && n > lengths[i-1] && n > 0 && n < final {
					partial++
				}
			}
			if partial < 3 {
				t.Errorf("reply lengths as rendered: %v; want at least 3 growing partial lengths before the final %d", lengths, final)
			}
			replyID := eval[string](b, newestAssistant+`.dataset.id`)
			stored := l.message(token, replyID)
			if stored.Status != "complete" || stored.Content == "" {
				t.Fatalf("stored reply: %+v", stored)
			}
			sameAsStored(b, replyID, stored.Content)

			// The title appears once generated (the demo model titles with the first words).
			const title = "Tell me about the moon"
			b.waitJS("the title", `document.querySelector('#chat-title').textContent === `+jsString(title), 15*time.Second)

			// The balance went down, live, and matches the API.
			b.waitJS("the balance to change", `document.querySelector('#credits').dataset.available !== '1000' && document.querySelector('#credits').dataset.reserved === '0'`, 10*time.Second)
			waitFor(t, "the balance on screen to match the API", 10*time.Second, func() bool {
				return eval[string](b, `document.querySelector('#credits').dataset.available`) == fmt.Sprint(l.credits(token).Available)
			})
			if stored := l.message(token, replyID); stored.CreditsCharged <= 0 {
				t.Errorf("the reply was not charged: %+v", stored)
			}
			b.shot("05-title-and-balance")
			b.noStrayValues()

			// A second reply, stopped mid-way.
			b.typeInto("#composer-input", "Now tell me about the stars")
			b.pressEnter(false)
			b.waitJS("the second reply to stream", `document.querySelectorAll('#chat-view article.message.assistant').length === 2 && `+
				newestAssistant+`.querySelector('.content').textContent.length >= 20`, 15*time.Second)
			b.shot("06-streaming")
			b.click("#stop-button")
			b.waitJS("the reply to stop", newestAssistant+`.dataset.status === 'cancelled'`, 15*time.Second)
			b.waitJS("the stop button to go", `document.querySelector('#stop-button').hidden && !document.querySelector('#send-button').hidden`, 5*time.Second)
			if meta := eval[string](b, newestAssistant+`.querySelector('.meta').textContent`); !strings.Contains(meta, "Stopped") {
				t.Errorf("stopped reply's note: %q", meta)
			}
			stoppedID := eval[string](b, newestAssistant+`.dataset.id`)
			stopped := l.message(token, stoppedID)
			if stopped.Status != "cancelled" || strings.Contains(stopped.Content, "To try a real model") {
				t.Errorf("stopped reply is not partial: %+v", stopped) // every demo reply ends with that sentence
			}
			sameAsStored(b, stoppedID, stopped.Content)
			b.shot("07-stopped")

			// Back to the list (the back button, on phones): the conversation is there, titled.
			if vp.mobile {
				b.click("#back")
				b.waitJS("the conversation list", `getComputedStyle(document.querySelector('.sidebar')).display !== 'none'`, 5*time.Second)
			}
			b.waitJS("the titled conversation in the list", `document.querySelector('#conversation-list .conversation-title')?.textContent === `+jsString(title), 5*time.Second)
			b.shot("08-list")

			// An image: the price before generating, live status, the gallery, full size.
			b.click("#open-images")
			b.waitJS("the image form", `document.querySelector('#image-cost')`, 5*time.Second)
			if cost := eval[string](b, `document.querySelector('#image-cost').textContent`); !strings.Contains(cost, "50 credits") {
				t.Errorf("image price shown: %q", cost)
			}
			before := l.credits(token).Available
			b.typeInto("#image-prompt", "A red fox asleep in the snow")
			b.click(`input[name=resolution][value="512"]`)
			b.click("#image-generate")
			b.waitJS("the job in the gallery", `document.querySelector('#gallery .image-card')`, 10*time.Second)
			b.shot("09-image-pending")
			b.waitJS("the finished image", `(() => { const img = document.querySelector('#gallery .image-card[data-status=completed] img');
				return img && img.complete && img.naturalWidth === 512; })()`, 30*time.Second)
			b.shot("10-gallery")
			b.noStrayValues()
			b.click("#gallery .image-card .thumb")
			b.waitJS("the full-size view", `document.querySelector('#lightbox').open && document.querySelector('#lightbox img').naturalWidth === 512`, 10*time.Second)
			b.shot("11-full-size")
			b.do(chromedp.KeyEvent(kb.Escape))
			b.waitJS("the full-size view to close", `!document.querySelector('#lightbox').open`, 5*time.Second)
			waitFor(t, "the image's price to show in the balance", 10*time.Second, func() bool {
				return eval[string](b, `document.querySelector('#credits').dataset.available`) == fmt.Sprint(before-50)
			})
		})
	}
}

// hostileReply is a reply that tries every way to get markup or script
// into the page.
const hostileReply = "Look: <script>window.__pwned='script'</script> and <img src=x onerror=\"window.__pwned='img'\"> and " +
	"[click me](javascript:window.__pwned='link') and <a href=\"javascript:window.__pwned='a'\">raw link</a> and " +
	"[data](data:text/html,<script>window.__pwned='data'</script>) and [rel](/v1/me) and ![pic](https://example.invalid/x.png) " +
	"and <svg onload=\"window.__pwned='svg'\"></svg> and **bold** and `<b>code</b>`\n\n" +
	"```html\n<script>window.__pwned='fence'</script>\n```\n\n" +
	"- item <iframe src=\"javascript:window.__pwned='iframe'\"></iframe>\n- [safe](https://example.com/page)\n"

func chunks(s string, n int) []string {
	var out []string
	for len(s) > 0 {
		k := min(n, len(s))
		out = append(out, s[:k])
		s = s[k:]
	}
	return out
}

func TestBrowserHostileReplyRunsNothing(t *testing.T) {
	t.Parallel()
	fake := llmtest.New(t)
	fake.SetDefault(llmtest.Script{Tokens: chunks(hostileReply, 9), TokenDelay: 3 * time.Millisecond}) // the title too
	l := startLuna(t, lunaOptions{fake: fake})
	b := newBrowser(t, desktop)
	b.open(l.url)
	b.signUp("eve@example.com")
	token := b.token()
	b.click("#new-chat")
	b.waitJS("the model", `document.querySelector('#model-select option[value="test-model"]')`, 10*time.Second)
	b.typeInto("#new-chat-message", "Say something dangerous")
	b.click("#new-chat-send")
	b.waitJS("the reply", newestAssistant+`?.dataset.status === 'complete'`, 20*time.Second)
	b.waitJS("the title", `document.querySelector('#conversation-list .conversation-title:not(.untitled)')`, 10*time.Second)
	// Give a stray onerror/onload every chance to run: wait for a full
	// round trip through the network and two frames.
	eval[bool](b, `fetch('/healthz').then(() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true)))))`)
	b.shot("hostile")

	if pwned := eval[string](b, `String(window.__pwned)`); pwned != "undefined" {
		t.Errorf("the reply ran script: window.__pwned = %q", pwned)
	}
	if bad := eval[[]string](b, `[...document.querySelectorAll('.message .content *, #conversation-list .conversation-link *, #chat-title *')]
		.filter(e => ['SCRIPT','IMG','IFRAME','OBJECT','EMBED','SVG','STYLE','LINK','META','BASE','FORM','INPUT','VIDEO','AUDIO'].includes(e.tagName.toUpperCase()))
		.map(e => e.outerHTML)`); len(bad) > 0 {
		t.Errorf("the reply created elements: %v", bad)
	}
	if bad := eval[[]string](b, `[...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).map(e => e.tagName)`); len(bad) > 0 {
		t.Errorf("elements with event-handler attributes: %v", bad)
	}
	if n := eval[int](b, `document.scripts.length`); n != 1 {
		t.Errorf("%d scripts in the page, want only main.js", n)
	}
	type link struct {
		Href, Rel, Target, Text string
	}
	links := eval[[]link](b, `[...document.querySelectorAll('.message .content a')].map(a => ({href: a.href, rel: a.rel, target: a.target, text: a.textContent}))`)
	if len(links) != 2 {
		t.Errorf("links in the reply: %+v; want the https link and the image as a link", links)
	}
	for _, a := range links {
		if !strings.HasPrefix(a.Href, "https://") || a.Target != "_blank" || !strings.Contains(a.Rel, "noopener") || !strings.Contains(a.Rel, "noreferrer") {
			t.Errorf("unsafe link in the reply: %+v", a)
		}
	}
	text := eval[string](b, newestAssistant+`.querySelector('.content').textContent`)
	for _, want := range []string{
		"<script>window.__pwned='script'</script>", `<img src=x onerror="window.__pwned='img'">`,
		"[click me](javascript:window.__pwned='link')", "[rel](/v1/me)", "<b>code</b>",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("reply text lacks %q (shown as text): %q", want, text)
		}
	}
	if n := eval[int](b, newestAssistant+`.querySelectorAll('strong, pre code, li, .content code').length`); n < 4 {
		t.Errorf("markdown not rendered (%d formatted elements)", n)
	}
	id := eval[string](b, newestAssistant+`.dataset.id`)
	sameAsStored(b, id, l.message(token, id).Content)
}

func TestBrowserMarkdown(t *testing.T) {
	t.Parallel()
	l := startLuna(t, lunaOptions{})
	b := newBrowser(t, desktop)
	b.open(l.url)
	b.waitJS("the page", `document.querySelector('#auth-form')`, 15*time.Second)
	// render returns the rendered HTML of src, for comparison.
	render := func(src string) string {
		return eval[string](b, fmt.Sprintf(`import('/static/js/markdown.js').then(m => {
			const d = document.createElement('div');
			d.append(m.renderMarkdown(%s));
			return new XMLSerializer().serializeToString(d).replace(/^<div xmlns="[^"]*">|<\/div>$/g, '');
		})`, jsString(src)))
	}
	const a = `<a href="https://example.com/" target="_blank" rel="noopener noreferrer nofollow" referrerpolicy="no-referrer">`
	for _, tc := range []struct{ src, want string }{
		{"Hello *world* and **bold** and ***both*** and ~~gone~~", "<p>Hello <em>world</em> and <strong>bold</strong> and <strong><em>both</em></strong> and <del>gone</del></p>"},
		{"snake_case_name and 2 * 3 * 4", "<p>snake_case_name and 2 * 3 * 4</p>"},
		{"a `<i>x</i>` b", "<p>a <code>&lt;i&gt;x&lt;/i&gt;</code> b</p>"},
		{"- one\n- two\n  - nested", "<ul><li>one</li><li>two<ul><li>nested</li></ul></li></ul>"},
		{"3. three\n4. four", `<ol start="3"><li>three</li><li>four</li></ol>`},
		{"# Title\n\ntext", `<h2 class="md-heading">Title</h2><p>text</p>`},
		{"### Deep\n\n#### Deeper\n\n# Top\n\n### Skip", `<h2 class="md-heading">Deep</h2><h3 class="md-heading">Deeper</h3><h2 class="md-heading">Top</h2><h3 class="md-heading">Skip</h3>`},
		{"```nosuchlanguage\nx < y", `<div class="md-code"><div class="md-code-head"><span class="md-code-lang">nosuchlanguage</span><button class="md-code-copy" type="button">Copy</button></div><pre><code class="hljs">x &lt; y</code></pre></div>`},
		{"> quoted", "<blockquote><p>quoted</p></blockquote>"},
		{"line one\nline two", "<p>line one<br />line two</p>"},
		{"[x](https://example.com/)", "<p>" + a + "x</a></p>"},
		{"see https://example.com/.", "<p>see " + a + "https://example.com/</a>.</p>"},
		{"[x](javascript:alert(1))", "<p>[x](javascript:alert(1))</p>"},
		{"[x](JaVaScRiPt:alert(1))", "<p>[x](JaVaScRiPt:alert(1))</p>"},
		{"[x](java\tscript:alert(1))", "<p>[x](java\tscript:alert(1))</p>"},
		{"[x](vbscript:msgbox)", "<p>[x](vbscript:msgbox)</p>"},
		{"[x](data:text/html,hi)", "<p>[x](data:text/html,hi)</p>"},
		{"[x](//evil.example/)", "<p>[x](//evil.example/)</p>"},
		{"[x](file:///etc/passwd)", "<p>[x](file:///etc/passwd)</p>"},
		{"<javascript:alert(1)>", "<p>&lt;javascript:alert(1)&gt;</p>"},
		{"| a | b |\n|---|--:|\n| 1 | 2 |", `<div class="md-table"><table><thead><tr><th>a</th><th class="align-right">b</th></tr></thead><tbody><tr><td>1</td><td class="align-right">2</td></tr></tbody></table></div>`},
		{"```go\nfmt.Println(\"<hi>\")", `<div class="md-code"><div class="md-code-head"><span class="md-code-lang">go</span><button class="md-code-copy" type="button">Copy</button></div><pre><code class="hljs">fmt.Println(<span class="hljs-string">"&lt;hi&gt;"</span>)</code></pre></div>`},
	} {
		if got := render(tc.src); got != tc.want {
			t.Errorf("render %q\n got: %s\nwant: %s", tc.src, got, tc.want)
		}
	}
	// Pathological input renders quickly.
	start := time.Now()
	eval[bool](b, `import('/static/js/markdown.js').then(m => { m.renderMarkdown('['.repeat(20000) + '*a'.repeat(5000) + '`+"`"+`'.repeat(3000)); return true; })`)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("pathological markdown took %v", d)
	}
}

func TestBrowserReconnectMidReply(t *testing.T) {
	t.Parallel()
	l := startLuna(t, lunaOptions{proxy: true})
	b := newBrowser(t, desktop)
	b.open(l.url)
	b.signUp("grace@example.com")
	token := b.token()
	b.click("#new-chat")
	b.waitJS("the demo model", `document.querySelector('#model-select option[value]:not([value=""])')`, 10*time.Second)
	b.typeInto("#new-chat-message", "Tell me a long story about the sea")
	b.click("#new-chat-send")
	b.waitJS("the reply to stream", newestAssistant+`?.dataset.status === 'streaming' && `+newestAssistant+`.querySelector('.content').textContent.length >= 20`, 15*time.Second)
	id := eval[string](b, newestAssistant+`.dataset.id`)

	// Cut the network mid-reply. The reply goes on on the server.
	l.proxy.cut()
	atCut := len(l.message(token, id).Content)
	waitFor(t, "the reply to grow on the server while the browser is cut off", 10*time.Second, func() bool {
		m := l.message(token, id)
		return len(m.Content) >= atCut+40 || m.Status != "streaming"
	})
	waitFor(t, "the browser to try to reconnect", 10*time.Second, func() bool { return l.proxy.refused.Load() >= 2 })
	b.waitJS("the page to say it is reconnecting", `!document.querySelector('#connection').hidden`, 5*time.Second)
	b.shot("cut-off")

	l.proxy.restore()
	b.waitJS("the reply to finish", newestAssistant+`.dataset.status === 'complete'`, 30*time.Second)
	b.waitJS("the reconnecting notice to go", `document.querySelector('#connection').hidden`, 10*time.Second)
	b.shot("restored")
	stored := l.message(token, id)
	if stored.Status != "complete" {
		t.Fatalf("stored reply: %+v", stored)
	}
	sameAsStored(b, id, stored.Content)

	resumed := false
	for _, lastID := range l.proxy.streamResumes() {
		if lastID != "" && lastID != "0" {
			resumed = true
		}
	}
	if !resumed {
		t.Errorf("the reply stream was never resumed with Last-Event-ID: %q", l.proxy.streamResumes())
	}
	// The live events came back too: the balance is current.
	waitFor(t, "the balance on screen to match the API", 10*time.Second, func() bool {
		return eval[string](b, `document.querySelector('#credits').dataset.available`) == fmt.Sprint(l.credits(token).Available)
	})
}

func TestBrowserReadableErrors(t *testing.T) {
	t.Parallel()
	fake := llmtest.New(t)
	fake.Enqueue(llmtest.Script{Tokens: []string{"Partial ", "answer ", "so ", "far"}, ErrorEventAt: 2, ErrorMessage: "CUDA out of memory"})
	l := startLuna(t, lunaOptions{fake: fake})
	b := newBrowser(t, desktop)
	b.open(l.url)
	b.signUp("linus@example.com")
	token := b.token()

	// An upstream failure mid-reply: the partial text stays, with a readable error.
	b.click("#new-chat")
	b.waitJS("the model", `document.querySelector('#model-select option[value]:not([value=""])')`, 10*time.Second)
	b.typeInto("#new-chat-message", "Hello there")
	b.click("#new-chat-send")
	b.waitJS("the failed reply", newestAssistant+`?.dataset.status === 'error'`, 20*time.Second)
	msg := eval[string](b, newestAssistant+`.querySelector('.message-error').textContent`)
	if !strings.Contains(msg, "CUDA out of memory. ") || !strings.HasSuffix(msg, " Credits for it were released.") {
		t.Errorf("upstream error shown as %q", msg)
	}
	id := eval[string](b, newestAssistant+`.dataset.id`)
	sameAsStored(b, id, l.message(token, id).Content)
	b.shot("upstream-error")
	b.noStrayValues()

	// No credits left: the send is refused with words, and the text is kept.
	var me struct{ ID string }
	l.do("GET", "/v1/me", token, nil, &me)
	c := l.credits(token)
	if _, err := l.app.Ledger().Adjust(context.Background(), credits.AdjustRequest{UserID: me.ID, Amount: -c.Available, IdempotencyKey: "drain", Note: "test"}); err != nil {
		t.Fatal(err)
	}
	b.do(chromedp.Reload()) // the balance is read afresh (an operator's adjustment sends no live event)
	b.waitJS("the empty balance", `document.querySelector('#credits')?.dataset.available === '0'`, 10*time.Second)
	b.typeInto("#composer-input", "One more question")
	b.pressEnter(false)
	b.waitJS("the refusal", `!document.querySelector('#chat-error').hidden`, 10*time.Second)
	if got := eval[string](b, `document.querySelector('#chat-error').textContent`); !strings.Contains(got, "enough credits") {
		t.Errorf("insufficient credits shown as %q", got)
	}
	if got := eval[string](b, `document.querySelector('#composer-input').value`); got != "One more question" {
		t.Errorf("the unsent text was not kept: %q", got)
	}
	b.shot("no-credits")
}

func TestBrowserHistoryAndKeyboard(t *testing.T) {
	t.Parallel()
	fake := llmtest.New(t)
	l := startLuna(t, lunaOptions{fake: fake})
	token := l.signup("hopper@example.com")
	var conv struct{ ID string }
	l.do("POST", "/v1/conversations", token, map[string]string{"modelId": "test-model"}, &conv)
	const exchanges = 28 // 56 messages: more than the first page (50)
	for i := 1; i <= exchanges; i++ {
		var sent struct{ AssistantMessage apiMessage }
		if st := l.do("POST", "/v1/conversations/"+conv.ID+"/messages", token, map[string]string{"content": fmt.Sprintf("message %d", i)}, &sent); st != 201 {
			t.Fatalf("send %d: %d", i, st)
		}
		waitFor(t, "the reply", 10*time.Second, func() bool { return l.message(token, sent.AssistantMessage.ID).Status == "complete" })
	}

	b := newBrowser(t, phone)
	b.open(l.url)
	// Sign in (not up) through the form.
	b.typeInto("#auth-email", "hopper@example.com")
	b.typeInto("#auth-password", "password123")
	b.pressEnter(false)
	b.waitJS("the conversation", `document.querySelector('#conversation-list .conversation-link')`, 15*time.Second)
	b.click("#conversation-list .conversation-link")
	b.waitJS("the newest page", `document.querySelectorAll('#chat-view article.message').length === 50`, 10*time.Second)
	b.shot("newest-page")
	eval[bool](b, `(document.querySelector('#messages').scrollTop = 0, true)`)
	b.waitJS("the older messages", `document.querySelectorAll('#chat-view article.message').length === 56`, 10*time.Second)
	b.waitJS("the beginning", `!document.querySelector('.beginning').hidden`, 5*time.Second)
	if first := eval[string](b, `document.querySelector('#chat-view article.message.user .content').textContent`); first != "message 1" {
		t.Errorf("first message shown: %q", first)
	}
	b.shot("history")
	b.noStrayValues()

	// Shift+Enter starts a new line; Enter sends.
	b.typeInto("#composer-input", "first line")
	b.pressEnter(true)
	b.do(chromedp.SendKeys(chromedp.CSS("#composer-input"), "second line"))
	if got := eval[string](b, `document.querySelector('#composer-input').value`); got != "first line\nsecond line" {
		t.Errorf("composer after Shift+Enter: %q", got)
	}
	if n := eval[int](b, `document.querySelectorAll('#chat-view article.message').length`); n != 56 {
		t.Errorf("Shift+Enter sent the message (%d messages)", n)
	}
	b.pressEnter(false)
	b.waitJS("the sent message", `[...document.querySelectorAll('#chat-view article.message.user .content')].pop().textContent === 'first line\nsecond line'`, 10*time.Second)
	b.waitJS("its reply", newestAssistant+`.dataset.status === 'complete'`, 10*time.Second)
	if got := eval[string](b, `document.querySelector('#composer-input').value`); got != "" {
		t.Errorf("composer not cleared: %q", got)
	}
	b.shot("multi-line")
}

func TestBrowserSecondUserSeesNothing(t *testing.T) {
	t.Parallel()
	l := startLuna(t, lunaOptions{})
	// The first user chats and makes an image (through the API).
	first := l.signup("first@example.com")
	var conv struct{ ID string }
	l.do("POST", "/v1/conversations", first, map[string]string{"modelId": "luna-demo"}, &conv)
	sendAndWait := func(text string) {
		var sent struct{ AssistantMessage apiMessage }
		if st := l.do("POST", "/v1/conversations/"+conv.ID+"/messages", first, map[string]string{"content": text}, &sent); st != 201 {
			t.Fatalf("send: %d", st)
		}
		waitFor(t, "the first user's reply", 20*time.Second, func() bool { return l.message(first, sent.AssistantMessage.ID).Status == "complete" })
	}
	sendAndWait("Secret plans of the first user")
	var job struct{ ID string }
	l.do("POST", "/v1/images", first, map[string]any{"prompt": "Secret picture of the first user", "resolution": 512}, &job)
	waitFor(t, "the first user's image", 30*time.Second, func() bool {
		var j struct{ Status string }
		l.do("GET", "/v1/images/"+job.ID, first, nil, &j)
		return j.Status == "completed"
	})

	b := newBrowser(t, desktop)
	b.open(l.url)
	b.signUp("second@example.com")
	b.waitJS("the empty list", `!document.querySelector('.list-empty').hidden`, 10*time.Second)
	b.click("#open-images")
	b.waitJS("the empty gallery", `!document.querySelector('#gallery-empty').hidden`, 10*time.Second)
	b.shot("empty")

	// The first user's conversation, by its address: not found.
	b.open(l.url + "/#/c/" + conv.ID)
	b.waitJS("not found", `document.querySelector('.not-found')`, 10*time.Second)
	b.shot("not-found")

	// The first user keeps going while the second is signed in; the second
	// then chats too (so their live events have flowed).
	sendAndWait("More secret plans")
	b.click("#new-chat")
	b.waitJS("the demo model", `document.querySelector('#model-select option[value]:not([value=""])')`, 10*time.Second)
	b.typeInto("#new-chat-message", "Hello from the second user")
	b.click("#new-chat-send")
	b.waitJS("the reply", newestAssistant+`?.dataset.status === 'complete'`, 30*time.Second)
	b.waitJS("the title", `document.querySelector('#chat-title').textContent === 'Hello from the second user'`, 15*time.Second)
	if n := eval[int](b, `document.querySelectorAll('#conversation-list .conversation').length`); n != 1 {
		t.Errorf("the second user's list has %d conversations, want only their own", n)
	}
	b.click("#open-images")
	b.waitJS("the gallery", `!document.querySelector('#gallery-empty').hidden`, 10*time.Second)
	body := eval[string](b, `document.body.textContent`)
	for _, secret := range []string{"Secret", "secret"} {
		if strings.Contains(body, secret) {
			t.Errorf("the second user's page shows %q from the first user", secret)
		}
	}
	if n := eval[int](b, `document.querySelectorAll('#gallery .image-card').length`); n != 0 {
		t.Errorf("the second user's gallery has %d images", n)
	}

	// Sign out, and the first user signs in: their conversation is there.
	b.click("#account-button")
	b.click("#signout")
	b.waitJS("the sign-in screen", `document.querySelector('#auth-form')`, 10*time.Second)
	if tok := b.token(); tok != "" {
		t.Errorf("token kept after sign-out: %q", tok)
	}
	b.typeInto("#auth-email", "first@example.com")
	b.typeInto("#auth-password", "password123")
	b.click("#auth-submit")
	b.waitJS("the first user's conversation", `document.querySelector('#conversation-list .conversation-title')?.textContent === 'Secret plans of the first'`, 15*time.Second)
	b.shot("first-user")
}

func TestBrowserSignInModes(t *testing.T) {
	t.Parallel()
	b := newBrowser(t, phone)

	// Invite-only sign-up, and a wrong password.
	invite := startLuna(t, lunaOptions{configure: func(c *app.Config) { c.SignupMode = "invite" }})
	b.open(invite.url)
	b.click("#tab-signup")
	b.typeInto("#auth-email", "nobody@example.com")
	b.typeInto("#auth-password", "password123")
	b.click("#auth-submit")
	b.waitJS("the invite message", `document.querySelector('#auth-error').textContent.includes('invite code')`, 10*time.Second)
	b.waitJS("focus on the invite field", `document.activeElement === document.querySelector('#auth-invite')`, 5*time.Second)
	b.shot("invite-required")
	b.click("#tab-signin")
	b.click("#auth-submit")
	b.waitJS("the wrong-password message", `document.querySelector('#auth-error').textContent === 'Wrong email or password.'`, 10*time.Second)

	// Clerk mode: the page learns it from GET /v1/auth/config and says at
	// once that sign-in happens in the app.
	clerk := startClerkLuna(t)
	b.open(clerk.url)
	b.waitJS("the Clerk notice", `!document.querySelector('#clerk-notice').hidden && document.querySelector('#auth-form').hidden`, 10*time.Second)
	if got := eval[string](b, `document.querySelector('#clerk-notice').textContent`); !strings.Contains(got, "Sign-in happens in the Luna app") {
		t.Errorf("Clerk notice: %q", got)
	}
	b.shot("clerk")
}
