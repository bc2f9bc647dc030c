package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// newHTTPClient returns a client for n concurrent streams. HTTP/1.1 streams
// hold their connection for their whole life, so the pool must keep (and
// may open) one connection per stream and a few more. With h2c the client
// speaks HTTP/2 without TLS (prior knowledge) instead, many streams to a
// connection, opening another when a server's stream limit is reached.
func newHTTPClient(n int, h2c bool) *http.Client {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2*n + 16,
		MaxIdleConnsPerHost: 2*n + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	if h2c {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	return &http.Client{Transport: t}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	name string
	id   string
	data []byte
}

// sseReader reads Server-Sent Events; comments are skipped.
type sseReader struct {
	r *bufio.Reader
}

// A small buffer, as a browser would have: longer lines are put together
// from several reads.
func newSSEReader(r io.Reader) *sseReader { return &sseReader{r: bufio.NewReaderSize(r, 4<<10)} }

// readLine returns the next line, its end included.
func (s *sseReader) readLine() ([]byte, error) {
	line, err := s.r.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return line, err
	}
	long := append([]byte(nil), line...)
	for errors.Is(err, bufio.ErrBufferFull) {
		line, err = s.r.ReadSlice('\n')
		long = append(long, line...)
	}
	return long, err
}

// next returns the next event; io.EOF when the stream ends between events.
func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	started := false
	for {
		line, err := s.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && !started && len(line) == 0 {
				return ev, io.EOF
			}
			if errors.Is(err, io.EOF) {
				return ev, io.ErrUnexpectedEOF
			}
			return ev, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if started {
				return ev, nil
			}
		case line[0] == ':':
		default:
			started = true
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(field) {
			case "event":
				ev.name = string(value)
			case "id":
				ev.id = string(value)
			case "data":
				if ev.data != nil {
					ev.data = append(ev.data, '\n')
				}
				ev.data = append(ev.data, value...)
			}
		}
	}
}

// streamRecord turns the text one client receives, event by event, into
// the arrival time of each token of the expected reply.
type streamRecord struct {
	reply      *replyText
	start      time.Time     // just before the request was sent
	text       []byte        // received so far
	tokens     int           // whole tokens received
	ttft       time.Duration // time to the first token
	send       time.Duration // through Luna: the message POST's own time, part of ttft
	last       time.Time     // arrival of the latest token
	end        time.Time     // arrival of the stream's end ([DONE], done)
	gaps       []time.Duration
	textEvents int    // events (chunks, deltas) that carried text
	onFirst    func() // called at the first token
}

func newStreamRecord(reply *replyText, onFirst func()) *streamRecord {
	return &streamRecord{reply: reply, gaps: make([]time.Duration, 0, len(reply.tokens)), onFirst: onFirst}
}

// add records text received at time at.
func (r *streamRecord) add(at time.Time, text string) {
	if text == "" {
		return
	}
	r.text = append(r.text, text...)
	r.textEvents++
	r.advance(at)
}

// replace records a snapshot of the whole text received at time at.
func (r *streamRecord) replace(at time.Time, text string) {
	if text == "" && len(r.text) == 0 {
		return
	}
	r.text = append(r.text[:0], text...)
	r.textEvents++
	r.advance(at)
}

// advance counts the tokens completed by the text so far. Tokens that
// arrive together in one event get one gap for the first and zero for the
// others: that is how a reader sees them.
func (r *streamRecord) advance(at time.Time) {
	n := r.reply.tokensIn(len(r.text))
	for ; r.tokens < n; r.tokens++ {
		switch {
		case r.tokens == 0:
			r.ttft = at.Sub(r.start)
			if r.onFirst != nil {
				r.onFirst()
			}
		default:
			r.gaps = append(r.gaps, at.Sub(r.last))
		}
		r.last = at
	}
}

// check reports whether the whole expected reply arrived, exactly.
func (r *streamRecord) check() error {
	if string(r.text) == r.reply.text {
		return nil
	}
	got := string(r.text)
	if strings.HasPrefix(r.reply.text, got) {
		return fmt.Errorf("%w: got %d of %d bytes (a prefix)", errWrongText, len(got), len(r.reply.text))
	}
	i := 0
	for i < len(got) && i < len(r.reply.text) && got[i] == r.reply.text[i] {
		i++
	}
	return fmt.Errorf("%w: %d bytes, want %d; differs at byte %d: %q", errWrongText, len(got), len(r.reply.text), i,
		got[i:min(len(got), i+40)])
}

// errWrongText marks a stream whose text was lost, repeated or garbled.
var errWrongText = errors.New("wrong text")

// postJSON sends body as JSON and decodes a 2xx answer into out (when not
// nil); token, when set, is sent as a bearer token.
func postJSON(ctx context.Context, client *http.Client, url, token string, body, out any) error {
	payload, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("POST %s: read answer: %w", url, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, bytes.TrimSpace(data))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("POST %s: decode answer: %w", url, err)
	}
	return nil
}
