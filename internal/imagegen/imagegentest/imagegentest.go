// Package imagegentest provides HTTP fakes of a ComfyUI server and of
// Runpod's serverless queue API running worker-comfyui, for testing image
// backends over real loopback HTTP. Both follow
// shared/reference/comfyui-protocol.md (request and answer shapes, error
// bodies, history and status semantics), record what they receive, can
// inject faults, and serve a real small PNG.
package imagegentest

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"sync"
)

// Fault is a way for a fake to fail a request.
type Fault int

// Faults.
const (
	// FaultHangUp closes the connection without answering, before the
	// request is handled (as a server that is down or restarting).
	FaultHangUp Fault = iota + 1
	// FaultHangUpAfter handles the request, then closes the connection
	// without answering: the effect happens, the answer is lost.
	FaultHangUpAfter
	// FaultUnavailable answers 503, as a proxy whose upstream is down.
	FaultUnavailable
	// FaultRateLimited answers 429.
	FaultRateLimited
	// FaultLateDelivery answers 504, as a proxy that gave up waiting, while
	// the request still reaches the server late: it is handled just before
	// the next request with the same method and path (so a client that
	// checks the queue after the 504 does not see it yet).
	FaultLateDelivery
)

// faults hands out the next n injected faults and holds requests delivered
// late.
type faults struct {
	mu   sync.Mutex
	mode Fault
	n    int
	late []*http.Request // FaultLateDelivery requests not yet handled, bodies buffered
}

// set makes the next n requests fail with mode.
func (f *faults) set(n int, mode Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n, f.mode = n, mode
}

// take returns the fault for the current request, or 0.
func (f *faults) take() Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n <= 0 {
		return 0
	}
	f.n--
	return f.mode
}

// deliverLate hands next the late requests with r's method and path, before
// r itself is handled.
func (f *faults) deliverLate(r *http.Request, next http.Handler) {
	f.mu.Lock()
	var due []*http.Request
	kept := f.late[:0]
	for _, l := range f.late {
		if l.Method == r.Method && l.URL.Path == r.URL.Path {
			due = append(due, l)
		} else {
			kept = append(kept, l)
		}
	}
	f.late = kept
	f.mu.Unlock()
	for _, l := range due {
		next.ServeHTTP(discardWriter{header: http.Header{}}, l)
	}
}

// serveFault applies fault (if any) around next. It reports whether the
// request was fully answered by the fault.
func serveFault(f *faults, w http.ResponseWriter, r *http.Request, next http.Handler) bool {
	f.deliverLate(r, next)
	switch fault := f.take(); fault {
	case FaultLateDelivery:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			hangUp(w)
			return true
		}
		late := r.Clone(context.WithoutCancel(r.Context()))
		late.Body = io.NopCloser(bytes.NewReader(body))
		f.mu.Lock()
		f.late = append(f.late, late)
		f.mu.Unlock()
		http.Error(w, "504 Gateway Time-out", http.StatusGatewayTimeout)
	case FaultHangUp:
		hangUp(w)
	case FaultHangUpAfter:
		next.ServeHTTP(discardWriter{header: http.Header{}}, r)
		hangUp(w)
	case FaultUnavailable:
		http.Error(w, "503 Service Unavailable", http.StatusServiceUnavailable)
	case FaultRateLimited:
		http.Error(w, "429 Too Many Requests", http.StatusTooManyRequests)
	default:
		return false
	}
	return true
}

// hangUp closes the connection under w without writing anything.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("imagegentest: ResponseWriter cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	_ = conn.Close()
}

// discardWriter is a ResponseWriter whose answer goes nowhere.
type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header         { return d.header }
func (d discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d discardWriter) WriteHeader(int)             {}

// SmallPNG returns a real w×h PNG with a simple pattern, for fakes to serve.
func SmallPNG(w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(x * 255 / max(w-1, 1)), G: uint8(y * 255 / max(h-1, 1)), B: 0x80, A: 0xff})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic("imagegentest: encode PNG: " + err.Error())
	}
	return buf.Bytes()
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
