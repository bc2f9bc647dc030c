package demo_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"luna/internal/llm"
	"luna/internal/llm/demo"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// serve mounts the demo handler under /demo/v1 as Luna does and returns the
// base URL.
func serve(t *testing.T, opts demo.Options) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/demo/v1/", http.StripPrefix("/demo/v1", demo.NewHandler(opts)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/demo/v1"
}

func newClient(t *testing.T) *llm.Client {
	t.Helper()
	c := llm.NewClient(nil)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestStreamThroughClient(t *testing.T) {
	t.Parallel()
	baseURL := serve(t, demo.Options{TokensPerSecond: 5000})
	client := newClient(t)
	long := strings.Repeat("word ", 30)

	tests := []struct {
		name       string
		msgs       []llm.Message
		maxTokens  int
		wantFinish string
		wantChunks int // 0: the whole reply
		wantIn     []string
	}{
		{
			name:       "reply",
			msgs:       []llm.Message{{Role: "system", Content: "You are helpful."}, {Role: "user", Content: "Hello there"}},
			wantFinish: "stop",
			wantIn:     []string{"Luna's demo model", "no GPU", "You said: “Hello there”", "--models-file", "\n- ", "`luna serve"},
		},
		{
			name:       "long message is quoted in part",
			msgs:       []llm.Message{{Role: "user", Content: long}},
			wantFinish: "stop",
			wantIn:     []string{"You said: “" + strings.TrimSpace(long[:80]) + "…”"},
		},
		{
			name:       "max tokens",
			msgs:       []llm.Message{{Role: "user", Content: "Hello there"}},
			maxTokens:  5,
			wantFinish: "length",
			wantChunks: 5,
			wantIn:     []string{"This is Luna's demo "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b strings.Builder
			res, err := client.Stream(t.Context(), llm.Request{
				BaseURL: baseURL, Model: demo.ModelName, Messages: tt.msgs, MaxTokens: tt.maxTokens,
			}, func(s string) { b.WriteString(s) })
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			text := b.String()
			if got, want := res.FinishReason, tt.wantFinish; got != want {
				t.Errorf("FinishReason = %q, want %q", got, want)
			}
			wantChunks := tt.wantChunks
			if wantChunks == 0 {
				if got, want := text, demo.Reply(tt.msgs); got != want {
					t.Errorf("text = %q, want Reply = %q", got, want)
				}
				wantChunks = len(strings.SplitAfter(text, " "))
			}
			if got, want := res.ContentChunks, wantChunks; got != want {
				t.Errorf("ContentChunks = %d, want %d", got, want)
			}
			if res.ContentChunks <= 5 && tt.wantChunks == 0 {
				t.Errorf("ContentChunks = %d, want > 5", res.ContentChunks)
			}
			if res.Usage == nil {
				t.Fatalf("Usage = nil, want usage")
			}
			if got, want := *res.Usage, (llm.Usage{PromptTokens: llm.EstimatePromptTokens(tt.msgs), CompletionTokens: wantChunks}); got != want {
				t.Errorf("Usage = %+v, want %+v", got, want)
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(text, s) {
					t.Errorf("text %q does not contain %q", text, s)
				}
			}
		})
	}
}

func TestTitle(t *testing.T) {
	t.Parallel()
	baseURL := serve(t, demo.Options{TokensPerSecond: 5000})
	client := newClient(t)
	tests := []struct {
		name string
		msgs []llm.Message
		want string
	}{
		{
			name: "from the first user message",
			msgs: []llm.Message{
				{Role: "user", Content: "How do I bake sourdough bread at home, step by step?"},
				{Role: "assistant", Content: "This is Luna's demo model…"},
				{Role: "user", Content: "Write a short title (at most 6 words) for this conversation. Answer with the title only."},
			},
			want: "How do I bake sourdough",
		},
		{
			name: "Luna's own title prompt",
			msgs: []llm.Message{{Role: "user", Content: "Write a short title (at most 6 words) for this conversation. " +
				"Reply with the title only, no quotes.\n\nUser: what's a good \"first\" recipe: pancakes?\n\nAssistant: This is Luna's demo model: no GPU. You said: “x”."}},
			want: "What's a good first recipe",
		},
		{
			name: "from the quoted text of a lone request",
			msgs: []llm.Message{{Role: "user", Content: "Write a short title for a conversation that starts with: “why is the sky blue?”"}},
			want: "Why is the sky blue",
		},
		{
			name: "after a colon",
			msgs: []llm.Message{{Role: "system", Content: "You write titles."}, {Role: "user", Content: "Write a short title for this message: été à Paris — plans"}},
			want: "Été à Paris plans",
		},
		{
			name: "nothing to go on",
			msgs: []llm.Message{{Role: "user", Content: "Write a short title"}},
			want: "Demo conversation",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b strings.Builder
			res, err := client.Stream(t.Context(), llm.Request{BaseURL: baseURL, Messages: tt.msgs, MaxTokens: 20}, func(s string) { b.WriteString(s) })
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			if got, want := b.String(), tt.want; got != want {
				t.Errorf("title = %q, want %q", got, want)
			}
			if got := len(strings.Fields(b.String())); got > 6 {
				t.Errorf("title has %d words, want <= 6", got)
			}
			if got, want := res.FinishReason, "stop"; got != want {
				t.Errorf("FinishReason = %q, want %q", got, want)
			}
		})
	}
}

func TestReplyIsDeterministic(t *testing.T) {
	t.Parallel()
	a := []llm.Message{{Role: "user", Content: "one"}}
	b := []llm.Message{{Role: "user", Content: "two"}}
	if got, want := demo.Reply(a), demo.Reply(a); got != want {
		t.Errorf("Reply differs between calls:\n%s\n%s", got, want)
	}
	seen := map[string]bool{}
	for _, s := range []string{"one", "two", "three", "four", "five"} {
		seen[demo.Reply([]llm.Message{{Role: "user", Content: s}})[60:]] = true
	}
	if len(seen) < 2 {
		t.Errorf("five prompts gave %d distinct fillers, want variety", len(seen))
	}
	if demo.Reply(a) == demo.Reply(b) {
		t.Errorf("different prompts gave the same reply")
	}
	if n := len(strings.Fields(demo.Reply(a))); n < 36 || n > 120 {
		t.Errorf("reply has %d words, want a few dozen", n)
	}
}

func TestContextTooLong(t *testing.T) {
	t.Parallel()
	baseURL := serve(t, demo.Options{})
	client := newClient(t)
	msgs := []llm.Message{{Role: "user", Content: strings.Repeat("x", 3*demo.MaxModelLen)}}
	_, err := client.Stream(t.Context(), llm.Request{BaseURL: baseURL, Messages: msgs}, nil)
	var e *llm.Error
	if !errors.As(err, &e) || e.Kind != llm.KindContextLength {
		t.Fatalf("err = %v, want a context_length error", err)
	}
}

// recordingHandler is a slog handler that passes each message on a channel.
type recordingHandler struct{ msgs chan string }

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.msgs <- r.Message:
	default:
	}
	return nil
}
func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordingHandler) WithGroup(string) slog.Handler      { return h }

func TestStopsWhenClientLeaves(t *testing.T) {
	t.Parallel()
	logs := recordingHandler{msgs: make(chan string, 10)}
	baseURL := serve(t, demo.Options{TokensPerSecond: 2, Logger: slog.New(logs)})
	client := newClient(t)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	res, err := client.Stream(ctx, llm.Request{BaseURL: baseURL, Messages: []llm.Message{{Role: "user", Content: "hi"}}}, func(string) { cancel() })
	if err == nil || res.ContentChunks != 1 {
		t.Fatalf("Stream = %+v, %v; want cancelled after one chunk", res, err)
	}
	select {
	case got := <-logs.msgs:
		if want := "demo stream stopped"; got != want {
			t.Errorf("log = %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not notice the client leaving")
	}
}

func TestNonStream(t *testing.T) {
	t.Parallel()
	baseURL := serve(t, demo.Options{})
	msgs := []llm.Message{{Role: "user", Content: "Hello"}}
	res, err := http.Post(baseURL+"/chat/completions", "application/json",
		strings.NewReader(`{"model":"luna-demo","messages":[{"role":"user","content":"Hello"}],"max_tokens":1000,"temperature":0.7}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got struct {
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Object != "chat.completion" || got.Model != demo.ModelName || len(got.Choices) != 1 {
		t.Fatalf("response = %+v", got)
	}
	if got, want := got.Choices[0].Message.Content, demo.Reply(msgs); got != want {
		t.Errorf("content = %q, want %q", got, want)
	}
	if got, want := got.Choices[0].FinishReason, "stop"; got != want {
		t.Errorf("finish_reason = %q, want %q", got, want)
	}
	if got, want := got.Usage.PromptTokens, llm.EstimatePromptTokens(msgs); got != want {
		t.Errorf("prompt_tokens = %d, want %d", got, want)
	}
	if got.Usage.TotalTokens != got.Usage.PromptTokens+got.Usage.CompletionTokens || got.Usage.CompletionTokens < 6 {
		t.Errorf("usage = %+v", got.Usage)
	}
}

func TestRawStreamFraming(t *testing.T) {
	t.Parallel()
	baseURL := serve(t, demo.Options{TokensPerSecond: 5000})
	tests := []struct {
		name      string
		body      string
		wantUsage bool
	}{
		{"include_usage", `{"messages":[{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":3}`, true},
		{"no stream_options", `{"messages":[{"role":"user","content":"Hi"}],"stream":true,"max_tokens":3}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := http.Post(baseURL+"/chat/completions", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := res.Header.Get("Content-Type"), "text/event-stream; charset=utf-8"; got != want {
				t.Errorf("Content-Type = %q, want %q", got, want)
			}
			events := strings.Split(strings.TrimSuffix(string(b), "\n\n"), "\n\n")
			wantEvents := 1 + 3 + 1 + 1 // role, 3 words, finish, [DONE]
			if tt.wantUsage {
				wantEvents++
			}
			if got, want := len(events), wantEvents; got != want {
				t.Fatalf("events = %d, want %d:\n%s", got, want, b)
			}
			if !strings.Contains(events[0], `"delta":{"role":"assistant","content":""}`) {
				t.Errorf("first event = %s, want the role chunk", events[0])
			}
			if !strings.Contains(events[1], `"delta":{"content":"This "}`) {
				t.Errorf("second event = %s, want one word and a space", events[1])
			}
			if !strings.Contains(events[4], `"finish_reason":"length","stop_reason":null`) {
				t.Errorf("finish event = %s", events[4])
			}
			if tt.wantUsage && !strings.Contains(events[5], `"choices":[],"usage":{"prompt_tokens":40,"total_tokens":43,"completion_tokens":3}`) {
				t.Errorf("usage event = %s", events[5])
			}
			if got, want := events[len(events)-1], "data: [DONE]"; got != want {
				t.Errorf("last event = %q, want %q", got, want)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	baseURL := serve(t, demo.Options{})
	tests := []struct {
		name, body string
		wantParam  string
	}{
		{"not JSON", `{`, ""},
		{"no messages", `{"messages":[]}`, "messages"},
		{"stream_options without stream", `{"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}`, "stream_options"},
		{"max_tokens 0", `{"messages":[{"role":"user","content":"x"}],"max_tokens":0}`, "max_tokens"},
		{"bad role", `{"messages":[{"role":"wizard","content":"x"}]}`, "messages.0.role"},
		{"bad content", `{"messages":[{"role":"user","content":42}]}`, "messages.0.content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := http.Post(baseURL+"/chat/completions", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if got, want := res.StatusCode, http.StatusBadRequest; got != want {
				t.Errorf("status = %d, want %d", got, want)
			}
			var body struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    int     `json:"code"`
				} `json:"error"`
			}
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			param := ""
			if body.Error.Param != nil {
				param = *body.Error.Param
			}
			if got, want := param, tt.wantParam; got != want {
				t.Errorf("param = %q, want %q", got, want)
			}
			if body.Error.Message == "" || body.Error.Code != 400 || body.Error.Type != "BadRequestError" {
				t.Errorf("error = %+v", body.Error)
			}
		})
	}
}

func TestModels(t *testing.T) {
	t.Parallel()
	baseURL := serve(t, demo.Options{})
	res, err := http.Get(baseURL + "/models")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var list struct {
		Data []struct {
			ID          string `json:"id"`
			MaxModelLen int    `json:"max_model_len"`
		} `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list.Data) != 1 || list.Data[0].ID != demo.ModelName || list.Data[0].MaxModelLen != demo.MaxModelLen {
		t.Errorf("models = %+v", list)
	}
}

// TestTokenizeAgreesWithUsage: the demo server's POST /tokenize counts a
// chat as its usage.prompt_tokens will, as Luna's client reads it.
func TestTokenizeAgreesWithUsage(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(demo.NewServer(demo.Options{TokensPerSecond: 5000}))
	t.Cleanup(srv.Close)
	client := newClient(t)
	req := llm.Request{BaseURL: srv.URL + "/v1", Model: demo.ModelName, MaxTokens: 4,
		Messages: []llm.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "2+2=? 🙂 日本語"}}}
	count := client.CountPromptTokens(t.Context(), req)
	if count.Source != llm.CountVLLM {
		t.Fatalf("count = %+v, want one from the demo's tokenizer", count)
	}
	res, err := client.Stream(t.Context(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Usage == nil || res.Usage.PromptTokens != count.Tokens {
		t.Fatalf("usage = %+v, want prompt_tokens %d as /tokenize counted", res.Usage, count.Tokens)
	}
}

// Asked to continue a reply it began (vLLM's continue_final_message), the
// demo model streams the rest of that reply, not the whole reply again.
func TestContinueFinalMessage(t *testing.T) {
	t.Parallel()
	baseURL := serve(t, demo.Options{TokensPerSecond: 5000})
	client := newClient(t)
	question := []llm.Message{{Role: "user", Content: "Hello there"}}
	full := demo.Reply(question)
	begun := strings.Join(strings.SplitAfter(full, " ")[:4], "")

	tests := []struct {
		name   string
		sofar  string
		wanted string
	}{
		{name: "a beginning of the reply", sofar: begun, wanted: strings.TrimPrefix(full, begun)},
		{name: "other text", sofar: "Something else entirely", wanted: "\n\n" + full},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b strings.Builder
			msgs := append(append([]llm.Message{}, question...), llm.Message{Role: "assistant", Content: tt.sofar})
			_, err := client.Stream(t.Context(), llm.Request{
				BaseURL: baseURL, Model: demo.ModelName, Messages: msgs, ContinueFinalMessage: true,
			}, func(s string) { b.WriteString(s) })
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			if got := b.String(); got != tt.wanted {
				t.Errorf("continued with %q, want %q", got, tt.wanted)
			}
		})
	}
}
