package llm_test

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"luna/internal/llm"
	"luna/internal/llm/llmtest"
)

// newClient returns a Client whose idle connections are closed when the test
// ends.
func newClient(t *testing.T) *llm.Client {
	t.Helper()
	c := llm.NewClient(slog.New(slog.DiscardHandler))
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// collect runs Stream and returns the deltas joined.
func collect(ctx context.Context, c *llm.Client, req llm.Request) (string, llm.Result, error) {
	var b strings.Builder
	res, err := c.Stream(ctx, req, func(text string) { b.WriteString(text) })
	return b.String(), res, err
}

func request(baseURL string) llm.Request {
	return llm.Request{
		BaseURL:   baseURL,
		APIKey:    "sk-test",
		Model:     "meta-llama/Llama-3.1-8B-Instruct",
		Messages:  []llm.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}},
		MaxTokens: 64,
	}
}

// asError fails the test unless err is an *llm.Error.
func asError(t *testing.T, err error) *llm.Error {
	t.Helper()
	var e *llm.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %T %v, want *llm.Error", err, err)
	}
	return e
}

func TestStream(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	wantPrompt := llmtest.PromptTokens(request("").Messages)

	tests := []struct {
		name   string
		script llmtest.Script
		tweak  func(*llm.Request)

		wantText    string
		wantFinish  string
		wantUsage   *llm.Usage
		wantKind    llm.ErrorKind // "" means success
		wantStatus  int
		wantBefore  bool
		wantMessage string // substring of Error.Message
		wantAbort   bool   // the fake sees the client leave
		wantCode    int    // Error.Code, when non-zero
	}{
		{
			name:       "normal",
			script:     llmtest.Script{Tokens: []string{"Hel", "lo", " world"}, PromptTokens: 36},
			wantText:   "Hello world",
			wantFinish: "stop",
			wantUsage:  &llm.Usage{PromptTokens: 36, CompletionTokens: 3},
		},
		{
			name:       "default prompt tokens are the fake tokenizer's count",
			script:     llmtest.Script{Tokens: []string{"a"}},
			wantText:   "a",
			wantFinish: "stop",
			wantUsage:  &llm.Usage{PromptTokens: wantPrompt, CompletionTokens: 1},
		},
		{
			name:       "finish reason length",
			script:     llmtest.Script{Tokens: []string{"a", "b"}, FinishReason: "length", PromptTokens: 10},
			wantText:   "ab",
			wantFinish: "length",
			wantUsage:  &llm.Usage{PromptTokens: 10, CompletionTokens: 2},
		},
		{
			name:       "usage missing",
			script:     llmtest.Script{Tokens: []string{"a", "b"}, OmitUsage: true},
			wantText:   "ab",
			wantFinish: "stop",
		},
		{
			name:       "keep-alive comments ignored",
			script:     llmtest.Script{Tokens: []string{"a", "b", "c"}, KeepAliveComments: true, PromptTokens: 5},
			wantText:   "abc",
			wantFinish: "stop",
			wantUsage:  &llm.Usage{PromptTokens: 5, CompletionTokens: 3},
		},
		{
			name:       "writes split inside multibyte characters",
			script:     llmtest.Script{Tokens: []string{"h", "é", "llo ", "wörld ", "日本語", " 🙂", "é🙂日"}, SplitWrites: true, PromptTokens: 9},
			wantText:   "héllo wörld 日本語 🙂é🙂日",
			wantFinish: "stop",
			wantUsage:  &llm.Usage{PromptTokens: 9, CompletionTokens: 7},
		},
		{
			name:       "1 MiB data line",
			script:     llmtest.Script{Tokens: []string{"<", strings.Repeat("x", 1<<20), ">"}, PromptTokens: 1},
			wantText:   "<" + strings.Repeat("x", 1<<20) + ">",
			wantFinish: "stop",
			wantUsage:  &llm.Usage{PromptTokens: 1, CompletionTokens: 3},
		},
		{
			name:        "error event first",
			script:      llmtest.Script{ErrorEventAt: llmtest.ErrorEventFirst, ErrorMessage: "engine died: CUDA out of memory"},
			wantKind:    llm.KindUpstream,
			wantStatus:  200,
			wantBefore:  true,
			wantMessage: "before answering: engine died: CUDA out of memory",
		},
		{
			name:        "error event mid-stream",
			script:      llmtest.Script{Tokens: []string{"a", "b", "c"}, ErrorEventAt: 2, ErrorMessage: "KV cache load failed"},
			wantText:    "ab",
			wantKind:    llm.KindUpstream,
			wantStatus:  200,
			wantMessage: "while answering: KV cache load failed",
		},
		{
			name:        "error event with non-ASCII message",
			script:      llmtest.Script{Tokens: []string{"a"}, ErrorEventAt: 1, ErrorMessage: "ошибка 🙂"},
			wantText:    "a",
			wantKind:    llm.KindUpstream,
			wantStatus:  200,
			wantMessage: "ошибка 🙂",
		},
		{
			name: "llama.cpp error line mid-stream",
			script: llmtest.Script{Tokens: []string{"a", "b", "c"}, ErrorEventAt: 2, ErrorMessage: "slot 0: decode failed",
				LlamaCppErrors: true, SplitWrites: true},
			wantText:    "ab",
			wantKind:    llm.KindUpstream,
			wantStatus:  200,
			wantCode:    500,
			wantMessage: "while answering: slot 0: decode failed",
		},
		{
			name:        "llama.cpp context size error line",
			script:      llmtest.Script{ContextTooLongAboveChars: 5, LlamaCppErrors: true},
			wantKind:    llm.KindContextLength,
			wantStatus:  200,
			wantCode:    400,
			wantBefore:  true,
			wantMessage: "exceeds the available context size",
		},
		{
			name:        "cut without [DONE], clean end of body",
			script:      llmtest.Script{Tokens: []string{"a", "b", "c"}, CutAfter: 2},
			wantText:    "ab",
			wantKind:    llm.KindTruncated,
			wantStatus:  200,
			wantMessage: "cut off",
		},
		{
			name:        "cut without [DONE], connection closed",
			script:      llmtest.Script{Tokens: []string{"a", "b", "c"}, CutAfter: 1, CutAbruptly: true},
			wantText:    "a",
			wantKind:    llm.KindTruncated,
			wantStatus:  200,
			wantMessage: "cut off",
		},
		{
			name:        "HTTP 500 nested",
			script:      llmtest.Script{Status: 500, ErrorMessage: "Internal server error"},
			wantKind:    llm.KindUpstream,
			wantStatus:  500,
			wantBefore:  true,
			wantMessage: "The model server failed (HTTP 500): Internal server error",
		},
		{
			name:        "HTTP 500 flat (vLLM <= 0.10.0)",
			script:      llmtest.Script{Status: 500, ErrorShape: "flat", ErrorMessage: "old engine error"},
			wantKind:    llm.KindUpstream,
			wantStatus:  500,
			wantBefore:  true,
			wantMessage: "(HTTP 500): old engine error",
		},
		{
			name:        "HTTP 401 string shape",
			script:      llmtest.Script{Status: 401, ErrorShape: "string"},
			wantKind:    llm.KindUpstream,
			wantStatus:  401,
			wantBefore:  true,
			wantMessage: "refused the API key (HTTP 401): Unauthorized",
		},
		{
			name:        "HTTP 503",
			script:      llmtest.Script{Status: 503, ErrorMessage: ""},
			wantKind:    llm.KindUpstream,
			wantStatus:  503,
			wantBefore:  true,
			wantMessage: "The model server is unavailable (HTTP 503)",
		},
		{
			name:        "HTTP 502 HTML page from a proxy",
			script:      llmtest.Script{Status: 502, ErrorShape: "html"},
			wantKind:    llm.KindUpstream,
			wantStatus:  502,
			wantBefore:  true,
			wantMessage: "The model server is unavailable (HTTP 502).",
		},
		{
			name:        "HTTP 429",
			script:      llmtest.Script{Status: 429, ErrorMessage: "Too many requests"},
			wantKind:    llm.KindRateLimited,
			wantStatus:  429,
			wantBefore:  true,
			wantMessage: "HTTP 429",
		},
		{
			name:        "context too long (param input_tokens)",
			script:      llmtest.Script{ContextTooLongAboveChars: 5},
			wantKind:    llm.KindContextLength,
			wantStatus:  400,
			wantBefore:  true,
			wantMessage: "maximum context length is",
		},
		{
			name: "context too long, old wording, flat, param null",
			script: llmtest.Script{Status: 400, ErrorShape: "flat", ErrorMessage: "This model's maximum context length is 4096 tokens. " +
				"However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion."},
			wantKind:    llm.KindContextLength,
			wantStatus:  400,
			wantBefore:  true,
			wantMessage: "too long",
		},
		{
			name:        "other 400",
			script:      llmtest.Script{Status: 400, ErrorMessage: "temperature must be non-negative"},
			wantKind:    llm.KindUpstream,
			wantStatus:  400,
			wantBefore:  true,
			wantMessage: "rejected the request (HTTP 400): temperature must be non-negative",
		},
		{
			name:        "garbage data line",
			script:      llmtest.Script{Tokens: []string{"a", "b"}, GarbageAt: 1},
			wantText:    "a",
			wantKind:    llm.KindMalformed,
			wantStatus:  200,
			wantMessage: "could not be read",
		},
		{
			name:        "first token timeout",
			script:      llmtest.Script{FirstTokenDelay: time.Minute},
			tweak:       func(r *llm.Request) { r.FirstTokenTimeout = 200 * time.Millisecond },
			wantKind:    llm.KindTimeout,
			wantStatus:  200,
			wantBefore:  true,
			wantMessage: "did not start answering within 200ms",
			wantAbort:   true,
		},
		{
			name:        "first token timeout, server hangs",
			script:      llmtest.Script{Hang: true},
			tweak:       func(r *llm.Request) { r.FirstTokenTimeout = 200 * time.Millisecond },
			wantKind:    llm.KindTimeout,
			wantStatus:  200,
			wantBefore:  true,
			wantMessage: "did not start answering",
			wantAbort:   true,
		},
		{
			name:   "idle timeout mid-stream",
			script: llmtest.Script{Tokens: []string{"a", "b"}, TokenDelay: time.Minute},
			tweak: func(r *llm.Request) {
				r.FirstTokenTimeout = 10 * time.Second
				r.IdleTimeout = 200 * time.Millisecond
			},
			wantText:    "a",
			wantKind:    llm.KindTimeout,
			wantStatus:  200,
			wantMessage: "nothing arrived for 200ms",
			wantAbort:   true,
		},
		{
			name:   "slow first token within the timeout, then steady tokens",
			script: llmtest.Script{Tokens: []string{"a", "b", "c"}, FirstTokenDelay: 300 * time.Millisecond, TokenDelay: 50 * time.Millisecond, PromptTokens: 3},
			tweak: func(r *llm.Request) {
				r.FirstTokenTimeout = 10 * time.Second
				r.IdleTimeout = 5 * time.Second
			},
			wantText:   "abc",
			wantFinish: "stop",
			wantUsage:  &llm.Usage{PromptTokens: 3, CompletionTokens: 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := llmtest.New(t)
			fake.Enqueue(tt.script)
			req := request(fake.BaseURL())
			if tt.tweak != nil {
				tt.tweak(&req)
			}
			text, res, err := collect(t.Context(), client, req)

			if got, want := text, tt.wantText; got != want {
				t.Errorf("text = %.80q (%d bytes), want %.80q (%d bytes)", got, len(got), want, len(want))
			}
			if got, want := res.ContentChunks, len(tt.script.Tokens); tt.wantKind == "" && got != want {
				t.Errorf("ContentChunks = %d, want %d", got, want)
			}
			if got, want := res.FinishReason, tt.wantFinish; got != want {
				t.Errorf("FinishReason = %q, want %q", got, want)
			}
			if tt.wantUsage == nil && res.Usage != nil {
				t.Errorf("Usage = %+v, want nil", *res.Usage)
			}
			if tt.wantUsage != nil && (res.Usage == nil || *res.Usage != *tt.wantUsage) {
				t.Errorf("Usage = %+v, want %+v", res.Usage, *tt.wantUsage)
			}
			if tt.wantKind == "" {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			e := asError(t, err)
			if got, want := e.Kind, tt.wantKind; got != want {
				t.Errorf("Kind = %q, want %q (%v)", got, want, err)
			}
			if got, want := e.Status, tt.wantStatus; got != want {
				t.Errorf("Status = %d, want %d", got, want)
			}
			if got, want := e.BeforeFirstToken, tt.wantBefore; got != want {
				t.Errorf("BeforeFirstToken = %v, want %v", got, want)
			}
			if got, want := e.Code, tt.wantCode; want != 0 && got != want {
				t.Errorf("Code = %d, want %d", got, want)
			}
			if !strings.Contains(e.Message, tt.wantMessage) {
				t.Errorf("Message = %q, want it to contain %q", e.Message, tt.wantMessage)
			}
			if strings.ContainsAny(e.Message, "<>") {
				t.Errorf("Message = %q contains markup", e.Message)
			}
			if e.Err == nil {
				t.Errorf("Err = nil, want a cause")
			}
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("errors.Is(%v, context error) = true, want false", err)
			}
			if tt.wantAbort {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				if err := fake.WaitAborted(ctx, 1); err != nil {
					t.Errorf("fake never saw the client leave: %v", err)
				}
			}
		})
	}
}

func TestStreamSendsRequest(t *testing.T) {
	// Not parallel: sets the environment, to prove that openai-go's OPENAI_*
	// variables do not reach the request.
	t.Setenv("OPENAI_API_KEY", "sk-from-env")
	t.Setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
	t.Setenv("OPENAI_ORG_ID", "org-from-env")
	client := newClient(t)

	tests := []struct {
		name     string
		apiKey   string
		maxToken int
		wantAuth string
	}{
		{name: "bearer key", apiKey: "sk-test", maxToken: 64, wantAuth: "Bearer sk-test"},
		{name: "no key, no max tokens", apiKey: "", maxToken: 0, wantAuth: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := llmtest.New(t)
			req := request(fake.BaseURL())
			req.APIKey = tt.apiKey
			req.MaxTokens = tt.maxToken
			req.Messages = append(req.Messages, llm.Message{Role: "assistant", Content: "Hello!"}, llm.Message{Role: "user", Content: "Tell me more"})
			if _, _, err := collect(t.Context(), client, req); err != nil {
				t.Fatalf("Stream: %v", err)
			}
			reqs := fake.Requests()
			if got, want := len(reqs), 1; got != want {
				t.Fatalf("requests = %d, want %d", got, want)
			}
			got := reqs[0]
			if got, want := got.Authorization, tt.wantAuth; got != want {
				t.Errorf("Authorization = %q, want %q", got, want)
			}
			if got, want := got.Model, req.Model; got != want {
				t.Errorf("model = %q, want %q", got, want)
			}
			if got, want := got.Stream, true; got != want {
				t.Errorf("stream = %v, want %v", got, want)
			}
			if got.StreamOptions == nil || !got.StreamOptions.IncludeUsage {
				t.Errorf("stream_options = %+v, want include_usage true (body %s)", got.StreamOptions, got.Body)
			}
			if got, want := got.MaxTokens, tt.maxToken; got != want {
				t.Errorf("max_tokens = %d, want %d", got, want)
			}
			if got, want := len(got.Messages), len(req.Messages); got != want {
				t.Fatalf("messages = %d, want %d", got, want)
			}
			for i, m := range req.Messages {
				if got.Messages[i].Role != m.Role || got.Messages[i].Content != m.Content {
					t.Errorf("message %d = %+v, want %+v", i, got.Messages[i], m)
				}
			}
			if strings.Contains(string(got.Body), "max_completion_tokens") {
				t.Errorf("body sends max_completion_tokens: %s", got.Body)
			}
		})
	}
}

func TestStreamCancel(t *testing.T) {
	t.Parallel()
	client := newClient(t)

	tests := []struct {
		name       string
		script     llmtest.Script
		cancelAt   int // cancel after this many deltas; 0 = from another goroutine before the first
		wantChunks int
		wantBefore bool
	}{
		{name: "mid-stream", script: llmtest.Script{Tokens: []string{"a", "b", "c", "d"}, TokenDelay: time.Minute}, cancelAt: 1, wantChunks: 1},
		{name: "before the first token", script: llmtest.Script{FirstTokenDelay: time.Minute}, cancelAt: 0, wantChunks: 0, wantBefore: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := llmtest.New(t)
			fake.Enqueue(tt.script)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var wg sync.WaitGroup
			if tt.cancelAt == 0 {
				// Cancel once the fake has the request.
				wg.Go(func() {
					for len(fake.Requests()) == 0 && ctx.Err() == nil {
						time.Sleep(5 * time.Millisecond)
					}
					cancel()
				})
			}
			deltas := 0
			res, err := client.Stream(ctx, request(fake.BaseURL()), func(string) {
				deltas++
				if deltas == tt.cancelAt {
					cancel()
				}
			})
			wg.Wait()

			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			e := asError(t, err)
			if got, want := e.Kind, llm.KindCanceled; got != want {
				t.Errorf("Kind = %q, want %q", got, want)
			}
			if got, want := e.BeforeFirstToken, tt.wantBefore; got != want {
				t.Errorf("BeforeFirstToken = %v, want %v", got, want)
			}
			if got, want := res.ContentChunks, tt.wantChunks; got != want {
				t.Errorf("ContentChunks = %d, want %d", got, want)
			}
			waitCtx, waitCancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer waitCancel()
			if err := fake.WaitAborted(waitCtx, 1); err != nil {
				t.Errorf("fake never saw the abort: %v", err)
			}
		})
	}
}

func TestStreamConcurrent(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	fake := llmtest.New(t)
	fake.SetDefault(llmtest.Script{Tokens: []string{"one", " two", " three"}, TokenDelay: 5 * time.Millisecond})

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			text, _, err := collect(t.Context(), client, request(fake.BaseURL()))
			if err == nil && text != "one two three" {
				err = errors.New("text = " + text)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got, want := len(fake.Requests()), n; got != want {
		t.Errorf("requests = %d, want %d", got, want)
	}
}

func TestStreamConnectionErrors(t *testing.T) {
	t.Parallel()

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()

	// A TLS server whose certificate the production client does not trust.
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsSrv.Close)

	// A TCP server that accepts and never speaks: the TLS handshake hangs.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted sync.WaitGroup
	accepted.Go(func() {
		var conns []net.Conn
		for {
			conn, err := silent.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, conn)
		}
	})
	t.Cleanup(func() {
		silent.Close()
		accepted.Wait()
	})

	tests := []struct {
		name        string
		baseURL     string
		wantMessage string
	}{
		{name: "connection refused", baseURL: "http://" + closedAddr + "/v1", wantMessage: "connection refused"},
		{name: "untrusted certificate", baseURL: tlsSrv.URL + "/v1", wantMessage: "TLS handshake failed"},
		{name: "TLS handshake never completes", baseURL: "https://" + silent.Addr().String() + "/v1", wantMessage: "connection timed out"},
		{name: "unknown host", baseURL: "http://no-such-host.invalid/v1", wantMessage: "host not found"},
	}
	client := newClient(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if strings.HasSuffix(tt.baseURL, ".invalid/v1") && (os.Getenv("HTTP_PROXY") != "" || os.Getenv("http_proxy") != "") {
				t.Skip("an HTTP proxy would answer for the unknown host")
			}
			req := request(tt.baseURL)
			// Short only where the test waits for it: a handshake that
			// never completes. The others fail on their own, however slow
			// the machine.
			req.ConnectTimeout = 10 * time.Second
			if strings.Contains(tt.name, "never completes") {
				req.ConnectTimeout = 300 * time.Millisecond
			}
			_, res, err := collect(t.Context(), client, req)
			e := asError(t, err)
			if got, want := e.Kind, llm.KindConnection; got != want {
				t.Errorf("Kind = %q, want %q (%v)", got, want, err)
			}
			if got, want := e.Status, 0; got != want {
				t.Errorf("Status = %d, want %d", got, want)
			}
			if !e.BeforeFirstToken {
				t.Errorf("BeforeFirstToken = false, want true")
			}
			if !strings.Contains(e.Message, tt.wantMessage) {
				t.Errorf("Message = %q, want it to contain %q (%v)", e.Message, tt.wantMessage, err)
			}
			if got, want := res.ContentChunks, 0; got != want {
				t.Errorf("ContentChunks = %d, want %d", got, want)
			}
		})
	}
}

func TestStreamTLS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got, want := r.ProtoMajor, 1; got != want {
			t.Errorf("proto = %s, want HTTP/1.x", r.Proto)
		}
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		_, _ = w.Write([]byte(transcript))
	}))
	t.Cleanup(srv.Close)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig
	client := llm.NewClientWithTLS(nil, &tls.Config{RootCAs: roots.RootCAs})
	t.Cleanup(client.CloseIdleConnections)

	text, res, err := collect(t.Context(), client, request(srv.URL+"/v1"))
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if got, want := text, "Hello!"; got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
	if got, want := res.FinishReason, "stop"; got != want {
		t.Errorf("FinishReason = %q, want %q", got, want)
	}
}

func TestStreamInvalidRequest(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	tests := []struct {
		name  string
		tweak func(*llm.Request)
	}{
		{name: "no base URL", tweak: func(r *llm.Request) { r.BaseURL = "" }},
		{name: "not http", tweak: func(r *llm.Request) { r.BaseURL = "ftp://host/v1" }},
		{name: "no messages", tweak: func(r *llm.Request) { r.Messages = nil }},
		{name: "unknown role", tweak: func(r *llm.Request) { r.Messages = []llm.Message{{Role: "tool", Content: "x"}} }},
		{name: "negative max tokens", tweak: func(r *llm.Request) { r.MaxTokens = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := request("http://127.0.0.1:1/v1")
			tt.tweak(&req)
			_, _, err := collect(t.Context(), client, req)
			e := asError(t, err)
			if got, want := e.Kind, llm.KindInvalid; got != want {
				t.Errorf("Kind = %q, want %q", got, want)
			}
			if !e.BeforeFirstToken {
				t.Errorf("BeforeFirstToken = false, want true")
			}
		})
	}
}

// transcript is reference section 1's transcript, verbatim apart from the id.
const transcript = `data: {"id":"chatcmpl-5d1f","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null}

data: {"id":"chatcmpl-5d1f","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null,"token_ids":null}]}

data: {"id":"chatcmpl-5d1f","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":"!"},"logprobs":null,"finish_reason":null,"token_ids":null}]}

data: {"id":"chatcmpl-5d1f","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}]}

data: {"id":"chatcmpl-5d1f","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[],"usage":{"prompt_tokens":36,"total_tokens":39,"completion_tokens":3}}

data: [DONE]

`

// chunk is a content chunk with the given delta and finish_reason JSON.
func chunk(delta, finish string) string {
	return `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":` + delta +
		`,"logprobs":null,"finish_reason":` + finish + `}]}` + "\n\n"
}

// TestStreamRawBytes covers wire variants the fake does not produce: other
// vLLM versions, reasoning parsers, proxies, other servers.
func TestStreamRawBytes(t *testing.T) {
	t.Parallel()
	usage := `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":7,"total_tokens":9,"completion_tokens":2}}` + "\n\n"
	tests := []struct {
		name        string
		contentType string
		status      int
		body        string

		wantText   string
		wantFinish string
		wantUsage  *llm.Usage
		wantKind   llm.ErrorKind
		wantStatus int
		wantCause  string // substring of the error, for logs
	}{
		{
			name: "reference transcript", body: transcript,
			wantText: "Hello!", wantFinish: "stop", wantUsage: &llm.Usage{PromptTokens: 36, CompletionTokens: 3},
		},
		{
			name:     "CRLF line endings and data: without space",
			body:     strings.ReplaceAll(strings.ReplaceAll(chunk(`{"content":"a"}`, "null")+chunk(`{"content":"b"}`, `"stop"`)+usage+"data: [DONE]\n\n", "\n", "\r\n"), "data: ", "data:"),
			wantText: "ab", wantFinish: "stop", wantUsage: &llm.Usage{PromptTokens: 7, CompletionTokens: 2},
		},
		{
			name: "reasoning deltas are not shown",
			body: chunk(`{"role":"assistant","content":""}`, "null") +
				chunk(`{"reasoning":"let me think"}`, "null") +
				chunk(`{"reasoning_content":"hmm","content":null}`, "null") +
				chunk(`{"content":"answer"}`, "null") + chunk(`{}`, `"stop"`) + usage + "data: [DONE]\n\n",
			wantText: "answer", wantFinish: "stop", wantUsage: &llm.Usage{PromptTokens: 7, CompletionTokens: 2},
		},
		{
			name: "very old vLLM role chunk without content, unknown vendor fields",
			body: `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant"},"logprobs":null,"finish_reason":null}],"system_fingerprint":null,"metrics":{"x":1},"prompt_text":null}` + "\n\n" +
				chunk(`{"content":"x"}`, "null") + chunk(`{"content":""}`, `"stop"`) + "data: [DONE]\n\n",
			wantText: "x", wantFinish: "stop",
		},
		{
			name: "continuous usage stats: every chunk has usage, last wins",
			body: `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}],"usage":{"prompt_tokens":7,"total_tokens":8,"completion_tokens":1}}` + "\n\n" +
				chunk(`{"content":""}`, `"stop"`) + usage + "data: [DONE]\n\n",
			wantText: "a", wantFinish: "stop", wantUsage: &llm.Usage{PromptTokens: 7, CompletionTokens: 2},
		},
		{
			name: "other choice indexes are ignored",
			body: `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":1,"delta":{"content":"other"},"finish_reason":null}]}` + "\n\n" +
				chunk(`{"content":"mine"}`, "null") + chunk(`{"content":""}`, `"stop"`) + "data: [DONE]\n\n",
			wantText: "mine", wantFinish: "stop",
		},
		{
			name:     "finish_reason then EOF without usage or [DONE] is a success",
			body:     chunk(`{"content":"a"}`, "null") + chunk(`{"content":""}`, `"stop"`),
			wantText: "a", wantFinish: "stop",
		},
		{
			name:     "[DONE] without finish_reason is truncated",
			body:     chunk(`{"content":"a"}`, "null") + "data: [DONE]\n\n",
			wantText: "a", wantKind: llm.KindTruncated, wantStatus: 200, wantCause: "with [DONE] but without a finish_reason",
		},
		{
			name:     "llama.cpp error line before [DONE]",
			body:     chunk(`{"content":"a"}`, "null") + `error: {"code":500,"message":"context shift is disabled","type":"server_error"}` + "\n\ndata: [DONE]\n\n",
			wantText: "a", wantKind: llm.KindUpstream, wantStatus: 200, wantCause: "context shift is disabled",
		},
		{
			name:     "empty 200 body is truncated",
			body:     "",
			wantKind: llm.KindTruncated, wantStatus: 200,
		},
		{
			name:     "last event without its blank line is dropped",
			body:     chunk(`{"content":"a"}`, "null") + strings.TrimSuffix(chunk(`{"content":"b"}`, `"stop"`), "\n\n"),
			wantText: "a", wantKind: llm.KindTruncated, wantStatus: 200,
		},
		{
			name:        "200 application/json to a stream request",
			contentType: "application/json",
			body:        `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`,
			wantKind:    llm.KindUpstream, wantStatus: 200,
		},
		{
			name:        "200 application/json error body",
			contentType: "application/json",
			body:        `{"error":{"message":"worker failed","type":"worker_error","code":null}}`,
			wantKind:    llm.KindUpstream, wantStatus: 200,
		},
		{
			name:        "unlabelled stream is still read",
			contentType: "text/plain",
			body:        transcript,
			wantText:    "Hello!", wantFinish: "stop", wantUsage: &llm.Usage{PromptTokens: 36, CompletionTokens: 3},
		},
		{
			name:     "JSON that is not a chunk",
			body:     chunk(`{"content":"a"}`, "null") + "data: [1,2]\n\n",
			wantText: "a", wantKind: llm.KindMalformed, wantStatus: 200,
		},
		{
			name:     "openai-go treats a null error field as an error event",
			body:     `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"error":null}` + "\n\n",
			wantKind: llm.KindUpstream, wantStatus: 200,
		},
		{
			name:        "HTTP 500 plain text",
			contentType: "text/plain",
			status:      500,
			body:        "Internal Server Error",
			wantKind:    llm.KindUpstream, wantStatus: 500,
		},
		{
			name:        "HTTP 404 FastAPI detail",
			contentType: "application/json",
			status:      404,
			body:        `{"detail":"Not Found"}`,
			wantKind:    llm.KindUpstream, wantStatus: 404,
		},
	}
	client := newClient(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ct := tt.contentType
				if ct == "" {
					ct = "text/event-stream; charset=utf-8"
				}
				w.Header().Set("Content-Type", ct)
				if tt.status != 0 {
					w.WriteHeader(tt.status)
				}
				_, _ = w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)

			text, res, err := collect(t.Context(), client, request(srv.URL+"/v1"))
			if got, want := text, tt.wantText; got != want {
				t.Errorf("text = %q, want %q", got, want)
			}
			if got, want := res.FinishReason, tt.wantFinish; got != want {
				t.Errorf("FinishReason = %q, want %q", got, want)
			}
			if (res.Usage == nil) != (tt.wantUsage == nil) || (res.Usage != nil && *res.Usage != *tt.wantUsage) {
				t.Errorf("Usage = %+v, want %+v", res.Usage, tt.wantUsage)
			}
			if tt.wantKind == "" {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			e := asError(t, err)
			if got, want := e.Kind, tt.wantKind; got != want {
				t.Errorf("Kind = %q, want %q (%v)", got, want, err)
			}
			if got, want := e.Status, tt.wantStatus; got != want {
				t.Errorf("Status = %d, want %d", got, want)
			}
			if !strings.Contains(err.Error(), tt.wantCause) {
				t.Errorf("error %q, want it to contain %q", err, tt.wantCause)
			}
		})
	}
}

// TestStreamLineOverOpenAIGoCap: openai-go's SSE scanner stops at 32 MiB per
// line; beyond that the stream fails cleanly as malformed.
func TestStreamLineOverOpenAIGoCap(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 33 MiB")
	}
	t.Parallel()
	huge := strings.Repeat("x", 33<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		_, _ = w.Write([]byte(chunk(`{"content":"a"}`, "null") + chunk(`{"content":"`+huge+`"}`, "null")))
	}))
	t.Cleanup(srv.Close)
	client := newClient(t)

	text, _, err := collect(t.Context(), client, request(srv.URL+"/v1"))
	e := asError(t, err)
	if got, want := e.Kind, llm.KindMalformed; got != want {
		t.Errorf("Kind = %q, want %q (%v)", got, want, err)
	}
	if got, want := text, "a"; got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
	if got, want := e.BeforeFirstToken, false; got != want {
		t.Errorf("BeforeFirstToken = %v, want %v", got, want)
	}
}

func TestErrorFormatting(t *testing.T) {
	t.Parallel()
	cause := errors.New("boom")
	tests := []struct {
		err  *llm.Error
		want string
	}{
		{&llm.Error{Kind: llm.KindUpstream, Status: 503, Message: "The model server is unavailable (HTTP 503).", Err: cause},
			"llm upstream (HTTP 503): The model server is unavailable (HTTP 503): boom"},
		{&llm.Error{Kind: llm.KindConnection, Message: "Could not reach the model server (connection refused)."},
			"llm connection: Could not reach the model server (connection refused)"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	if got := (&llm.Error{Err: cause}); !errors.Is(got, cause) {
		t.Errorf("errors.Is(%v, cause) = false, want true", got)
	}
}

// TestStreamSlowConsumer: a caller that takes longer than IdleTimeout to
// handle each delta (a slow browser) does not make the upstream look idle.
func TestStreamSlowConsumer(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	fake := llmtest.New(t)
	fake.Enqueue(llmtest.Script{Tokens: []string{"a", "b", "c"}})
	req := request(fake.BaseURL())
	req.IdleTimeout = 50 * time.Millisecond

	var b strings.Builder
	res, err := client.Stream(t.Context(), req, func(text string) {
		time.Sleep(150 * time.Millisecond) // the slow consumer under test
		b.WriteString(text)
	})
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if got, want := b.String(), "abc"; got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
	if got, want := res.FinishReason, "stop"; got != want {
		t.Errorf("FinishReason = %q, want %q", got, want)
	}
}
