package main

import (
	"bufio"
	"errors"
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
}

// server returns an HTTP server that relays POST /v1/chat/completions.
func (rl *relay) server() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", rl.chatCompletions)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}

func (rl *relay) chatCompletions(w http.ResponseWriter, r *http.Request) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, rl.upstream+"/chat/completions", r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.ContentLength = r.ContentLength
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
	// An error below is the client or the upstream going away: the
	// stream just ends, as it would through any proxy.
	in := bufio.NewReaderSize(resp.Body, 4<<10)
	midLine := false // the last read ended inside a long line
	for {
		line, err := in.ReadSlice('\n')
		if len(line) > 0 {
			if _, werr := w.Write(line); werr != nil {
				return
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			midLine = true
			continue
		}
		if err != nil {
			rc.Flush() // the stream ends either way
			return
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
