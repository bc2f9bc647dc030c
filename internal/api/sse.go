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

// sseWriter writes Server-Sent Events to one client.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// startSSE answers the request with an event stream.
func startSSE(w http.ResponseWriter) (*sseWriter, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: don't buffer the stream
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, rc: http.NewResponseController(w)}
	return sw, sw.flush()
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
