package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
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
	sw.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)) //nolint:errcheck // not every writer supports deadlines
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

// streamContext ends when the request does or when the server closes its
// streams for shutdown.
func (s *Server) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	go func() {
		select {
		case <-s.streamsDone:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// CloseStreams ends every open event stream (at shutdown, so that the
// HTTP server is not kept waiting by clients that never disconnect).
func (s *Server) CloseStreams() {
	s.closeStreams.Do(func() { close(s.streamsDone) })
}
