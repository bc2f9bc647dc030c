package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"luna/internal/llm/vllmwire"
)

// upstreamModel is the served model name of the fake upstream.
const upstreamModel = "lunabench-model"

// replyText is the reply of the fake upstream, token by token: distinct,
// word-sized tokens, so that a lost, repeated or reordered token shows in the
// text a client receives.
type replyText struct {
	tokens []string
	ends   []int // ends[i] is the byte length of tokens[0..i] joined
	text   string
}

func newReplyText(n int) replyText {
	r := replyText{tokens: make([]string, n), ends: make([]int, n)}
	var b strings.Builder
	for i := range n {
		r.tokens[i] = "w" + strconv.Itoa(i) + " "
		b.WriteString(r.tokens[i])
		r.ends[i] = b.Len()
	}
	r.text = b.String()
	return r
}

// tokensIn returns how many whole tokens the first n bytes of the reply
// hold.
func (r replyText) tokensIn(n int) int {
	lo, hi := 0, len(r.ends)
	for lo < hi {
		mid := (lo + hi) / 2
		if r.ends[mid] <= n {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// upstream is a fake OpenAI-compatible model server. Every streamed chat
// completion is the same reply, one token per chunk, framed byte for byte
// like vLLM (role chunk, content chunks, finish chunk, usage chunk when
// asked, [DONE]): the first token after prefill, then one every interval.
// max_tokens shortens the reply, as it would a real model's.
//
// The events of the whole reply are encoded once: all streams share one
// completion id, so that the fake spends its CPU on the network only and
// leaves the rest to the code measured.
type upstream struct {
	interval time.Duration
	prefill  time.Duration
	events   [][]byte // the content events of the whole reply, in order
	role     []byte
	finish   []byte
	usage    []byte
}

func newUpstream(reply replyText, rate float64, prefill time.Duration) *upstream {
	u := &upstream{interval: time.Duration(float64(time.Second) / rate), prefill: prefill}
	c := vllmwire.Completion{ID: "chatcmpl-lunabench", Created: time.Now().Unix(), Model: upstreamModel}
	u.events = make([][]byte, len(reply.tokens))
	for i, tok := range reply.tokens {
		u.events[i] = c.ContentEvent(tok)
	}
	u.role, u.finish, u.usage = c.RoleEvent(), c.FinishEvent("stop"), c.UsageEvent(promptTokens, len(reply.tokens))
	return u
}

// promptTokens is the prompt size the fake reports.
const promptTokens = 8

// server returns an HTTP server that answers as the fake upstream.
func (u *upstream) server() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", u.chatCompletions)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}

// baseURL is the OpenAI-compatible base URL of an upstream listening on ln.
func baseURL(ln net.Listener) string { return "http://" + ln.Addr().String() + "/v1" }

// completionRequest is what the fake reads of a request; the rest (model,
// messages, temperature…) is accepted and ignored.
type completionRequest struct {
	Stream        bool `json:"stream"`
	MaxTokens     int  `json:"max_tokens"`
	StreamOptions *struct {
		IncludeUsage *bool `json:"include_usage"`
	} `json:"stream_options"`
}

func (u *upstream) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var in completionRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(body, &in)
	}
	if err != nil || !in.Stream {
		vllmwire.WriteError(w, http.StatusBadRequest, vllmwire.ShapeNested, vllmwire.APIError{
			Message: "lunabench's fake upstream answers valid streaming requests only.", Type: "BadRequestError", Code: http.StatusBadRequest,
		})
		return
	}
	events, finish, usage := u.events, u.finish, u.usage
	if in.MaxTokens > 0 && in.MaxTokens < len(events) {
		c := vllmwire.Completion{ID: "chatcmpl-lunabench", Created: time.Now().Unix(), Model: upstreamModel}
		events, finish, usage = events[:in.MaxTokens], c.FinishEvent("length"), c.UsageEvent(promptTokens, in.MaxTokens)
	}
	if in.StreamOptions == nil || (in.StreamOptions.IncludeUsage != nil && !*in.StreamOptions.IncludeUsage) {
		usage = nil
	}
	// An error here is the client going away; nothing to answer.
	_ = u.stream(w, r, events, finish, usage)
}

// stream writes the role event, the content events paced, the finish
// event, the usage event unless nil, and [DONE].
func (u *upstream) stream(w http.ResponseWriter, r *http.Request, events [][]byte, finish, usage []byte) error {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", vllmwire.ContentType)
	w.WriteHeader(http.StatusOK)
	send := func(b []byte) error {
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	wait := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-r.Context().Done():
			return r.Context().Err()
		}
	}
	if err := send(u.role); err != nil {
		return err
	}
	if u.prefill > 0 {
		if err := wait(u.prefill); err != nil {
			return err
		}
	}
	// A ticker keeps the cadence of a decoding loop: a late chunk does not
	// push back the ones after it.
	var tick *time.Ticker
	for i, ev := range events {
		if i == 1 {
			tick = time.NewTicker(u.interval)
			defer tick.Stop()
		}
		if i > 0 {
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return r.Context().Err()
			}
		}
		if err := send(ev); err != nil {
			return err
		}
	}
	if err := send(finish); err != nil {
		return err
	}
	if usage != nil {
		if err := send(usage); err != nil {
			return err
		}
	}
	return send([]byte(vllmwire.Done))
}
