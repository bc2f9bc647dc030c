// Package web is Luna's own web app: static files embedded in the binary,
// served by `luna serve` at /, using only the public API (like the iOS app).
//
// There is no build step: the app is plain ES modules and CSS in static/,
// so what is in the repository is what the browser runs.
//
//	static/index.html       the empty page; everything is built by js/main.js
//	static/app.css          the styles (sidebar + chat on wide screens, separate screens on phones)
//	static/js/main.js       session, shell, live balance, /v1/events, hash routing
//	static/js/api.js        fetch with the bearer token; error codes in words
//	static/js/sse.js        SSE parser over fetch, reconnection with Last-Event-ID
//	static/js/markdown.js   model output to DOM nodes (never HTML strings)
//	static/js/chat.js       a conversation: history, streaming reply, stop
//	static/js/usage.js      the usage history (the ledger), opened from the balance
//	static/js/…             sign-in, conversation list, new chat, images
//	static/vendor/highlight highlight.js (ES module build, BSD-3-Clause) for code colours
//
// The browser tests also scan every screen with axe-core (testdata/axe-core,
// a test asset only) at desktop and phone sizes.
//
// The browser tests (package web_test) run the app in headless Chromium
// against a whole Luna; see harness_test.go.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is the policy of the page. Scripts, styles, fonts
// and API calls come only from Luna itself; nothing inline, no eval, no
// plugins, no framing. Images may also come from object storage (presigned
// https: URLs). Trusted Types are required with no policy allowed, so the
// browser itself refuses any HTML string written into the page (innerHTML
// and friends): model output can only ever become text nodes.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: https:; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; " +
	"object-src 'none'; require-trusted-types-for 'script'; trusted-types 'none'"

// Handler serves the web app: index.html at "/" and its assets under
// "/static/". imageOrigins widens the policy's img-src for object storage
// reached over plain http (a local S3-compatible server, say).
func Handler(imageOrigins ...string) http.Handler {
	policy := ContentSecurityPolicy
	if len(imageOrigins) > 0 {
		policy = strings.Replace(policy, "img-src 'self' data: blob: https:;", "img-src 'self' data: blob: https: "+strings.Join(imageOrigins, " ")+";", 1)
	}
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	etags, err := hashFiles(files)
	if err != nil {
		panic(err)
	}
	fileServer := http.StripPrefix("/static/", http.FileServerFS(files))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/static/")
		etag, ok := etags[name]
		if !ok || name == "index.html" { // no directory listings; the page lives at /
			http.NotFound(w, r)
			return
		}
		setCommonHeaders(w, etag)
		fileServer.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		setCommonHeaders(w, etags["index.html"])
		setPageHeaders(w, policy)
		http.ServeFileFS(w, r, files, "index.html")
	})
	return mux
}

// hashFiles returns a strong ETag for every embedded file. Embedded files
// have no modification time, so without ETags browsers would download every
// module on every visit; with them a revisit costs a 304 per file.
func hashFiles(files fs.FS) (map[string]string, error) {
	etags := map[string]string{}
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(files, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		etags[path] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	return etags, err
}

// setCommonHeaders makes browsers revalidate every file (cheaply, with the
// ETag) so that a new Luna binary is picked up at once, and never guess
// content types.
func setCommonHeaders(w http.ResponseWriter, etag string) {
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", etag)
	h.Set("X-Content-Type-Options", "nosniff")
}

// setPageHeaders applies the page's security policy: scripts and styles
// only from Luna itself, no inline code, no framing, no referrer leaks to
// the links in model replies.
func setPageHeaders(w http.ResponseWriter, policy string) {
	h := w.Header()
	h.Set("Content-Security-Policy", policy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
}
