package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"time"
)

// relay is the practical floor of a streaming proxy: it forwards the
// request to the upstream as it came and copies the upstream's Server-Sent
// Events back line by line, flushing once per event (at the blank line
// that ends it). It parses nothing, stores nothing and bills nothing: what
// any proxy must at least do, in plain Go.
type relay struct {
	upstream string // the upstream's OpenAI-compatible base URL
	client   *http.Client
	h2c      bool // also serve HTTP/2 without TLS, as Luna does
}

// server returns an HTTP server that relays POST /v1/chat/completions.
func (rl *relay) server() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", rl.chatCompletions)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if rl.h2c {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	return srv
}

// maxRequestBytes bounds a request body the relay reads.
const maxRequestBytes = 1 << 20

func (rl *relay) chatCompletions(w http.ResponseWriter, r *http.Request) {
	// The body is read whole before the upstream request is sent, as any
	// proxy that routes on the model does. Handing r.Body itself to the
	// transport races: the transport's write loop reads it once more (for
	// EOF) after its bytes are on the wire, while the server closes it as
	// soon as this handler begins its answer; a write loop that comes last
	// fails with "invalid Read on closed Body" and closes the upstream
	// connection mid-stream.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		http.Error(w, "relay: read request: "+err.Error(), http.StatusBadRequest)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, rl.upstream+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	for _, h := range []string{"Content-Type", "Accept", "Authorization"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := rl.client.Do(req)
	if err != nil {
		http.Error(w, "relay: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	in := bufio.NewReaderSize(resp.Body, 4<<10)
	midLine := false // the last read ended inside a long line
	for {
		line, err := in.ReadSlice('\n')
		if len(line) > 0 {
			if _, werr := w.Write(line); werr != nil {
				return // the client went away
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			midLine = true
			continue
		}
		if errors.Is(err, io.EOF) {
			rc.Flush() // the upstream's stream ended: so does ours
			return
		}
		if err != nil {
			// The upstream's stream broke (or the client went away):
			// break the client's too, rather than end it cleanly as if
			// the upstream had finished.
			rc.Flush()
			panic(http.ErrAbortHandler)
		}
		if !midLine && (len(line) == 1 || (len(line) == 2 && line[0] == '\r')) {
			// A blank line ends an event: one flush sends it.
			if rc.Flush() != nil {
				return
			}
		}
		midLine = false
	}
}
