// Package llmtest is a fake vLLM for tests: an httptest server that answers
// POST /v1/chat/completions with exactly the bytes vLLM sends
// (/work/shared/reference/llm-protocol.md sections 1–2), serves POST
// /tokenize (vLLM's forms, llama.cpp's, or none: SetTokenizer) with a
// tokenizer that counts digits, emoji and CJK as real ones do
// (CountTokens), refuses prompts over its context (SetMaxModelLen), and
// injects the
// faults real deployments show: slow first token (cold start), stalls,
// HTTP errors in every body shape, in-stream error events, cut connections,
// garbage lines, writes split inside UTF-8 characters, keep-alive comments,
// and servers that never answer.
//
// Typical use:
//
//	fake := llmtest.New(t)
//	fake.Enqueue(llmtest.Script{Tokens: []string{"Hel", "lo"}, TokenDelay: 10 * time.Millisecond})
//	res, err := client.Stream(ctx, llm.Request{BaseURL: fake.BaseURL(), …}, onDelta)
//	got := fake.Requests()[0]
//
// Each request consumes the next enqueued Script; when the queue is empty the
// default Script (SetDefault; zero value = a short normal reply) is used.
//
// A normal stream is, byte for byte:
//
//	data: {role chunk, "delta":{"role":"assistant","content":""}, "prompt_token_ids":null}
//	data: {content chunk} … one per Script.Tokens entry
//	data: {finish chunk, "finish_reason":"stop","stop_reason":null}
//	data: {usage chunk, "choices":[], "usage":{prompt_tokens,total_tokens,completion_tokens}}
//	data: [DONE]
//
// with Content-Type "text/event-stream; charset=utf-8", every event
// terminated by "\n\n".
package llmtest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"luna/internal/llm"
	"luna/internal/llm/vllmwire"
)

// ModelName is the model the fake lists on GET /v1/models, and the model
// its chunks name when a request leaves "model" empty (vLLM then serves its
// first model).
const ModelName = "llmtest-model"

// MaxModelLen is the context length the fake lists on GET /v1/models.
const MaxModelLen = 8192

// Created is the "created" timestamp of every chunk; fixed so that streams
// are reproducible byte for byte.
const Created = 1755000000

// ErrorEventFirst, as Script.ErrorEventAt, sends the in-stream error as the
// very first event, before the role chunk (vLLM does this when the engine
// fails on its first iteration; the HTTP status is still 200).
const ErrorEventFirst = -1

// DefaultTokens returns the content deltas of a Script that sets no Tokens.
func DefaultTokens() []string {
	return []string{"Hello", "!", " How", " can", " I", " help", "?"}
}

// Script says how the fake answers one request. The zero value streams
// DefaultTokens normally.
type Script struct {
	// Tokens are the content deltas, one chunk each (default DefaultTokens).
	Tokens []string
	// TokenDelay is the pause before each content chunk after the first.
	TokenDelay time.Duration
	// FirstTokenDelay is the pause after the headers, before the role chunk
	// (cold start, queueing, prefill). The fake stops early if the client
	// disconnects.
	FirstTokenDelay time.Duration
	// PromptTokens is usage.prompt_tokens (default PromptTokens of the
	// request's messages, the fake tokenizer's count).
	PromptTokens int
	// OmitUsage leaves out the usage chunk (as vLLM does when the request
	// has no stream_options).
	OmitUsage bool
	// FinishReason is the finish chunk's reason (default "stop").
	FinishReason string

	// Status, if non-zero, answers this HTTP status with an error body
	// instead of streaming.
	Status int
	// ErrorShape is the error body shape for Status: "nested" (default,
	// vLLM ≥ 0.10.1), "flat" (vLLM ≤ 0.10.0), "string" ({"error":"…"}, as
	// --api-key's 401), or "html" (a proxy's page).
	ErrorShape string
	// ErrorMessage is the message of a Status error or an error event
	// (defaults: the status text, "Unauthorized" for "string", "Internal
	// server error" for events).
	ErrorMessage string
	// ContextTooLongAboveChars, if > 0, answers 400 with vLLM's
	// context-length error (param "input_tokens") when the request's
	// message contents total more characters than this.
	ContextTooLongAboveChars int

	// ErrorEventAt, if > 0, sends data: {"error": {…}} (json.dumps style)
	// after this many content chunks, then [DONE]: no finish, no usage.
	// ErrorEventFirst sends it before the role chunk.
	ErrorEventAt int
	// CutAfter, if > 0, ends the response after this many content chunks,
	// without finish, usage or [DONE]. The HTTP body ends cleanly (like a
	// proxy closing the stream) unless CutAbruptly is set.
	CutAfter int
	// CutAbruptly makes CutAfter close the TCP connection in the middle of
	// the chunked body (like a killed worker).
	CutAbruptly bool
	// GarbageAt, if > 0, writes a data line that is not JSON after this
	// many content chunks, then carries on.
	GarbageAt int
	// SplitWrites writes each event in small pieces, flushed separately,
	// cutting inside every multibyte UTF-8 character.
	SplitWrites bool
	// KeepAliveComments sends ": keep-alive\n\n" before every content
	// chunk and before the finish chunk.
	KeepAliveComments bool
	// Hang sends the 200 headers and then nothing, until the client
	// disconnects.
	Hang bool

	// LlamaCppErrors makes errors look like llama.cpp's llama-server
	// (reference "Other servers"): the in-stream error of ErrorEventAt is a
	// line `error: {"code":500,"message":…,"type":"server_error"}` instead
	// of a data: event, and ContextTooLongAboveChars answers 200 and then
	// `error: {"code":400,"message":"the request exceeds the available
	// context size, try increasing it","type":"invalid_request_error"}` (as
	// llama-server --no-context-shift does); both are followed by
	// data: [DONE].
	LlamaCppErrors bool

	errorCode int // the llama.cpp error line's code; 0 means 500
}

// LlamaContextSizeMessage is llama-server's message for a prompt over its
// context size.
const LlamaContextSizeMessage = "the request exceeds the available context size, try increasing it"

// RecordedMessage is one message of a recorded request.
type RecordedMessage struct {
	Role    string
	Content string // text parts joined when the content was an array
}

// StreamOptions is the request's stream_options.
type StreamOptions struct {
	IncludeUsage bool
}

// RecordedRequest is a request the fake received.
type RecordedRequest struct {
	Model    string
	Messages []RecordedMessage
	// MaxTokens is max_completion_tokens if present, else max_tokens
	// (vLLM's rule); 0 when neither was sent.
	MaxTokens     int
	Stream        bool
	StreamOptions *StreamOptions // nil when absent
	Authorization string         // the Authorization header
	Body          []byte         // the raw body
	// ContinueFinalMessage is the vLLM extra: continue the last
	// (assistant) message instead of answering it.
	ContinueFinalMessage bool
}

// Fake is the fake server. Its methods are safe for concurrent use.
type Fake struct {
	srv  *httptest.Server
	quit chan struct{} // closed at cleanup: every handler returns

	mu       sync.Mutex
	queue    []Script
	def      Script
	requests []RecordedRequest
	aborted  int
	changed  chan struct{} // closed (and replaced) when aborted grows

	tokenizer        Tokenizer
	maxModelLen      int
	tokenizeRequests int
}

// New starts a fake and stops it when the test ends.
func New(t testing.TB) *Fake {
	t.Helper()
	f := &Fake{quit: make(chan struct{}), changed: make(chan struct{}), maxModelLen: MaxModelLen}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", f.chatCompletions)
	mux.HandleFunc("GET /v1/models", f.models)
	mux.HandleFunc("POST /tokenize", f.tokenize)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		close(f.quit)
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	return f
}

// BaseURL is the OpenAI-compatible base URL, ending in "/v1".
func (f *Fake) BaseURL() string { return f.srv.URL + "/v1" }

// Enqueue adds a script for a future request; scripts are used in order,
// one per chat-completions request.
func (f *Fake) Enqueue(s Script) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue = append(f.queue, s)
}

// SetDefault sets the script used when the queue is empty.
func (f *Fake) SetDefault(s Script) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.def = s
}

// Requests returns the chat-completions requests received so far, in
// arrival order.
func (f *Fake) Requests() []RecordedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]RecordedRequest(nil), f.requests...)
}

// Aborted is how many streams the client closed before the fake finished
// writing them.
func (f *Fake) Aborted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.aborted
}

// WaitAborted blocks until Aborted() >= n or ctx ends.
func (f *Fake) WaitAborted(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		got, changed := f.aborted, f.changed
		f.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("llmtest: %d aborted streams, waiting for %d: %w", got, n, ctx.Err())
		}
	}
}

func (f *Fake) abort() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.aborted++
	close(f.changed)
	f.changed = make(chan struct{})
}

// next records the request and returns its script and sequence number.
func (f *Fake) next(rec RecordedRequest) (Script, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, rec)
	if len(f.queue) > 0 {
		s := f.queue[0]
		f.queue = f.queue[1:]
		return s, len(f.requests)
	}
	return f.def, len(f.requests)
}

func (f *Fake) models(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	f.mu.Lock()
	maxLen := f.maxModelLen
	f.mu.Unlock()
	_, _ = w.Write(vllmwire.ModelList(ModelName, Created, maxLen))
}

// requestBody is the part of a chat-completions body the fake reads.
type requestBody struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	MaxTokens           *int `json:"max_tokens"`
	MaxCompletionTokens *int `json:"max_completion_tokens"`
	Stream              bool `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage *bool `json:"include_usage"`
	} `json:"stream_options"`
	AddGenerationPrompt  *bool `json:"add_generation_prompt"`
	ContinueFinalMessage bool  `json:"continue_final_message"`
}

func (f *Fake) chatCompletions(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<20))
	if err != nil {
		vllmwire.WriteError(w, http.StatusBadRequest, vllmwire.ShapeNested, vllmwire.APIError{Message: "could not read body", Type: "BadRequestError", Code: 400})
		return
	}
	var in requestBody
	if err := json.Unmarshal(body, &in); err != nil {
		vllmwire.WriteError(w, http.StatusBadRequest, vllmwire.ShapeNested, vllmwire.APIError{Message: "JSON decode error: " + err.Error(), Type: "Bad Request", Code: 400})
		return
	}
	if in.ContinueFinalMessage && (in.AddGenerationPrompt == nil || *in.AddGenerationPrompt) {
		// vLLM's request validation (add_generation_prompt defaults to true).
		vllmwire.WriteError(w, http.StatusBadRequest, vllmwire.ShapeNested, vllmwire.APIError{
			Message: "Cannot set both `continue_final_message` and `add_generation_prompt` to True.", Type: "BadRequestError", Code: 400,
		})
		return
	}
	rec := record(in, body, r.Header.Get("Authorization"))
	s, seq := f.next(rec)

	if s.Status != 0 {
		writeStatus(w, s)
		return
	}
	if in.StreamOptions != nil && !in.Stream {
		vllmwire.WriteError(w, http.StatusBadRequest, vllmwire.ShapeNested, vllmwire.APIError{
			Message: "Stream options can only be defined when `stream=True`.", Type: "BadRequestError", Param: "stream_options", Code: 400,
		})
		return
	}
	chars := 0
	msgs := make([]llm.Message, len(rec.Messages))
	for i, m := range rec.Messages {
		chars += utf8.RuneCountInString(m.Content)
		msgs[i] = llm.Message{Role: m.Role, Content: m.Content}
	}
	promptTokens := PromptTokens(msgs)
	f.mu.Lock()
	maxLen := f.maxModelLen
	f.mu.Unlock()
	overContext := promptTokens+rec.MaxTokens > maxLen
	if overContext && !s.LlamaCppErrors {
		// vLLM's renderer check (reference section 2).
		vllmwire.WriteError(w, http.StatusBadRequest, vllmwire.ShapeNested, vllmwire.APIError{
			Message: fmt.Sprintf("You passed %d input tokens and requested %d output tokens. However, the model's context length is only %d tokens, "+
				"resulting in a maximum input length of %d tokens. Please reduce the length of the input prompt.",
				promptTokens, rec.MaxTokens, maxLen, maxLen-rec.MaxTokens),
			Type: "BadRequestError", Param: "input_tokens", Code: 400,
		})
		return
	}
	tooLong := overContext || s.ContextTooLongAboveChars > 0 && chars > s.ContextTooLongAboveChars
	if tooLong && s.LlamaCppErrors {
		s.ErrorEventAt, s.ErrorMessage, s.errorCode = ErrorEventFirst, LlamaContextSizeMessage, http.StatusBadRequest
	} else if tooLong {
		shape := s.ErrorShape
		if shape == "" {
			shape = vllmwire.ShapeNested
		}
		limit := max(s.ContextTooLongAboveChars/4, 1)
		vllmwire.WriteError(w, http.StatusBadRequest, shape, vllmwire.APIError{
			Message: fmt.Sprintf("This model's maximum context length is %d tokens. However, your request has %d input tokens. Please reduce the length of the input messages.",
				limit, promptTokens),
			Type: "BadRequestError", Param: "input_tokens", Code: 400,
		})
		return
	}

	if len(s.Tokens) == 0 {
		s.Tokens = DefaultTokens()
	}
	if s.FinishReason == "" {
		s.FinishReason = "stop"
	}
	if s.PromptTokens == 0 {
		s.PromptTokens = promptTokens
	}
	model := in.Model
	if model == "" {
		model = ModelName
	}
	c := vllmwire.Completion{ID: fmt.Sprintf("chatcmpl-%032x", seq), Created: Created, Model: model}
	if !in.Stream {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(c.Response(strings.Join(s.Tokens, ""), s.FinishReason, s.PromptTokens, len(s.Tokens)))
		return
	}
	// vLLM sends usage only when stream_options asks for it (include_usage
	// defaults to true once stream_options is present).
	if in.StreamOptions == nil || (in.StreamOptions.IncludeUsage != nil && !*in.StreamOptions.IncludeUsage) {
		s.OmitUsage = true
	}
	if !f.stream(w, r, s, c) {
		f.abort()
	}
}

func record(in requestBody, body []byte, auth string) RecordedRequest {
	rec := RecordedRequest{Model: in.Model, Stream: in.Stream, Authorization: auth, Body: body, ContinueFinalMessage: in.ContinueFinalMessage}
	if in.MaxTokens != nil {
		rec.MaxTokens = *in.MaxTokens
	}
	if in.MaxCompletionTokens != nil {
		rec.MaxTokens = *in.MaxCompletionTokens
	}
	if in.StreamOptions != nil {
		rec.StreamOptions = &StreamOptions{IncludeUsage: in.StreamOptions.IncludeUsage == nil || *in.StreamOptions.IncludeUsage}
	}
	for _, m := range in.Messages {
		rec.Messages = append(rec.Messages, RecordedMessage{Role: m.Role, Content: contentText(m.Content)})
	}
	return rec
}

// contentText reads a message content: a string, or an array of parts
// whose "text" fields are joined.
func contentText(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	var parts []struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err == nil {
		var b strings.Builder
		for _, p := range parts {
			b.WriteString(p.Text)
		}
		return b.String()
	}
	return ""
}

func writeStatus(w http.ResponseWriter, s Script) {
	shape := s.ErrorShape
	if shape == "" {
		shape = vllmwire.ShapeNested
	}
	msg := s.ErrorMessage
	if msg == "" {
		msg = http.StatusText(s.Status)
		if shape == vllmwire.ShapeString {
			msg = "Unauthorized"
		}
	}
	types := map[int]string{
		400: "BadRequestError", 401: "Unauthorized", 404: "NotFoundError", 429: "RateLimitError",
		500: "InternalServerError", 501: "NotImplementedError", 503: "ServiceUnavailableError",
	}
	typ, ok := types[s.Status]
	if !ok {
		typ = strings.ReplaceAll(http.StatusText(s.Status), " ", "") + "Error"
	}
	vllmwire.WriteError(w, s.Status, shape, vllmwire.APIError{Message: msg, Type: typ, Code: s.Status})
}

// stream writes a 200 event stream per the script. It returns false when
// the client went away before the end.
func (f *Fake) stream(w http.ResponseWriter, r *http.Request, s Script, c vllmwire.Completion) bool {
	out := &writer{w: w, rc: http.NewResponseController(w), ctx: r.Context(), quit: f.quit, split: s.SplitWrites}
	w.Header().Set("Content-Type", vllmwire.ContentType)
	w.WriteHeader(http.StatusOK)
	if err := out.rc.Flush(); err != nil {
		return false
	}
	if s.Hang {
		out.sleep(-1)
		return false
	}
	if !out.sleep(s.FirstTokenDelay) {
		return false
	}
	errorEvent := func() bool {
		msg := s.ErrorMessage
		if msg == "" {
			msg = "Internal server error"
		}
		ev := vllmwire.ErrorEvent(vllmwire.APIError{Message: msg, Type: "InternalServerError", Code: 500})
		if s.LlamaCppErrors {
			ev = llamaErrorLine(cmp.Or(s.errorCode, http.StatusInternalServerError), msg)
		}
		return out.write(ev) && out.write([]byte(vllmwire.Done))
	}
	if s.ErrorEventAt == ErrorEventFirst {
		return errorEvent()
	}
	if !out.write(c.RoleEvent()) {
		return false
	}
	for i := 0; ; i++ {
		if s.CutAfter > 0 && i == s.CutAfter {
			if s.CutAbruptly {
				out.cut()
			}
			return true
		}
		if s.ErrorEventAt > 0 && i == s.ErrorEventAt {
			return errorEvent()
		}
		if s.GarbageAt > 0 && i == s.GarbageAt {
			if !out.write([]byte("data: {\"id\":\"chatcmpl-garbage\",\"choices\":[{not json at all\n\n")) {
				return false
			}
		}
		if i == len(s.Tokens) {
			break
		}
		if i > 0 && !out.sleep(s.TokenDelay) {
			return false
		}
		if s.KeepAliveComments && !out.write([]byte(vllmwire.KeepAlive)) {
			return false
		}
		if !out.write(c.ContentEvent(s.Tokens[i])) {
			return false
		}
	}
	if s.KeepAliveComments && !out.write([]byte(vllmwire.KeepAlive)) {
		return false
	}
	if !out.write(c.FinishEvent(s.FinishReason)) {
		return false
	}
	if !s.OmitUsage && !out.write(c.UsageEvent(s.PromptTokens, len(s.Tokens))) {
		return false
	}
	return out.write([]byte(vllmwire.Done))
}

// llamaErrorLine is llama-server's in-stream error: "error: " and the
// error object dumped compact by nlohmann::json (keys sorted, raw UTF-8),
// then a blank line.
func llamaErrorLine(code int, message string) []byte {
	typ := "server_error"
	if code == http.StatusBadRequest {
		typ = "invalid_request_error"
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Type    string `json:"type"`
	}{code, message, typ})
	return append(append([]byte("error: "), bytes.TrimSuffix(b.Bytes(), []byte("\n"))...), "\n\n"...)
}

// writer writes events, flushing each, and notices a departed client.
type writer struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	ctx   context.Context
	quit  chan struct{}
	split bool
}

// write sends one event; false when the client is gone.
func (o *writer) write(b []byte) bool {
	if o.ctx.Err() != nil {
		return false
	}
	if !o.split {
		return o.send(b)
	}
	for _, part := range splitInsideRunes(b) {
		if !o.send(part) {
			return false
		}
		// Give the client a chance to read each piece separately.
		if !o.sleep(time.Millisecond) {
			return false
		}
	}
	return true
}

func (o *writer) send(b []byte) bool {
	if _, err := o.w.Write(b); err != nil {
		return false
	}
	return o.rc.Flush() == nil
}

// sleep pauses for d (forever when d < 0); false when the client went away
// or the fake is shutting down.
func (o *writer) sleep(d time.Duration) bool {
	if d == 0 {
		return o.ctx.Err() == nil
	}
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return true
	case <-o.ctx.Done():
		return false
	case <-o.quit:
		return false
	}
}

// cut closes the TCP connection in the middle of the chunked body.
func (o *writer) cut() {
	conn, _, err := o.rc.Hijack()
	if err != nil {
		return
	}
	conn.Close()
}

// splitInsideRunes cuts b after the first byte of every multibyte UTF-8
// character, and every 16 bytes of ASCII, so the client's reads end inside
// characters.
func splitInsideRunes(b []byte) [][]byte {
	var parts [][]byte
	start := 0
	for i := 0; i < len(b); {
		_, size := utf8.DecodeRune(b[i:])
		switch {
		case size > 1:
			parts = append(parts, b[start:i+1])
			start = i + 1
		case i+1-start >= 16:
			parts = append(parts, b[start:i+1])
			start = i + 1
		}
		i += size
	}
	if start < len(b) {
		parts = append(parts, b[start:])
	}
	return parts
}
