package web_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"luna/internal/web"
)

func get(t *testing.T, srv *httptest.Server, path string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestPageHeaders(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()

	resp := get(t, srv, "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type = %q", ct)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{
		"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
		"base-uri 'none'", "frame-ancestors 'none'", "object-src 'none'", "require-trusted-types-for 'script'", "trusted-types 'none'",
	} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy lacks %q: %s", want, csp)
		}
	}
	for _, banned := range []string{"unsafe-inline", "unsafe-eval", "*"} {
		if strings.Contains(csp, banned) {
			t.Errorf("Content-Security-Policy allows %q: %s", banned, csp)
		}
	}
	for name, want := range map[string]string{
		"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestStaticFiles(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()

	for path, wantType := range map[string]string{
		"/static/js/main.js":     "text/javascript",
		"/static/app.css":        "text/css",
		"/static/favicon.svg":    "image/svg+xml",
		"/static/js/sse.js":      "text/javascript",
		"/static/js/markdown.js": "text/javascript",
	} {
		resp := get(t, srv, path)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, wantType) {
			t.Errorf("GET %s: Content-Type %q, want %s", path, ct, wantType)
		}
		etag := resp.Header.Get("ETag")
		if etag == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: ETag %q, nosniff %q", path, etag, resp.Header.Get("X-Content-Type-Options"))
			continue
		}
		// A revisit costs a 304.
		if again := get(t, srv, path, "If-None-Match", etag); again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match: %d, want 304", path, again.StatusCode)
		}
	}
	for _, path := range []string{"/static/", "/static/js/", "/static/index.html", "/static/nope.js", "/static/../web.go"} {
		if resp := get(t, srv, path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
}

// staticFiles returns the app's source files by name.
func staticFiles(t *testing.T) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir("static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(path)] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestNoHTMLSinks keeps the app free of the APIs that parse strings as
// HTML or code: model output must only ever become text nodes. (The page's
// Trusted Types policy makes the browser refuse them too; this finds them
// before a user does.)
func TestNoHTMLSinks(t *testing.T) {
	t.Parallel()
	sinks := regexp.MustCompile(`\.(innerHTML|outerHTML|insertAdjacentHTML|srcdoc)\b|document\.write|\beval\s*\(|new\s+Function\b|setTimeout\(\s*['"\x60]|createContextualFragment|DOMParser|\.setHTMLUnsafe|parseHTMLUnsafe|` +
		// highlight.js's functions that write its HTML into the page (the
		// app reads its output into nodes itself, see markdown.js).
		`\b(highlightElement|highlightAll|highlightBlock|initHighlighting)\b`)
	for name, src := range staticFiles(t) {
		if !strings.HasSuffix(name, ".js") || strings.HasPrefix(name, "static/vendor/") {
			continue // vendored libraries are used only through the calls checked here
		}
		for i, line := range strings.Split(src, "\n") {
			if loc := sinks.FindString(line); loc != "" {
				t.Errorf("%s:%d uses %s: build nodes with createElement/textContent instead", name, i+1, loc)
			}
		}
	}
}

// TestNoInlineCode checks that index.html has no inline scripts, styles or
// event handlers (the policy forbids them; the page would break).
func TestNoInlineCode(t *testing.T) {
	t.Parallel()
	html := staticFiles(t)["static/index.html"]
	if m := regexp.MustCompile(`<script(?:[^>]*)>\s*[^<\s]|<style|\sstyle=|\son[a-z]+=`).FindString(html); m != "" {
		t.Errorf("index.html has inline code: %q", m)
	}
}

// TestImportsResolve checks that every module import names a file that
// exists (a typo would only show as a blank page).
func TestImportsResolve(t *testing.T) {
	t.Parallel()
	files := staticFiles(t)
	imports := regexp.MustCompile(`(?m)^\s*import\s+(?:[^'"]*from\s+)?['"]([^'"]+)['"]`)
	for name, src := range files {
		if !strings.HasSuffix(name, ".js") {
			continue
		}
		for _, m := range imports.FindAllStringSubmatch(src, -1) {
			target := filepath.ToSlash(filepath.Join(filepath.Dir(name), m[1]))
			if _, ok := files[target]; !ok {
				t.Errorf("%s imports %s: no such file %s", name, m[1], target)
			}
		}
	}
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	resp := get(t, srv, "/")
	body, _ := io.ReadAll(resp.Body)
	for _, m := range regexp.MustCompile(`(?:src|href)="(/static/[^"]+)"`).FindAllStringSubmatch(string(body), -1) {
		if r := get(t, srv, m[1]); r.StatusCode != http.StatusOK {
			t.Errorf("index.html refers to %s: %d", m[1], r.StatusCode)
		}
	}
}
