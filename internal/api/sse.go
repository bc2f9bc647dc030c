package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"luna"
)

// sseWriteTimeout bounds each write to a stream: a client that stops
// reading is dropped instead of holding a goroutine forever.
const sseWriteTimeout = 15 * time.Second

// sseWriter writes Server-Sent Events to one client. The stream's headers
// go out with the first event, so a handler can still answer an error
// before that.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

// startSSE answers the request with an event stream at once.
func startSSE(w http.ResponseWriter) (*sseWriter, error) {
	sw := newSSEWriter(w)
	return sw, sw.start()
}

func (sw *sseWriter) start() error {
	if sw.started {
		return nil
	}
	sw.started = true
	h := sw.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: don't buffer the stream
	sw.w.WriteHeader(http.StatusOK)
	return sw.flush()
}

func (sw *sseWriter) flush() error {
	if err := sw.rc.Flush(); err != nil {
		return fmt.Errorf("flush event stream: %w", err)
	}
	return nil
}

func (sw *sseWriter) deadline() {
	sw.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)) // not every writer supports deadlines
}

// event writes one event; id may be empty.
func (sw *sseWriter) event(name, id string, data any) error {
	payload, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if err := sw.start(); err != nil {
		return err
	}
	sw.deadline()
	if id != "" {
		if _, err := fmt.Fprintf(sw.w, "id: %s\n", id); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(sw.w, "event: %s\ndata: %s\n\n", name, payload); err != nil {
		return err
	}
	return sw.flush()
}

// comment writes an SSE comment (a heartbeat).
func (sw *sseWriter) comment(text string) error {
	if err := sw.start(); err != nil {
		return err
	}
	sw.deadline()
	if _, err := fmt.Fprintf(sw.w, ": %s\n\n", text); err != nil {
		return err
	}
	return sw.flush()
}

// streamContext ends when the request does, when the server closes its
// streams for shutdown, or when the session the stream was opened with ends
// (signed out or its user deleted, on any instance: told through the
// events bus, and checked every sessionCheckEvery in case a signal was
// missed).
func (s *Server) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	user, token := userFrom(r.Context()), tokenFrom(r.Context())
	watch := s.bus.WatchSession(user.ID, sessionKey(token))
	go func() {
		defer watch.Close()
		check := time.NewTicker(s.sessionCheckEvery)
		defer check.Stop()
		for {
			select {
			case <-s.streamsDone:
				cancel()
				return
			case <-watch.Ended:
				cancel()
				return
			case <-check.C:
				if !s.stillSignedIn(ctx, user, token) {
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return ctx, cancel
}

// sessionKey names a session on the events bus: a hash of its token (not
// the one stored in the database), so that a notification reveals nothing
// usable.
func sessionKey(token string) string {
	sum := sha256.Sum256([]byte("luna stream session\x00" + token))
	return hex.EncodeToString(sum[:16])
}

// endSessions closes the streams of one session of the user (key), or of
// all of them (key ""), on every instance.
func (s *Server) endSessions(ctx context.Context, userID, key string) {
	if err := s.bus.EndSessions(context.WithoutCancel(ctx), userID, key); err != nil {
		s.logger.ErrorContext(ctx, "tell instances a session ended", "user_id", userID, "err", err)
	}
}

// stillSignedIn reports whether a stream's session still holds: with
// built-in accounts, its token still authenticates (not signed out or
// expired, user not deleted); with Clerk, whose short-lived token is
// expected to expire under a long stream, its user is not deleted. A
// database failure keeps the stream open.
func (s *Server) stillSignedIn(ctx context.Context, user luna.User, token string) bool {
	var err error
	if s.authMode == AuthLocal {
		_, err = s.authenticator.Authenticate(ctx, token)
	} else {
		var u luna.User
		if u, err = s.accounts.GetUser(ctx, user.ID); err == nil && u.DeletedAt != nil {
			return false
		}
	}
	switch code := luna.ErrorCode(err); {
	case err == nil:
		return true
	case code == luna.CodeUnauthorized || code == luna.CodeNotFound:
		return false
	default:
		if ctx.Err() == nil {
			s.logger.WarnContext(ctx, "could not re-check a stream's session", "err", err)
		}
		return true
	}
}

// CloseStreams ends every open event stream (at shutdown, so that the
// HTTP server is not kept waiting by clients that never disconnect).
func (s *Server) CloseStreams() {
	s.closeStreams.Do(func() { close(s.streamsDone) })
}
