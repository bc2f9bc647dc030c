package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRun runs a tiny benchmark end to end on SQLite: every token must
// arrive, directly and through Luna.
func TestRun(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2c=%v", h2c), func(t *testing.T) { testRun(t, h2c) })
	}
}

func testRun(t *testing.T, h2c bool) {
	var out bytes.Buffer
	args := []string{"-n", "4", "-per-user", "2", "-tokens", "6", "-rate", "200", "-json"}
	if h2c {
		args = append(args, "-h2c")
	}
	err := run(context.Background(), args, &out, io.Discard)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("decode report: %v\n%s", err, out.String())
	}
	if rep.H2C != h2c {
		t.Errorf("report says h2c %v, want %v", rep.H2C, h2c)
	}
	for name, p := range map[string]phaseReport{"direct": rep.Direct, "relay": rep.Relay, "luna": rep.Luna} {
		if p.Failed != 0 || p.TokensDelivered != 24 || p.TokensExpected != 24 {
			t.Errorf("%s: failed %d, tokens %d/%d, errors %v; want 0, 24/24", name, p.Failed, p.TokensDelivered, p.TokensExpected, p.Errors)
		}
		// Gaps may all be zero: under the race detector, a slow reader
		// gets the whole reply in one event.
		if p.TTFTP50Ms <= 0 {
			t.Errorf("%s: ttft p50 %v ms, want > 0", name, p.TTFTP50Ms)
		}
	}
	if rep.Peer != nil || rep.PeerAdded != nil {
		t.Errorf("a peer phase without -peer-url: %+v", rep.Peer)
	}
	// A send and a completion per reply at least.
	if got, want := rep.DB.Commits, int64(8); got < want {
		t.Errorf("commits = %d, want at least %d", got, want)
	}
}

// TestRunWithPeer measures a peer proxy in the same run: here a
// reverse proxy that wants a key header and its own model name, in front
// of the fake upstream at a fixed address. Every token must arrive through
// it too, and its CPU and memory are read from its process (-peer-pid: this
// test's own process, which holds it).
func TestRunWithPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upstreamAddr := ln.Addr().String()
	ln.Close() // lunabench's upstream listens here
	target, _ := url.Parse("http://" + upstreamAddr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1 // flush every write, as streaming proxies do
	var refused atomic.Int64
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			Model string `json:"model"`
		}
		if r.Header.Get("X-Peer-Key") != "secret" || json.Unmarshal(body, &req) != nil || req.Model != "peer-model" {
			refused.Add(1)
			http.Error(w, `{"error":"refused"}`, http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	defer peer.Close()

	var out bytes.Buffer
	err = run(context.Background(), []string{"-n", "4", "-per-user", "2", "-tokens", "6", "-rate", "200", "-json",
		"-upstream-addr", upstreamAddr, "-peer-url", peer.URL + "/v1", "-peer-model", "peer-model",
		"-peer-header", "X-Peer-Key: secret", "-peer-pid", strconv.Itoa(os.Getpid())}, &out, io.Discard)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("decode report: %v\n%s", err, out.String())
	}
	if rep.Peer == nil || rep.PeerAdded == nil || rep.PeerOverRelay == nil {
		t.Fatalf("no peer phase in the report:\n%s", out.String())
	}
	if p := rep.Peer; p.Failed != 0 || p.TokensDelivered != 24 {
		t.Errorf("peer: failed %d, tokens %d/%d, errors %v; want 0, 24/24", p.Failed, p.TokensDelivered, p.TokensExpected, p.Errors)
	}
	if n := refused.Load(); n != 0 {
		t.Errorf("the peer refused %d requests: header or model not sent", n)
	}
	if rep.PeerURL != peer.URL+"/v1" || rep.Upstream != "http://"+upstreamAddr+"/v1" {
		t.Errorf("peer URL %q, upstream %q", rep.PeerURL, rep.Upstream)
	}
	if rep.PeerCPUFrom != "process" || !rep.PeerMemoryKnown || rep.PeerAdded.CPUPer1K <= 0 {
		t.Errorf("peer CPU from %q (%.4f s per 1,000 tokens), memory known %v; want its process's", rep.PeerCPUFrom, rep.PeerAdded.CPUPer1K, rep.PeerMemoryKnown)
	}
	var text bytes.Buffer
	if err := rep.writeText(&text); err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		t.Logf("\n%s", text.String())
	}
	for _, want := range []string{"relay (floor)", "peer ÷ relay", "Luna ÷ relay", "peer: CPU and RSS of its process"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

func TestParsePeerFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-peer-url", "http://127.0.0.1:4000/v1"}, "-upstream-addr"},
		{[]string{"-peer-model", "m"}, "need -peer-url"},
		{[]string{"-upstream-addr", "127.0.0.1:18080", "-peer-url", "http://p/v1", "-peer-header", "no colon"}, "Name: value"},
	} {
		if _, err := parseFlags(c.args, io.Discard); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseFlags(%q) = %v, want an error with %q", c.args, err, c.want)
		}
	}
	cfg, err := parseFlags([]string{"-upstream-addr", "127.0.0.1:18080", "-peer-url", "http://p/v1",
		"-peer-header", "Authorization: Bearer k", "-peer-header", "X-Other:  v "}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.peer.headers; got["Authorization"] != "Bearer k" || got["X-Other"] != "v" || len(got) != 2 {
		t.Errorf("headers = %v", got)
	}
}

// TestRelay checks the relay's framing: every byte of the upstream's
// stream arrives, one flush per event, long lines included.
func TestRelay(t *testing.T) {
	long := strings.Repeat("x", 10_000) // longer than the relay's buffer
	events := []string{"data: {\"a\":1}\n\n", "data: " + long + "\n\n", ": comment\r\n\r\n", "data: [DONE]\n\n"}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" || r.URL.Path != "/v1/chat/completions" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range events {
			io.WriteString(w, ev) // test server
			w.(http.Flusher).Flush()
		}
	}))
	defer upstream.Close()
	rl := &relay{upstream: upstream.URL + "/v1", client: upstream.Client()}
	rec := &flushRecorder{ResponseRecorder: httptest.NewRecorder()}
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer k")
	rl.chatCompletions(rec, req)
	if got, want := rec.Body.String(), strings.Join(events, ""); got != want {
		t.Errorf("relayed %d bytes, want %d", len(got), len(want))
	}
	if got, want := rec.Header().Get("Content-Type"), "text/event-stream"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	// One flush per event, and one at the end of the stream.
	if got, want := rec.flushes, len(events)+1; got != want {
		t.Errorf("%d flushes, want %d", got, want)
	}
}

// flushRecorder counts flushes.
type flushRecorder struct {
	*httptest.ResponseRecorder
	flushes int
}

func (f *flushRecorder) Flush() { f.flushes++; f.ResponseRecorder.Flush() }

func TestParseFlagsDefaultRamp(t *testing.T) {
	cfg, err := parseFlags([]string{"-tokens", "200", "-rate", "20"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.ramp, 5*time.Second; got != want {
		t.Errorf("ramp = %s, want %s (half a reply)", got, want)
	}
	if _, err := parseFlags([]string{"-rate", "0"}, io.Discard); err == nil {
		t.Error("-rate 0 accepted")
	}
}

func TestSSEReader(t *testing.T) {
	long := strings.Repeat("x", 10_000) // longer than the reader's buffer
	in := ": comment\n\nevent: delta\nid: 3\ndata: {\"text\":\"abc\"}\n\ndata: a\r\ndata: " + long + "\n\n"
	r := newSSEReader(strings.NewReader(in))
	ev, err := r.next()
	if err != nil || ev.name != "delta" || ev.id != "3" || string(ev.data) != `{"text":"abc"}` {
		t.Fatalf("first event = %+v, %v", ev, err)
	}
	ev, err = r.next()
	if err != nil || string(ev.data) != "a\n"+long {
		t.Fatalf("second event: %d bytes, %v", len(ev.data), err)
	}
	if _, err := r.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last event: %v, want EOF", err)
	}
	r = newSSEReader(strings.NewReader("data: cut"))
	if _, err := r.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut event: %v, want unexpected EOF", err)
	}
}

// TestStreamRecord checks how arrivals become per-token latencies: tokens
// that arrive together get one gap, then zeros.
func TestStreamRecord(t *testing.T) {
	reply := newReplyText(4) // "w0 w1 w2 w3 "
	start := time.Unix(0, 0)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	rec := newStreamRecord(&reply, nil)
	rec.start = start
	rec.replace(at(5), "")   // an empty snapshot is no token
	rec.add(at(10), "w0 w")  // one token and a half
	rec.add(at(60), "1 w2 ") // two tokens
	rec.add(at(100), "w3 ")  // the last
	if got, want := rec.ttft, 10*time.Millisecond; got != want {
		t.Errorf("ttft = %s, want %s", got, want)
	}
	want := []time.Duration{50 * time.Millisecond, 0, 40 * time.Millisecond}
	if len(rec.gaps) != len(want) {
		t.Fatalf("gaps = %v, want %v", rec.gaps, want)
	}
	for i := range want {
		if rec.gaps[i] != want[i] {
			t.Errorf("gaps = %v, want %v", rec.gaps, want)
			break
		}
	}
	if err := rec.check(); err != nil {
		t.Errorf("check: %v", err)
	}
	rec.add(at(120), "w3 ")
	if err := rec.check(); !errors.Is(err, errWrongText) {
		t.Errorf("check after a repeated token: %v, want %v", err, errWrongText)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0.001, 1}} {
		if got := percentile(d, c.q); got != c.want {
			t.Errorf("percentile(%v) = %d, want %d", c.q, got, c.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of nothing = %d, want 0", got)
	}
}

// TestRelaySlowRequestWrite is the relay on a busy machine: its outbound
// connection sends the request body's bytes at once, but the transport's
// write loop is scheduled again only after the relay has begun its answer
// (here: a connection whose Write returns once the client has the
// relay's response headers). The relay must not hand the transport a body
// that the server closes when the answer begins: the stream must arrive
// whole, [DONE] included.
func TestRelaySlowRequestWrite(t *testing.T) {
	reply := newReplyText(5)
	up := newUpstream(reply, 1000, 0)
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upSrv := up.server()
	go upSrv.Serve(upLn) // ends with Close
	defer upSrv.Close()

	answered := make(chan struct{}) // the client has the relay's headers
	dialer := &net.Dialer{}
	rl := &relay{upstream: baseURL(upLn), client: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &lateWriteConn{Conn: conn, release: answered}, nil
		},
	}}}
	relayLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	relaySrv := rl.server()
	go relaySrv.Serve(relayLn) // ends with Close
	defer relaySrv.Close()

	body := `{"model":"` + upstreamModel + `","messages":[{"role":"user","content":"hi"}],"stream":true}`
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Post(baseURL(relayLn)+"/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	close(answered)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("relay answered %s", resp.Status)
	}
	sse := newSSEReader(resp.Body)
	for {
		ev, err := sse.next()
		if err != nil {
			t.Fatalf("stream ended before [DONE]: %v", err)
		}
		if string(ev.data) == "[DONE]" {
			return
		}
	}
}

// lateWriteConn sends every write at once but, past the request line and
// headers, returns only when release is closed (or after a while): the
// writing goroutine is late, the bytes are not.
type lateWriteConn struct {
	net.Conn
	release <-chan struct{}
}

func (c *lateWriteConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err == nil && !bytes.HasPrefix(p, []byte("POST ")) {
		select {
		case <-c.release:
		case <-time.After(5 * time.Second):
		}
	}
	return n, err
}

// TestRelayUpstreamCut checks that the relay passes a cut on: when the
// upstream's connection breaks mid-stream, the client's stream breaks too
// (it does not end cleanly, as if the upstream had finished).
func TestRelayUpstreamCut(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"a\":1}\n\n") // test server
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close() // mid-stream, no end of the chunked body
		}
	}))
	defer upstream.Close()
	rl := &relay{upstream: upstream.URL + "/v1", client: upstream.Client()}
	relaySrv := httptest.NewServer(rl.server().Handler)
	defer relaySrv.Close()

	resp, err := relaySrv.Client().Post(relaySrv.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sse := newSSEReader(resp.Body)
	if ev, err := sse.next(); err != nil || string(ev.data) != `{"a":1}` {
		t.Fatalf("first event = %q, %v", ev.data, err)
	}
	if _, err := sse.next(); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("after the upstream's cut: %v, want a broken stream (not a clean end)", err)
	}
}

// With -h2c the clients speak HTTP/2 to the relay (and to Luna, which
// serves h2c too), not HTTP/1.1.
func TestH2CClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := (&relay{upstream: "http://127.0.0.1:1", client: newHTTPClient(1, false), h2c: true}).server()
	go srv.Serve(ln)
	defer srv.Close()
	for _, h2c := range []bool{false, true} {
		client := newHTTPClient(1, h2c)
		resp, err := client.Post(baseURL(ln)+"/chat/completions", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{false: 1, true: 2}[h2c]; resp.ProtoMajor != want {
			t.Errorf("h2c %v: the relay answered over HTTP/%d, want HTTP/%d", h2c, resp.ProtoMajor, want)
		}
		client.CloseIdleConnections()
	}
}
