package llmtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"luna/internal/llm/llmtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// post sends a chat-completions body and returns the response and its body.
func post(t *testing.T, fake *llmtest.Fake, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, fake.BaseURL()+"/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer k")
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatal(err)
	}
	return res, string(b)
}

const streamBody = `{"model":"meta-llama/Llama-3.1-8B-Instruct","messages":[{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":512}`

// referenceTranscript is reference section 1's transcript with the fake's id
// and two completion tokens.
const referenceTranscript = `data: {"id":"chatcmpl-00000000000000000000000000000001","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null}

data: {"id":"chatcmpl-00000000000000000000000000000001","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null,"token_ids":null}]}

data: {"id":"chatcmpl-00000000000000000000000000000001","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":"!"},"logprobs":null,"finish_reason":null,"token_ids":null}]}

data: {"id":"chatcmpl-00000000000000000000000000000001","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}]}

data: {"id":"chatcmpl-00000000000000000000000000000001","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[],"usage":{"prompt_tokens":36,"total_tokens":38,"completion_tokens":2}}

data: [DONE]

`

func TestFakeBytes(t *testing.T) {
	t.Parallel()
	roleAndHello := `data: {"id":"chatcmpl-00000000000000000000000000000001","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null}` + "\n\n" +
		`data: {"id":"chatcmpl-00000000000000000000000000000001","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null,"token_ids":null}]}` + "\n\n"
	errorEvent := `data: {"error": {"message": "Internal server error", "type": "InternalServerError", "param": null, "code": 500}}` + "\n\ndata: [DONE]\n\n"

	tests := []struct {
		name     string
		script   llmtest.Script
		body     string
		wantCode int
		wantType string
		want     string
	}{
		{
			name: "normal stream is the reference transcript", script: llmtest.Script{Tokens: []string{"Hello", "!"}, PromptTokens: 36},
			body: streamBody, wantCode: 200, wantType: "text/event-stream; charset=utf-8", want: referenceTranscript,
		},
		{
			name: "split writes carry the same bytes", script: llmtest.Script{Tokens: []string{"Hello", "!"}, PromptTokens: 36, SplitWrites: true},
			body: streamBody, wantCode: 200, wantType: "text/event-stream; charset=utf-8", want: referenceTranscript,
		},
		{
			name: "error event first", script: llmtest.Script{ErrorEventAt: llmtest.ErrorEventFirst},
			body: streamBody, wantCode: 200, wantType: "text/event-stream; charset=utf-8", want: errorEvent,
		},
		{
			name: "error event after one chunk", script: llmtest.Script{Tokens: []string{"Hello", "!"}, ErrorEventAt: 1},
			body: streamBody, wantCode: 200, wantType: "text/event-stream; charset=utf-8", want: roleAndHello + errorEvent,
		},
		{
			name: "cut after one chunk", script: llmtest.Script{Tokens: []string{"Hello", "!"}, CutAfter: 1},
			body: streamBody, wantCode: 200, wantType: "text/event-stream; charset=utf-8", want: roleAndHello,
		},
		{
			name: "cut abruptly after one chunk", script: llmtest.Script{Tokens: []string{"Hello", "!"}, CutAfter: 1, CutAbruptly: true},
			body: streamBody, wantCode: 200, wantType: "text/event-stream; charset=utf-8", want: roleAndHello,
		},
		{
			name: "garbage after one chunk", script: llmtest.Script{Tokens: []string{"Hello"}, GarbageAt: 1, OmitUsage: true},
			body: streamBody, wantCode: 200, wantType: "text/event-stream; charset=utf-8",
			want: roleAndHello + "data: {\"id\":\"chatcmpl-garbage\",\"choices\":[{not json at all\n\n" +
				`data: {"id":"chatcmpl-00000000000000000000000000000001","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}]}` + "\n\ndata: [DONE]\n\n",
		},
		{
			name: "500 nested", script: llmtest.Script{Status: 500},
			body: streamBody, wantCode: 500, wantType: "application/json",
			want: `{"error":{"message":"Internal Server Error","type":"InternalServerError","param":null,"code":500}}`,
		},
		{
			name: "500 flat", script: llmtest.Script{Status: 500, ErrorShape: "flat", ErrorMessage: "boom"},
			body: streamBody, wantCode: 500, wantType: "application/json",
			want: `{"object":"error","message":"boom","type":"InternalServerError","param":null,"code":500}`,
		},
		{
			name: "401 string", script: llmtest.Script{Status: 401, ErrorShape: "string"},
			body: streamBody, wantCode: 401, wantType: "application/json", want: `{"error":"Unauthorized"}`,
		},
		{
			name: "context too long", script: llmtest.Script{ContextTooLongAboveChars: 1},
			body: streamBody, wantCode: 400, wantType: "application/json",
			want: `{"error":{"message":"This model's maximum context length is 1 tokens. However, your request has 36 input tokens. Please reduce the length of the input messages.","type":"BadRequestError","param":"input_tokens","code":400}}`,
		},
		{
			name: "context within the limit streams", script: llmtest.Script{ContextTooLongAboveChars: 2, Tokens: []string{"Hello", "!"}, PromptTokens: 36},
			body: streamBody, wantCode: 200, wantType: "text/event-stream; charset=utf-8", want: referenceTranscript,
		},
		{
			name: "stream_options without stream", script: llmtest.Script{},
			body: `{"messages":[{"role":"user","content":"Hi"}],"stream_options":{"include_usage":true}}`, wantCode: 400, wantType: "application/json",
			want: "{\"error\":{\"message\":\"Stream options can only be defined when `stream=True`.\",\"type\":\"BadRequestError\",\"param\":\"stream_options\",\"code\":400}}",
		},
		{
			name: "no stream_options: no usage chunk", script: llmtest.Script{Tokens: []string{"Hello"}},
			body:     `{"model":"meta-llama/Llama-3.1-8B-Instruct","messages":[{"role":"user","content":"Hi"}],"stream":true}`,
			wantCode: 200, wantType: "text/event-stream; charset=utf-8",
			want: roleAndHello + `data: {"id":"chatcmpl-00000000000000000000000000000001","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}]}` + "\n\ndata: [DONE]\n\n",
		},
		{
			name: "non-stream", script: llmtest.Script{Tokens: []string{"Hello", "!"}, PromptTokens: 36},
			body: `{"model":"m","messages":[{"role":"user","content":"Hi"}]}`, wantCode: 200, wantType: "application/json",
			want: `{"id":"chatcmpl-00000000000000000000000000000001","object":"chat.completion","created":1755000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"logprobs":null,"finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":36,"total_tokens":38,"completion_tokens":2}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := llmtest.New(t)
			fake.Enqueue(tt.script)
			res, got := post(t, fake, tt.body)
			if got, want := res.StatusCode, tt.wantCode; got != want {
				t.Errorf("status = %d, want %d", got, want)
			}
			if got, want := res.Header.Get("Content-Type"), tt.wantType; got != want {
				t.Errorf("Content-Type = %q, want %q", got, want)
			}
			if got != tt.want {
				t.Errorf("body =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestFakeKeepAliveAndHTML(t *testing.T) {
	t.Parallel()
	fake := llmtest.New(t)
	fake.Enqueue(llmtest.Script{Tokens: []string{"a", "b"}, KeepAliveComments: true})
	fake.Enqueue(llmtest.Script{Status: 502, ErrorShape: "html"})

	_, body := post(t, fake, streamBody)
	if got, want := strings.Count(body, ": keep-alive\n\n"), 3; got != want {
		t.Errorf("keep-alive comments = %d, want %d in\n%s", got, want, body)
	}
	res, body := post(t, fake, streamBody)
	if got, want := res.Header.Get("Content-Type"), "text/html"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	if !strings.Contains(body, "<h1>502 Bad Gateway</h1>") {
		t.Errorf("body = %q, want an nginx page", body)
	}
}

func TestFakeSplitWritesCutInsideCharacters(t *testing.T) {
	t.Parallel()
	fake := llmtest.New(t)
	fake.Enqueue(llmtest.Script{Tokens: []string{"héllo wörld 日本語 🙂"}, SplitWrites: true})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, fake.BaseURL()+"/chat/completions", strings.NewReader(streamBody))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	buf := make([]byte, 1<<16)
	var all []byte
	splitReads := 0
	for {
		n, err := res.Body.Read(buf)
		if n > 0 && !utf8.Valid(buf[:n]) {
			splitReads++
		}
		all = append(all, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if splitReads == 0 {
		t.Errorf("no read ended inside a character")
	}
	if !strings.Contains(string(all), `"content":"héllo wörld 日本語 🙂"`) {
		t.Errorf("body lost the text:\n%s", all)
	}
}

func TestFakeQueueAndRecording(t *testing.T) {
	t.Parallel()
	fake := llmtest.New(t)
	fake.Enqueue(llmtest.Script{Tokens: []string{"first"}})
	fake.Enqueue(llmtest.Script{Tokens: []string{"second"}})
	fake.SetDefault(llmtest.Script{Tokens: []string{"default"}})

	for _, want := range []string{"first", "second", "default", "default"} {
		_, body := post(t, fake, `{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"stream":true,"max_tokens":5,"max_completion_tokens":7,"stream_options":{}}`)
		if !strings.Contains(body, `"content":"`+want+`"`) {
			t.Errorf("body does not contain %q:\n%s", want, body)
		}
	}
	reqs := fake.Requests()
	if got, want := len(reqs), 4; got != want {
		t.Fatalf("requests = %d, want %d", got, want)
	}
	r := reqs[0]
	if got, want := r.Authorization, "Bearer k"; got != want {
		t.Errorf("Authorization = %q, want %q", got, want)
	}
	if got, want := r.MaxTokens, 7; got != want {
		t.Errorf("MaxTokens = %d, want %d (max_completion_tokens wins)", got, want)
	}
	if r.StreamOptions == nil || !r.StreamOptions.IncludeUsage {
		t.Errorf("StreamOptions = %+v, want include_usage defaulting to true", r.StreamOptions)
	}
	if got, want := len(r.Messages), 2; got != want {
		t.Fatalf("messages = %d, want %d", got, want)
	}
	if got, want := r.Messages[1], (llmtest.RecordedMessage{Role: "user", Content: "ab"}); got != want {
		t.Errorf("message = %+v, want %+v", got, want)
	}
	if got, want := fake.Aborted(), 0; got != want {
		t.Errorf("Aborted = %d, want %d", got, want)
	}
}

func TestFakeAborted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script llmtest.Script
	}{
		{"hang", llmtest.Script{Hang: true}},
		{"cold start", llmtest.Script{FirstTokenDelay: time.Minute}},
		{"between tokens", llmtest.Script{Tokens: []string{"a", "b"}, TokenDelay: time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := llmtest.New(t)
			fake.Enqueue(tt.script)
			ctx, cancel := context.WithCancel(t.Context())
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, fake.BaseURL()+"/chat/completions", strings.NewReader(streamBody))
			if err != nil {
				t.Fatal(err)
			}
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			cancel()
			res.Body.Close()

			waitCtx, waitCancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer waitCancel()
			if err := fake.WaitAborted(waitCtx, 1); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFakeModels(t *testing.T) {
	t.Parallel()
	fake := llmtest.New(t)
	res, err := http.Get(fake.BaseURL() + "/models")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var list struct {
		Object string
		Data   []struct {
			ID          string `json:"id"`
			MaxModelLen int    `json:"max_model_len"`
		}
	}
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list.Data) != 1 || list.Data[0].ID != llmtest.ModelName || list.Data[0].MaxModelLen != llmtest.MaxModelLen {
		t.Errorf("models = %+v", list)
	}
}
