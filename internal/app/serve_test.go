package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"luna/internal/app"
)

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// startServing starts a demo Luna on SQLite through New, Listen and Serve,
// as `luna serve` does, and stops it at cleanup.
func startServing(t *testing.T) (baseURL string, ln *countingListener) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Demo: true,
		Auth: "local", SignupMode: "open", InitialCredits: 1000, AuthRateLimit: 1000,
		ShutdownTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("start luna: %v", err)
	}
	l, err := a.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ln = &countingListener{Listener: l}
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		a.Close()
	})
	return "http://" + l.Addr().String(), ln
}

// h2cClient speaks HTTP/2 without TLS from the first byte (prior
// knowledge), as a reverse proxy that speaks h2c to its backends does.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

func call(t *testing.T, c *http.Client, method, url, token string, body any) map[string]any {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("%s %s: answered over %s, want HTTP/2", method, url, resp.Proto)
	}
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %v %v", method, url, resp.StatusCode, v, err)
	}
	return v
}

// openStream opens an SSE stream over HTTP/2 and returns its first event's
// lines (up to the blank line that ends it) and the body.
func openStream(c *http.Client, url, token string) (io.ReadCloser, *bufio.Reader, error) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		return nil, nil, fmt.Errorf("GET %s: %d over %s, %s", url, resp.StatusCode, resp.Proto, resp.Header.Get("Content-Type"))
	}
	return resp.Body, bufio.NewReader(resp.Body), nil
}

// TestServeH2C: a client speaking HTTP/2 without TLS (prior knowledge) signs
// up, streams a reply's SSE events to its end, and holds many event
// streams open at once, all over one connection.
func TestServeH2C(t *testing.T) {
	t.Parallel()
	base, ln := startServing(t)
	c := h2cClient()
	defer c.CloseIdleConnections()

	token := call(t, c, "POST", base+"/v1/auth/signup", "", map[string]string{"email": "h2@example.com", "password": "password123"})["token"].(string)
	conv := call(t, c, "POST", base+"/v1/conversations", token, map[string]string{"modelId": app.DemoModelID})["id"].(string)
	sent := call(t, c, "POST", base+"/v1/conversations/"+conv+"/messages", token, map[string]string{"content": "Hello over HTTP/2"})
	replyID := sent["assistantMessage"].(map[string]any)["id"].(string)

	// More streams at once than a browser's six HTTP/1.1 connections.
	const streams = 10
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	bodies := make(chan io.ReadCloser, streams)
	for range streams {
		wg.Go(func() {
			body, r, err := openStream(c, base+"/v1/events", token)
			if err != nil {
				errs <- err
				return
			}
			bodies <- body
			// The stream starts with the user's credits.
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					errs <- fmt.Errorf("events stream: %w", err)
					return
				}
				if strings.HasPrefix(line, "event: ") {
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// The reply streams to its final event while the event streams stay open.
	body, r, err := openStream(c, base+"/v1/messages/"+replyID+"/stream", token)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	var text strings.Builder
	final := false
	for !final {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reply stream ended before its final event: %v (text so far %q)", err, text.String())
		}
		switch {
		case line == "event: done\n":
			final = true
		case line == "event: error\n":
			t.Fatalf("reply stream ended with an error event")
		case strings.HasPrefix(line, "data: "):
			text.WriteString(line)
		}
	}
	if !strings.Contains(text.String(), "demo") {
		t.Errorf("reply stream: %q, want the demo model's text", text.String())
	}
	close(bodies)
	for b := range bodies {
		b.Close()
	}
	if n := ln.accepted.Load(); n != 1 {
		t.Errorf("%d connections accepted, want every request and stream on one", n)
	}
}

// TestServeEndsRightAway: a server stopped before its image worker has
// started (a test that ends at once, SIGTERM during start-up) still starts
// and stops it, and Serve returns no error.
func TestServeEndsRightAway(t *testing.T) {
	a, err := app.New(t.Context(), app.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Demo: true,
		Auth: "local", SignupMode: "open", ShutdownTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("start luna: %v", err)
	}
	defer a.Close()
	ln, err := a.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := a.Serve(ctx, ln); err != nil {
		t.Fatalf("serve: %v", err)
	}
}
