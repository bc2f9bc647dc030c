package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"luna/internal/app"
	"luna/internal/chat"
	"luna/internal/clerk/clerktest"
	"luna/internal/llm/llmtest"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// fastChat makes the engine's timers short so tests run quickly.
var fastChat = chat.Config{
	FlushInterval: 40 * time.Millisecond, LeaseTTL: 2 * time.Second, LeaseRenewEvery: 300 * time.Millisecond,
	SweepInterval: 200 * time.Millisecond, HeartbeatEvery: time.Second, TitleTimeout: 5 * time.Second,
}

// luna is a whole Luna (app.New) behind real HTTP on loopback, with the
// demo image endpoint, and either the demo model or a fake vLLM.
type luna struct {
	t      *testing.T
	app    *app.App
	direct string    // Luna's own address
	url    string    // where the browser goes: Luna, or the proxy in front of it
	proxy  *cutProxy // nil unless asked for
	fake   *llmtest.Fake
}

type lunaOptions struct {
	fake      *llmtest.Fake // the model; nil = the built-in demo model
	proxy     bool          // put a proxy whose connections can be cut in front
	configure func(*app.Config)
}

func startLuna(t *testing.T, opts lunaOptions) *luna {
	t.Helper()
	chromiumPath(t) // skip (or fail) before starting anything
	ctx := context.Background()
	cfg := app.Config{
		DatabaseURL: storetest.URL(t, store.SQLite), DataDir: t.TempDir(),
		Addr: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second,
		Auth: "local", SignupMode: "open", InitialCredits: 1000, AuthRateLimit: 1000, UserRateLimit: 1000,
		Chat: fastChat,
	}
	if opts.fake != nil {
		cfg.ModelsFile = modelsFile(t, opts.fake.BaseURL())
	} else {
		cfg.Demo = true
	}
	if opts.configure != nil {
		opts.configure(&cfg)
	}
	a, err := app.New(ctx, cfg)
	if err != nil {
		t.Fatalf("start luna: %v", err)
	}
	ln, err := a.Listen()
	if err != nil {
		a.Close()
		t.Fatalf("listen: %v", err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- a.Serve(serveCtx, ln) }()
	url := "http://" + ln.Addr().String()
	l := &luna{t: t, app: a, direct: url, url: url, fake: opts.fake}
	t.Cleanup(func() {
		stop() // as SIGTERM does: graceful shutdown, event streams closed
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		a.Close()
	})
	if opts.proxy {
		l.proxy = newCutProxy(t, url)
		l.url = l.proxy.srv.URL
	}
	return l
}

// startClerkLuna starts Luna in Clerk mode (against a fake Clerk).
func startClerkLuna(t *testing.T) *luna {
	t.Helper()
	fake := clerktest.New(t)
	return startLuna(t, lunaOptions{configure: func(c *app.Config) {
		c.Auth = "clerk"
		c.ClerkIssuer = fake.Issuer()
		c.ClerkJWKSURL = fake.JWKSURL()
	}})
}

// modelsFile writes a models file with one model served by the fake vLLM.
func modelsFile(t *testing.T, baseURL string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "models.toml")
	content := fmt.Sprintf(`[[model]]
id = "test-model"
name = "Test Model"
description = "A fake vLLM for the browser tests."
base_url = %q
api_key = "sk-test"
served_model_name = "test/served-model"
context_tokens = 8192
max_output_tokens = 256
credits_per_1k_tokens = 10
first_token_timeout = "2s"
`, baseURL)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// do calls Luna's API directly (not through the proxy) and decodes the
// JSON answer into out (when not nil).
func (l *luna) do(method, path, token string, body any, out any) int {
	l.t.Helper()
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			l.t.Fatal(err)
		}
		r = strings.NewReader(string(data))
	}
	req, err := http.NewRequest(method, l.direct+path, r)
	if err != nil {
		l.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		l.t.Fatal(err)
	}
	if out != nil && resp.StatusCode < 300 && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			l.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

// signup creates a user through the API and returns its token.
func (l *luna) signup(email string) string {
	l.t.Helper()
	var s struct{ Token string }
	if st := l.do("POST", "/v1/auth/signup", "", map[string]string{"email": email, "password": "password123"}, &s); st != http.StatusCreated {
		l.t.Fatalf("signup %s: %d", email, st)
	}
	return s.Token
}

type apiMessage struct {
	ID             string `json:"id"`
	Role           string `json:"role"`
	Content        string `json:"content"`
	Status         string `json:"status"`
	CreditsCharged int64  `json:"creditsCharged"`
}

type apiCredits struct {
	Balance, Reserved, Available int64
}

func (l *luna) message(token, id string) apiMessage {
	l.t.Helper()
	var m apiMessage
	if st := l.do("GET", "/v1/messages/"+id, token, nil, &m); st != http.StatusOK {
		l.t.Fatalf("get message %s: %d", id, st)
	}
	return m
}

func (l *luna) credits(token string) apiCredits {
	l.t.Helper()
	var me struct{ Credits apiCredits }
	if st := l.do("GET", "/v1/me", token, nil, &me); st != http.StatusOK {
		l.t.Fatalf("GET /v1/me: %d", st)
	}
	return me.Credits
}

// waitFor checks cond every 20 ms until it holds (or fails the test after
// timeout).
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cutProxy forwards to Luna and can cut the network: cut closes every
// connection and refuses new ones (the browser sees a network error) until
// restore. It records the Last-Event-ID of reply streams.
type cutProxy struct {
	srv     *httptest.Server
	down    atomic.Bool
	refused atomic.Int32

	mu      sync.Mutex
	resumes []string // Last-Event-ID of /v1/messages/…/stream requests, "" when absent
}

var streamPath = regexp.MustCompile(`^/v1/messages/[^/]+/stream$`)

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1 // stream events through at once
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			p.refused.Add(1)
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		// Bodies are read whole before they are forwarded: forwarded as they
		// came, the transport may read one again after Luna answered, find it
		// closed by this server, and cut the response.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		if streamPath.MatchString(r.URL.Path) {
			p.mu.Lock()
			p.resumes = append(p.resumes, r.Header.Get("Last-Event-ID"))
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.srv.Start()
	t.Cleanup(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
	})
	return p
}

func (p *cutProxy) cut() {
	p.down.Store(true)
	p.srv.CloseClientConnections()
}

func (p *cutProxy) restore() { p.down.Store(false) }

func (p *cutProxy) streamResumes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.resumes...)
}

// ---- the browser ----

// viewport is a screen size the app is tested at.
type viewport struct {
	name          string
	width, height int64
	mobile        bool
}

var (
	desktop = viewport{name: "desktop", width: 1280, height: 800}
	phone   = viewport{name: "phone", width: 390, height: 844, mobile: true}
)

// browser is a tab in a fresh headless Chromium.
type browser struct {
	t   *testing.T
	ctx context.Context
	vp  viewport

	shots string // where screenshots go

	mu       sync.Mutex
	problems []string // uncaught exceptions and security-policy violations
}

// chromiumPath returns the browser to test with, or skips the test (fails
// it when LUNA_TEST_REQUIRE_BROWSER=1, as on CI).
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("LUNA_TEST_CHROMIUM")
	if path == "" {
		if os.Getenv("LUNA_TEST_REQUIRE_BROWSER") == "1" {
			t.Fatal("LUNA_TEST_REQUIRE_BROWSER=1 but LUNA_TEST_CHROMIUM is not set")
		}
		t.Skip("browser test: set LUNA_TEST_CHROMIUM to a Chromium binary to run it (scripts/test.sh does)")
	}
	return path
}

// newBrowser starts Chromium with a fresh profile and opens a tab at the
// viewport's size.
func newBrowser(t *testing.T, vp viewport) *browser {
	t.Helper()
	path := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(int(vp.width), int(vp.height)),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx, vp: vp}
	if err := chromedp.Listen(ctx, b.listen); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	emu := []chromedp.EmulateViewportOption{chromedp.EmulatePortrait}
	if vp.mobile {
		emu = append(emu, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulateScale(2))
	}
	b.do(chromedp.EmulateViewport(vp.width, vp.height, emu...))
	t.Cleanup(b.checkProblems)
	return b
}

func (b *browser) listen(ev any) {
	var problem string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		problem = "uncaught exception: " + d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			problem += " " + d.Exception.Description
		}
	case *cdplog.EventEntryAdded:
		text := ev.Entry.Text
		if strings.Contains(text, "Content Security Policy") || strings.Contains(text, "Trusted Type") {
			problem = "security policy violation: " + text
		}
	}
	if problem != "" {
		b.mu.Lock()
		b.problems = append(b.problems, problem)
		b.mu.Unlock()
	}
}

// checkProblems fails the test if the page threw or broke its own policy.
func (b *browser) checkProblems() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("%s: %s", b.vp.name, p)
	}
}

// do runs actions with a bound on the time they may take.
func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: browser: %v", b.vp.name, err)
	}
}

// eval evaluates a JavaScript expression in the page (awaiting promises)
// and decodes its value.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: evaluate %s: %v", b.vp.name, expr, err)
	}
	return v
}

// waitJS waits until the expression is truthy in the page. (The page's
// policy forbids eval, so chromedp.Poll, which builds its predicate with
// new Function inside the page, cannot run there: the test polls from Go.)
func (b *browser) waitJS(what, expr string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// An exception (an element not there yet) counts as "not yet".
		state := eval[string](b, "(() => { try { return ("+expr+") ? 'yes' : 'no'; } catch (e) { return String(e); } })()")
		if state == "yes" {
			return
		}
		if time.Now().After(deadline) {
			b.shot("timeout")
			b.t.Fatalf("%s: timed out after %v waiting for %s (%s): %s", b.vp.name, timeout, what, expr, state)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// artifactsDir is where screenshots go: LUNA_TEST_ARTIFACTS, else a
// temporary directory of the test.
func artifactsDir(t *testing.T) string {
	if dir := os.Getenv("LUNA_TEST_ARTIFACTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// shot saves a screenshot of the viewport and logs its path.
func (b *browser) shot(step string) {
	b.t.Helper()
	if b.shots == "" {
		b.shots = artifactsDir(b.t)
	}
	base := b.t.Name()
	if !strings.HasSuffix(base, "/"+b.vp.name) {
		base += "-" + b.vp.name
	}
	name := regexp.MustCompile(`[^A-Za-z0-9_-]+`).ReplaceAllString(base+"-"+step, "_") + ".png"
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Logf("screenshot %s: %v", step, err)
		return
	}
	path := filepath.Join(b.shots, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

// open navigates to the app.
func (b *browser) open(url string) {
	b.t.Helper()
	b.do(chromedp.Navigate(url))
}

// click clicks the first element matching the CSS selector, once visible.
func (b *browser) click(sel string) {
	b.t.Helper()
	b.do(chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}

// typeInto types text into the element (keyboard events, like a person).
func (b *browser) typeInto(sel, text string) {
	b.t.Helper()
	b.do(chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Focus(chromedp.CSS(sel)), chromedp.SendKeys(chromedp.CSS(sel), text))
}

// pressEnter presses Enter (with Shift if asked) in the focused element the
// way a keyboard does: one keydown that carries the text "\r", so that a
// page that cancels the keydown gets no new line. (chromedp's SendKeys
// sends the character as a separate event, which a page cannot cancel.)
func (b *browser) pressEnter(shift bool) {
	b.t.Helper()
	down := input.DispatchKeyEventParams{Type: input.DispatchKeyEventTypeKeyDown, Key: "Enter", Code: "Enter",
		WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13, Text: "\r", UnmodifiedText: "\r"}
	if shift {
		down.Modifiers = int64(chromedp.ModifierShift)
	}
	up := down
	up.Type, up.Text, up.UnmodifiedText = input.DispatchKeyEventTypeKeyUp, "", ""
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	for _, ev := range []input.DispatchKeyEventParams{down, up} {
		if _, err := chromedp.Call(ctx, input.DispatchKeyEvent, ev); err != nil {
			b.t.Fatalf("%s: press Enter: %v", b.vp.name, err)
		}
	}
}

// signUp creates an account through the sign-up form.
func (b *browser) signUp(email string) {
	b.t.Helper()
	b.click("#tab-signup")
	b.typeInto("#auth-email", email)
	b.typeInto("#auth-password", "password123")
	b.click("#auth-submit")
	b.waitJS("the app after sign-up", `document.body.dataset.screen === 'app' && document.querySelector('#credits')?.dataset.available !== undefined`, 15*time.Second)
}

// noStrayValues fails the test if the page shows "undefined", "null",
// "NaN" or "[object Object]": a value that went to the screen unformatted.
func (b *browser) noStrayValues() {
	b.t.Helper()
	text := eval[string](b, `document.body.innerText`)
	if m := regexp.MustCompile(`\b(undefined|null|NaN)\b|\[object Object\]`).FindString(text); m != "" {
		b.t.Errorf("%s: the page shows %q: %q", b.vp.name, m, text)
	}
}

// token is the session token the page keeps.
func (b *browser) token() string {
	return eval[string](b, `localStorage.getItem('luna.token') || ''`)
}

// jsString quotes s for JavaScript.
func jsString(s string) string {
	data, _ := json.Marshal(s)
	return string(data)
}
