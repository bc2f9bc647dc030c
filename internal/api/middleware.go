package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"luna"
	"luna/internal/chat"
	"luna/internal/images"
	"luna/internal/ratelimit"
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
		rand.Read(b) // crypto/rand does not fail
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
	return s.limit(s.authLimiter, s.clientAddress, next)
}

// limitUser counts a signed-in user's request against their request rate.
// Sends and image requests count inside their own transactions instead
// (see userRate), so that a retried request is not counted twice.
func (s *Server) limitUser(next http.HandlerFunc) http.HandlerFunc {
	return s.limit(s.userLimiter, func(r *http.Request) string { return userFrom(r.Context()).ID }, next)
}

// limit answers 429 with Retry-After (see writeError) once key(r) is over
// l's limit; the count is one statement, shared by every instance.
func (s *Server) limit(l *ratelimit.Limiter, key func(*http.Request) string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := l.Allow(r.Context(), key(r)); err != nil {
			s.writeError(w, r, err)
			return
		}
		next(w, r)
	}
}

// userRate returns the function that counts a request of the signed-in
// user against their request rate inside the caller's transaction.
func (s *Server) userRate(r *http.Request) *ratelimit.Counter {
	return s.userLimiter.Counter(userFrom(r.Context()).ID)
}
