package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestRun runs a tiny benchmark end to end on SQLite: every token must
// arrive, directly and through Luna.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"-n", "4", "-per-user", "2", "-tokens", "6", "-rate", "200", "-json"}, &out, io.Discard)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("decode report: %v\n%s", err, out.String())
	}
	for name, p := range map[string]phaseReport{"direct": rep.Direct, "luna": rep.Luna} {
		if p.Failed != 0 || p.TokensDelivered != 24 || p.TokensExpected != 24 {
			t.Errorf("%s: failed %d, tokens %d/%d, errors %v; want 0, 24/24", name, p.Failed, p.TokensDelivered, p.TokensExpected, p.Errors)
		}
		// Gaps may all be zero: under the race detector, a slow reader
		// gets the whole reply in one event.
		if p.TTFTP50Ms <= 0 {
			t.Errorf("%s: ttft p50 %v ms, want > 0", name, p.TTFTP50Ms)
		}
	}
	// A send and a completion per reply at least.
	if got, want := rep.DB.Commits, int64(8); got < want {
		t.Errorf("commits = %d, want at least %d", got, want)
	}
}

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
