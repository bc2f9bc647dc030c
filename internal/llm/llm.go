// Package llm streams chat completions from OpenAI-compatible model servers:
// vLLM directly (http://host:8000/v1) and Runpod serverless
// (https://api.runpod.ai/v2/{endpoint}/openai/v1, bearer key).
//
// It is built on github.com/openai/openai-go/v3 (request encoding and
// sending; decoding of chunks of an unusual shape) and reads the stream with
// its own small decoder of the fields it uses (chunks.go: openai-go's
// reflection-based decoding of every field was the largest CPU cost per
// token; FuzzChunkDecoder holds the two to the same result). It adds what
// openai-go does not do for these servers (see
// /work/shared/reference/llm-protocol.md section 6):
//   - it reads every error body shape vLLM sends (nested, flat, string) and
//     rejects a non-stream answer to a stream request, in a response
//     middleware, before openai-go sees the response;
//   - it tells a cut stream from a finished one (openai-go ends both with a
//     nil error) by whether a finish_reason arrived;
//   - it reads llama.cpp's in-stream `error:` lines, which SSE decoders
//     ignore, as error events;
//   - it bounds the wait for the first token and the gaps between chunks,
//     and the connect time, per request;
//   - it classifies every failure into an *Error with a Kind and a message
//     safe to show a user.
package llm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"

	"luna/internal/inprocess"
)

// Default timeouts, used when a Request leaves them zero.
const (
	DefaultConnectTimeout    = 10 * time.Second
	DefaultFirstTokenTimeout = 60 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
)

// maxErrorBody bounds how much of a non-stream (error) body is read.
const maxErrorBody = 64 << 10

// Message is one turn of the conversation sent to the model.
type Message struct {
	Role    string // "system", "user" or "assistant"
	Content string
}

// Request is one streaming chat completion.
type Request struct {
	BaseURL  string // OpenAI-compatible base, e.g. http://host:8000/v1
	APIKey   string // optional; sent as "Authorization: Bearer <key>"
	Model    string // served model name
	Messages []Message
	// MaxTokens is sent as max_tokens; 0 leaves it to the server (vLLM then
	// uses the rest of the context).
	MaxTokens int

	// ConnectTimeout bounds the TCP connect plus TLS handshake; default 10 s.
	ConnectTimeout time.Duration
	// FirstTokenTimeout bounds the time from sending to the first content
	// delta (reasoning deltas do not count); default 60 s. Pass minutes for
	// serverless cold starts.
	FirstTokenTimeout time.Duration
	// IdleTimeout bounds the gap between chunks once content flows; default
	// 60 s. SSE comments (": keep-alive") do not reset it: openai-go
	// swallows them.
	IdleTimeout time.Duration

	// ContinueFinalMessage makes the model continue the last message, an
	// assistant's, instead of answering it: vLLM is sent
	// "continue_final_message": true and "add_generation_prompt": false;
	// llama.cpp continues a final assistant message anyway (prefill).
	ContinueFinalMessage bool
}

// Usage is the token count the server reported in its usage chunk.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
}

// Result describes a stream, complete or not.
type Result struct {
	// FinishReason is the server's: "stop", "length", "abort", …; empty when
	// the stream failed before the finish chunk.
	FinishReason string
	// Usage is nil when the server sent no usage chunk (cut stream, error,
	// or a server that ignores include_usage): estimate instead.
	Usage *Usage
	// ContentChunks counts the non-empty content deltas passed to onDelta
	// (about one token each), for estimating when Usage is nil.
	ContentChunks int
}

// Client streams chat completions. It is safe for concurrent use; all
// streams share one connection pool.
type Client struct {
	httpClient *http.Client
	closeIdle  func()
	logger     *slog.Logger
	tokenizers tokenizers // what each server's POST /tokenize speaks
}

// NewClient returns a Client that logs to logger (nil discards).
func NewClient(logger *slog.Logger, opts ...Option) *Client {
	transport := newTransport(nil)
	router := inprocess.Router{Next: transport, Hosts: map[string]http.RoundTripper{}}
	for _, o := range opts {
		o(router.Hosts)
	}
	if len(router.Hosts) == 0 {
		return newClient(logger, transport, transport.CloseIdleConnections)
	}
	return newClient(logger, router, transport.CloseIdleConnections)
}

// Option configures a Client.
type Option func(hosts map[string]http.RoundTripper)

// WithLocalHost sends the requests whose URL host is host to rt instead of
// the network: Luna's built-in demo model is served in-process this way.
func WithLocalHost(host string, rt http.RoundTripper) Option {
	return func(hosts map[string]http.RoundTripper) { hosts[host] = rt }
}

func newClient(logger *slog.Logger, rt http.RoundTripper, closeIdle func()) *Client {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		// No Timeout: a stream lasts as long as the model writes; Stream
		// enforces first-token and idle timeouts itself.
		httpClient: &http.Client{Transport: rt},
		closeIdle:  closeIdle,
		logger:     logger,
	}
}

// CloseIdleConnections closes pooled connections that no stream is using,
// for shutdown and tests.
func (c *Client) CloseIdleConnections() {
	c.closeIdle()
}

// Stream sends one streaming chat completion (stream=true,
// stream_options.include_usage=true, max_tokens) and calls onDelta with each
// non-empty content delta, in order, as it arrives, from the calling
// goroutine; reasoning deltas are not passed on. Time spent in onDelta does
// not count against the timeouts. It returns when the stream ends, with what
// was received so far.
//
// Every failure is an *Error. Cancelling ctx aborts the upstream request
// (vLLM then stops generating) and returns a KindCanceled error that
// satisfies errors.Is(err, context.Canceled). A stream that delivered its
// finish_reason is a success even if the usage chunk or [DONE] never came
// (Usage is then nil). Stream never retries.
func (c *Client) Stream(ctx context.Context, req Request, onDelta func(text string)) (Result, error) {
	var res Result
	params, err := req.params()
	if err != nil {
		return res, err
	}
	req = req.withDefaults()
	start := time.Now()

	// One timer bounds first the wait for the first content delta, then
	// each gap between chunks; firing cancels the request with a cause.
	streamCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(req.FirstTokenTimeout, func() { cancel(errStreamTimeout) })
	defer timer.Stop()

	var head responseHead
	opts := []option.RequestOption{
		option.WithBaseURL(req.BaseURL),
		option.WithHTTPClient(c.httpClient),
		option.WithMaxRetries(0),
		option.WithHeader("Accept", "text/event-stream"),
		option.WithMiddleware(head.check),
	}
	if req.APIKey != "" {
		opts = append(opts, option.WithAPIKey(req.APIKey))
	}
	if req.ContinueFinalMessage {
		opts = append(opts, option.WithJSONSet("continue_final_message", true), option.WithJSONSet("add_generation_prompt", false))
	}
	// NewChatCompletionService, unlike openai.NewClient, reads no OPENAI_*
	// environment variables: no OpenAI key or base URL can leak in.
	service := openai.NewChatCompletionService(opts...)
	// The request is built and sent on a goroutine of its own. openai-go's
	// request path (reflection-based encoding, middleware) runs deep, and a
	// goroutine keeps the stack it grew to: the caller's goroutine then
	// waits on the stream for the whole reply, and would hold about 16 KiB
	// more for it (lunabench's goroutine stacks per stream, N = 1,000).
	sent := make(chan *ssestream.Stream[openai.ChatCompletionChunk], 1)
	go func() { sent <- service.NewStreaming(withConnectTimeout(streamCtx, req.ConnectTimeout), params) }()
	stream := <-sent
	defer stream.Close()

	// openai-go sent the request; responseHead.check took the event stream
	// for chunkDecoder, which reads only the fields used here (openai-go
	// decodes every field of every chunk by reflection).
	defer head.close()
	streamErr := stream.Err()
	if head.lines != nil && streamErr == nil {
		dec := newChunkDecoder(head.lines)
		defer dec.release()
		var firstToken time.Duration
		for dec.Next() {
			c := dec.Chunk()
			if c.hasUsage {
				res.Usage = &Usage{PromptTokens: c.usage.PromptTokens, CompletionTokens: c.usage.CompletionTokens}
			}
			// choices holds index 0 only: we ask for n=1.
			for _, choice := range c.choices {
				if text := choice.content; text != "" {
					if res.ContentChunks == 0 {
						firstToken = time.Since(start)
					}
					res.ContentChunks++
					// Time the caller spends in onDelta is not an upstream gap.
					timer.Stop()
					if onDelta != nil {
						onDelta(text)
					}
				}
				if choice.finishReason != "" {
					res.FinishReason = choice.finishReason
				}
			}
			if res.ContentChunks > 0 {
				timer.Reset(req.IdleTimeout)
			}
		}
		streamErr = dec.Err()
		err = c.classify(ctx, streamCtx, req, &head, res, streamErr)
		c.log(ctx, req, res, err, time.Since(start), firstToken)
		return res, err
	}

	err = c.classify(ctx, streamCtx, req, &head, res, streamErr)
	c.log(ctx, req, res, err, time.Since(start), 0)
	return res, err
}

// classify turns how the stream ended into nil or an *Error. streamErr is
// openai-go's Stream.Err(): nil both after [DONE] and after a clean EOF.
func (c *Client) classify(ctx, streamCtx context.Context, req Request, head *responseHead, res Result, streamErr error) error {
	before := res.ContentChunks == 0
	finished := res.FinishReason != ""
	mark := func(e *Error) *Error {
		e.BeforeFirstToken = before
		if e.Status == 0 {
			e.Status = head.status
		}
		return e
	}

	if streamErr == nil {
		if !finished {
			cause := errors.New("stream ended without finish_reason or [DONE]")
			if head.lines != nil && head.lines.sawDone {
				cause = errors.New("stream ended with [DONE] but without a finish_reason")
			}
			return mark(&Error{
				Kind:    KindTruncated,
				Message: "The reply was cut off: the model server ended the stream before the reply finished.",
				Err:     cause,
			})
		}
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		msg := "The request was cancelled."
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			msg = "The request ran out of time."
		}
		return mark(&Error{Kind: KindCanceled, Message: msg, Err: ctxErr})
	}
	if errors.Is(context.Cause(streamCtx), errStreamTimeout) {
		if finished {
			// Everything but the usage chunk arrived.
			return nil
		}
		if before {
			return mark(&Error{
				Kind:    KindTimeout,
				Message: fmt.Sprintf("The model did not start answering within %s.", req.FirstTokenTimeout),
				Err:     fmt.Errorf("no content delta within FirstTokenTimeout %s: %w", req.FirstTokenTimeout, errStreamTimeout),
			})
		}
		return mark(&Error{
			Kind:    KindTimeout,
			Message: fmt.Sprintf("The model stopped answering: nothing arrived for %s.", req.IdleTimeout),
			Err:     fmt.Errorf("no chunk within IdleTimeout %s: %w", req.IdleTimeout, errStreamTimeout),
		})
	}
	var llmErr *Error
	if errors.As(streamErr, &llmErr) { // from responseHead.check
		return mark(llmErr)
	}
	var eventErr *ssestream.StreamError
	if errors.As(streamErr, &eventErr) {
		return mark(eventError(head.status, eventErr.Event.Data, before))
	}
	if !head.received {
		return mark(connectionError(streamErr))
	}
	if head.bodyErr != nil {
		if finished {
			// The connection broke after the finish chunk.
			return nil
		}
		return mark(&Error{
			Kind:    KindTruncated,
			Message: "The reply was cut off: the connection to the model server broke before the reply finished.",
			Err:     streamErr,
		})
	}
	// Not a transport failure: openai-go could not decode the bytes (a
	// data line that is not JSON, or one longer than its 32 MiB line cap).
	return mark(&Error{
		Kind:    KindMalformed,
		Message: "The model server sent a reply that could not be read.",
		Err:     streamErr,
	})
}

func (c *Client) log(ctx context.Context, req Request, res Result, err error, elapsed, firstToken time.Duration) {
	attrs := []slog.Attr{
		slog.String("model", req.Model),
		slog.String("base_url", req.BaseURL),
		slog.Duration("elapsed", elapsed),
		slog.Int("chunks", res.ContentChunks),
		slog.String("finish_reason", res.FinishReason),
	}
	if res.ContentChunks > 0 {
		attrs = append(attrs, slog.Duration("first_token", firstToken))
	}
	if res.Usage != nil {
		attrs = append(attrs, slog.Int("prompt_tokens", res.Usage.PromptTokens), slog.Int("completion_tokens", res.Usage.CompletionTokens))
	}
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			attrs = append(attrs, slog.String("kind", string(e.Kind)), slog.Int("status", e.Status), slog.Bool("before_first_token", e.BeforeFirstToken))
		}
		attrs = append(attrs, slog.String("error", err.Error()))
		c.logger.LogAttrs(ctx, slog.LevelDebug, "llm stream failed", attrs...)
		return
	}
	c.logger.LogAttrs(ctx, slog.LevelDebug, "llm stream finished", attrs...)
}

// responseHead checks the response before openai-go decodes it, and records
// what the classification needs. Stream uses one per call, from its own
// goroutine only.
type responseHead struct {
	received bool             // response headers arrived
	status   int              // their status
	bodyErr  error            // the first error reading the stream body, EOF excluded
	lines    *errorLineReader // the stream body's line reader, once a stream arrived
	body     io.Closer        // the stream body, once a stream arrived
}

// close closes the stream body, if one arrived.
func (h *responseHead) close() {
	if h.body != nil {
		h.body.Close()
		h.lines.release()
	}
}

// check is an openai-go middleware. A 200 text/event-stream passes through
// (its body watched for transport errors); anything else is read (bounded)
// and returned as an *Error. openai-go on its own loses the status of
// {"error":"Unauthorized"}, the message of the flat shape, and decodes a 200
// application/json body as an empty, successful stream.
func (h *responseHead) check(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	res, err := next(req)
	if err != nil {
		return nil, err
	}
	h.received = true
	h.status = res.StatusCode
	mt := mediaType(res.Header.Get("Content-Type"))
	// Anything not JSON or HTML is decoded as SSE, as openai-go does: a
	// relay may label the stream differently.
	if res.StatusCode == http.StatusOK && !isJSONType(mt) && !isHTML(mt, nil) {
		body := &watchedBody{ReadCloser: res.Body, head: h}
		h.body, h.lines = body, newErrorLineReader(body)
		// openai-go gets an empty body (an empty stream): Stream reads
		// this one.
		res.Body = http.NoBody
		return res, nil
	}
	body, readErr := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
	res.Body.Close()
	return nil, statusError(res.StatusCode, res.Header.Get("Content-Type"), body, readErr)
}

// watchedBody records the first read error of the stream body, so that a
// broken connection (truncated) can be told from undecodable bytes
// (malformed).
type watchedBody struct {
	io.ReadCloser
	head *responseHead
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.head.bodyErr == nil {
		b.head.bodyErr = err
	}
	return n, err
}

// params validates the request and converts it to openai-go's parameters.
func (r Request) params() (openai.ChatCompletionNewParams, error) {
	var p openai.ChatCompletionNewParams
	invalid := func(format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		return &Error{Kind: KindInvalid, Message: "The model is not configured correctly.", BeforeFirstToken: true, Err: errors.New(msg)}
	}
	u, err := url.Parse(r.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return p, invalid("base URL %q is not an http(s) URL", r.BaseURL)
	}
	if len(r.Messages) == 0 {
		return p, invalid("no messages")
	}
	if r.ContinueFinalMessage && r.Messages[len(r.Messages)-1].Role != "assistant" {
		return p, invalid("continuing a %q message", r.Messages[len(r.Messages)-1].Role)
	}
	if r.MaxTokens < 0 {
		return p, invalid("max tokens %d < 0", r.MaxTokens)
	}
	p.Model = r.Model
	p.Messages = make([]openai.ChatCompletionMessageParamUnion, 0, len(r.Messages))
	for i, m := range r.Messages {
		switch m.Role {
		case "system":
			p.Messages = append(p.Messages, openai.SystemMessage(m.Content))
		case "user":
			p.Messages = append(p.Messages, openai.UserMessage(m.Content))
		case "assistant":
			p.Messages = append(p.Messages, openai.AssistantMessage(m.Content))
		default:
			return p, invalid("message %d has role %q", i, m.Role)
		}
	}
	if r.MaxTokens > 0 {
		p.MaxTokens = openai.Int(int64(r.MaxTokens))
	}
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	return p, nil
}

func (r Request) withDefaults() Request {
	if r.ConnectTimeout <= 0 {
		r.ConnectTimeout = DefaultConnectTimeout
	}
	if r.FirstTokenTimeout <= 0 {
		r.FirstTokenTimeout = DefaultFirstTokenTimeout
	}
	if r.IdleTimeout <= 0 {
		r.IdleTimeout = DefaultIdleTimeout
	}
	return r
}
