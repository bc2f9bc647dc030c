package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"luna"
)

// sseWriteTimeout bounds the writes to a stream: a client that stops
// reading is dropped instead of holding a goroutine forever. The deadline
// is moved once per sseDeadlineEvery (per batch of events, not per event),
// so a stalled client is dropped after between 10 and 15 s.
const (
	sseWriteTimeout  = 15 * time.Second
	sseDeadlineEvery = 5 * time.Second
)

// eventBuffers hold one event while it is encoded and written; a stream
// holds none between events.
var eventBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// sseWriter writes Server-Sent Events to one client. The stream's headers
// go out with the first event, so a handler can still answer an error
// before that.
type sseWriter struct {
	w          http.ResponseWriter
	rc         *http.ResponseController
	started    bool
	deadlineAt time.Time // when the write deadline was last moved
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

// deadline moves the write deadline when it was last moved
// sseDeadlineEvery ago or more.
func (sw *sseWriter) deadline() {
	now := time.Now()
	if now.Sub(sw.deadlineAt) < sseDeadlineEvery {
		return
	}
	sw.deadlineAt = now
	sw.rc.SetWriteDeadline(now.Add(sseWriteTimeout)) // not every writer supports deadlines
}

// event writes one event whose data is data encoded as JSON; id may be
// empty. For the events of a reply's text, textEvent does the same without
// reflection.
func (sw *sseWriter) event(name, id string, data any) error {
	payload, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	return sw.write(func(b []byte) []byte {
		if id != "" {
			b = append(append(append(b, "id: "...), id...), '\n')
		}
		return appendEvent(b, name, payload)
	})
}

// textEvent writes the event name with id offset and data {"field":text},
// as event would with a map[string]string, without maps or reflection.
func (sw *sseWriter) textEvent(name string, offset int, field, text string) error {
	return sw.write(func(b []byte) []byte {
		b = strconv.AppendInt(append(b, "id: "...), int64(offset), 10)
		b = append(append(append(b, "\nevent: "...), name...), "\ndata: {"...)
		b = appendJSONString(b, field)
		b = appendJSONString(append(b, ':'), text)
		return append(b, "}\n\n"...)
	})
}

func appendEvent(b []byte, name string, payload []byte) []byte {
	b = append(append(append(b, "event: "...), name...), "\ndata: "...)
	return append(append(b, payload...), "\n\n"...)
}

// comment writes an SSE comment (a heartbeat).
func (sw *sseWriter) comment(text string) error {
	return sw.write(func(b []byte) []byte {
		return append(append(append(b, ": "...), text...), "\n\n"...)
	})
}

// write starts the stream if needed, then writes what encode appends to a
// pooled buffer in one write, and flushes.
func (sw *sseWriter) write(encode func([]byte) []byte) error {
	if err := sw.start(); err != nil {
		return err
	}
	sw.deadline()
	buf := eventBuffers.Get().(*[]byte)
	*buf = encode((*buf)[:0])
	_, err := sw.w.Write(*buf)
	if cap(*buf) <= 64<<10 { // don't keep a huge snapshot's buffer
		eventBuffers.Put(buf)
	}
	if err != nil {
		return err
	}
	return sw.flush()
}

// appendJSONString appends s as a JSON string, byte for byte as
// encoding/json writes it (HTML-safe: <, > and & escaped; invalid UTF-8 as
// U+FFFD; U+2028 and U+2029 escaped).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(append(b, s[start:i]...), `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(append(b, s[start:]...), '"')
}

// streamContext ends when the request does, when the server closes its
// streams for shutdown, or when the session the stream was opened with ends
// (signed out or its user deleted, on any instance: told through the
// events bus, and checked every sessionCheckEvery in case a signal was
// missed). It starts no goroutine of its own: the shutdown and the bus
// cancel it through callbacks, and the check runs on a timer. The returned
// function releases all three.
func (s *Server) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	user, token := userFrom(r.Context()), tokenFrom(r.Context())
	watch := s.bus.WatchSessionFunc(user.ID, sessionKey(token), cancel)
	stopOnShutdown := context.AfterFunc(s.streamsCtx, cancel)
	check := &sessionCheck{every: s.sessionCheckEvery}
	check.start(func() bool {
		if ctx.Err() != nil {
			return false
		}
		if !s.stillSignedIn(ctx, user, token) {
			cancel()
			return false
		}
		return true
	})
	return ctx, func() {
		cancel()
		stopOnShutdown()
		check.stop()
		watch.Close()
	}
}

// sessionCheck runs a check every period on a timer until the check
// returns false or stop is called.
type sessionCheck struct {
	every   time.Duration
	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

func (c *sessionCheck) start(check func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer = time.AfterFunc(c.every, func() {
		again := check()
		c.mu.Lock()
		defer c.mu.Unlock()
		if again && !c.stopped {
			c.timer.Reset(c.every)
		}
	})
}

func (c *sessionCheck) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	c.timer.Stop()
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
	s.closeStreams()
}
