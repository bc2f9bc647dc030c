package blob

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Handler serves the URLs that SignedURL makes: GET (and HEAD)
// BasePath/{key...}?expires=<unix>&sig=<signature>. Mount it on the path
// itself, without stripping the prefix, for example
//
//	mux.Handle("GET "+cfg.BasePath+"/", local.Handler())
//
// The signature is checked, in constant time, before anything else about
// the object, so a request without a valid one learns nothing: a missing
// or wrong signature, a signature made for another path and an expired URL
// all answer 403 with the JSON error {"error":{"code":"forbidden",...}}.
// A signed URL for a missing object answers 404. Directories are never
// listed. Range and conditional requests work as in http.ServeContent.
func (l *Local) Handler() http.Handler {
	return http.HandlerFunc(l.serve)
}

func (l *Local) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Only GET and HEAD are allowed here.")
		return
	}
	// The signature covers the path exactly as sent: any other spelling of
	// it (percent-encoded, with dot segments) fails, and so cannot reach a
	// file the URL was not made for.
	urlPath := r.URL.EscapedPath()
	now := l.now()
	expires, ok := l.verify(urlPath, r.URL.Query(), now)
	if !ok {
		writeError(w, http.StatusForbidden, "forbidden", "This link is invalid or has expired.")
		return
	}
	key, found := strings.CutPrefix(urlPath, l.basePath+"/")
	if !found || ValidateKey(key) != nil {
		writeError(w, http.StatusForbidden, "forbidden", "This link is invalid or has expired.")
		return
	}
	f, info, modTime, err := l.open(key)
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "There is no such file.")
		return
	}
	if err != nil {
		l.logger.ErrorContext(r.Context(), "serve stored object", "key", key, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "Something went wrong on our side.")
		return
	}
	defer f.Close()

	maxAge := int64(expires.Sub(now) / time.Second)
	h := w.Header()
	h.Set("Content-Type", info.ContentType)
	h.Set("Cache-Control", "private, max-age="+strconv.FormatInt(max(maxAge, 0), 10))
	h.Set("X-Content-Type-Options", "nosniff")
	// The files are served from Luna's own origin: should one ever be HTML
	// or SVG, the sandbox keeps its scripts away from the application.
	h.Set("Content-Security-Policy", "sandbox")
	http.ServeContent(w, r, "", modTime, f)
}

// verify checks the expires and sig parameters of a request for urlPath
// and returns the expiry time when the signature is valid and still in
// force at now. Each parameter must appear exactly once.
func (l *Local) verify(urlPath string, query map[string][]string, now time.Time) (time.Time, bool) {
	expiresValues, sigValues := query["expires"], query["sig"]
	if len(expiresValues) != 1 || len(sigValues) != 1 {
		return time.Time{}, false
	}
	sig, err := base64.RawURLEncoding.DecodeString(sigValues[0])
	if err != nil {
		return time.Time{}, false
	}
	if !hmac.Equal(sig, l.sign(urlPath, expiresValues[0])) {
		return time.Time{}, false
	}
	seconds, err := strconv.ParseInt(expiresValues[0], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	expires := time.Unix(seconds, 0)
	if !now.Before(expires) {
		return time.Time{}, false
	}
	return expires, true
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeError answers with Luna's JSON error shape.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(errorBody{Error: errorDetail{Code: code, Message: message}}) // the client went away
}
