package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"luna"
	"luna/internal/chat"
	"luna/internal/images"
)

type contextKey int

const (
	requestIDKey contextKey = iota
	userKey
	tokenKey
)

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// withRequestID gives every request an id, echoed in X-Request-Id and logs.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 8)
		rand.Read(b) //nolint:errcheck // crypto/rand does not fail
		id := hex.EncodeToString(b)
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status for the access log. It passes
// Unwrap through so http.ResponseController (flush, deadlines) still works.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		s.logger.DebugContext(r.Context(), "request", "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "duration", time.Since(start), "request_id", requestID(r.Context()))
	})
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.writeError(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func methodNotAllowed(s *Server, methods []string) http.Handler {
	allow := strings.Join(methods, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		s.writeError(w, r, errorf(luna.CodeMethodNotAllowed, "Use %s for %s.", allow, r.URL.Path))
	})
}

// bearerToken returns the token of an "Authorization: Bearer ..." header.
func bearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// requireUser lets the request through only with a valid bearer token, and
// puts the user in its context.
func (s *Server) requireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := bearerToken(r)
		if token == "" {
			s.writeError(w, r, errorf(luna.CodeUnauthorized, "Sign in to continue: send Authorization: Bearer <token>."))
			return
		}
		user, err := s.authenticator.Authenticate(r.Context(), token)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		ctx := context.WithValue(r.Context(), userKey, user)
		ctx = context.WithValue(ctx, tokenKey, token)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// validID answers 404 for an {id} path value that no resource can have,
// exactly like a missing resource, before any query: bytes a database
// refuses (invalid UTF-8, NUL) never reach one.
func (s *Server) validID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !luna.ValidID(r.PathValue("id")) {
			s.writeError(w, r, notFoundAt(r.URL.Path))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// notFoundAt is the not-found error of the resource a path names.
func notFoundAt(path string) error {
	switch {
	case strings.HasPrefix(path, "/v1/conversations/"):
		return chat.ErrConversationNotFound
	case strings.HasPrefix(path, "/v1/messages/"):
		return chat.ErrMessageNotFound
	case strings.HasPrefix(path, "/v1/images/"):
		return images.ErrNotFound
	}
	return errorf(luna.CodeNotFound, "Not found.")
}

// tokenFrom returns the bearer token of a request that passed requireUser.
func tokenFrom(ctx context.Context) string {
	t, _ := ctx.Value(tokenKey).(string)
	return t
}

// userFrom returns the signed-in user of a request that passed requireUser.
func userFrom(ctx context.Context) luna.User {
	u, _ := ctx.Value(userKey).(luna.User)
	return u
}

// rateLimiter is a fixed-window counter per key (client address). It is
// deliberately small: it guards sign-up and login against guessing, on one
// instance; it is not a quota system.
type rateLimiter struct {
	mu      sync.Mutex
	limit   int
	window  time.Duration
	start   time.Time
	counts  map[string]int
	nowFunc func() time.Time
}

func newRateLimiter(limit int, window time.Duration) *rateLimiter {
	return &rateLimiter{limit: limit, window: window, counts: map[string]int{}, nowFunc: time.Now}
}

// allow counts one attempt for key and reports whether it is within the
// limit, and otherwise how long until the window resets.
func (l *rateLimiter) allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.nowFunc()
	if now.Sub(l.start) >= l.window {
		l.start, l.counts = now, map[string]int{}
	}
	l.counts[key]++
	if l.counts[key] > l.limit {
		return false, l.start.Add(l.window).Sub(now)
	}
	return true, 0
}

// clientAddress is the address the auth rate limit counts by: the peer,
// or — behind a trusted reverse proxy — the address that proxy saw (the last
// entry of X-Forwarded-For, which the proxy appended).
func (s *Server) clientAddress(r *http.Request) string {
	if s.trustProxy {
		forwarded := r.Header.Values("X-Forwarded-For")
		if n := len(forwarded); n > 0 {
			parts := strings.Split(forwarded[n-1], ",")
			if last := strings.TrimSpace(parts[len(parts)-1]); last != "" {
				return last
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limitAuth limits sign-up and login attempts per client address.
func (s *Server) limitAuth(next http.HandlerFunc) http.HandlerFunc {
	return s.limit(s.authLimiter, s.clientAddress, "Too many attempts; try again in a minute.", next)
}

// limitUser limits a signed-in user's costly requests (sends, images).
func (s *Server) limitUser(next http.HandlerFunc) http.HandlerFunc {
	return s.limit(s.userLimiter, func(r *http.Request) string { return userFrom(r.Context()).ID },
		"Too many requests; slow down a little.", next)
}

func (s *Server) limit(l *rateLimiter, key func(*http.Request) string, message string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, retry := l.allow(key(r)); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(retry.Seconds())+1))
			s.writeError(w, r, errorf(luna.CodeRateLimited, "%s", message))
			return
		}
		next(w, r)
	}
}
