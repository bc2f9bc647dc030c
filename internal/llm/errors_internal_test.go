package llm

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseAPIError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		want   apiError
		wantOK bool
	}{
		{"nested", `{"error":{"message":"m","type":"BadRequestError","param":"input_tokens","code":400}}`, apiError{"m", "BadRequestError", "input_tokens", 400}, true},
		{"nested, param null", `{"error":{"message":"m","type":"t","param":null,"code":400}}`, apiError{"m", "t", "", 400}, true},
		{"flat", `{"object":"error","message":"m","type":"t","param":null,"code":500}`, apiError{"m", "t", "", 500}, true},
		{"string", `{"error":"Unauthorized"}`, apiError{Message: "Unauthorized"}, true},
		{"old in-stream, flat inside error", `{"error":{"object":"error","message":"m","type":"t","param":null,"code":400}}`, apiError{"m", "t", "", 400}, true},
		{"json.dumps style", `{"error": {"message": "Internal server error", "type": "InternalServerError", "param": null, "code": 500}}`, apiError{"Internal server error", "InternalServerError", "", 500}, true},
		{"FastAPI detail", `{"detail":"Not Found"}`, apiError{Message: "Not Found"}, true},
		{"validation list as message", `{"error":{"message":[{"loc":["body"]}],"type":"t"}}`, apiError{Message: `[{"loc":["body"]}]`, Type: "t"}, true},
		{"Runpod worker relay", `{"error":{"message":"vLLM returned HTTP 400: {...}","type":"worker_error","code":null}}`, apiError{Message: "vLLM returned HTTP 400: {...}", Type: "worker_error"}, true},
		{"llama.cpp error line", `{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"invalid_request_error"}`,
			apiError{Message: "the request exceeds the available context size, try increasing it", Type: "invalid_request_error", Code: 400}, true},
		{"code as a string", `{"error":{"message":"m","code":"429"}}`, apiError{Message: "m", Code: 429}, true},
		{"other object", `{"id":"x"}`, apiError{}, true},
		{"HTML", `<html>502</html>`, apiError{}, false},
		{"empty", ``, apiError{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseAPIError([]byte(tt.body))
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("parseAPIError = %+v, %v, want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestIsContextLength(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		e      apiError
		want   bool
	}{
		{400, apiError{Message: "You passed 9000 input tokens and requested 512 output tokens. However, the model's context length is only 8192 tokens, resulting in a maximum input length of 7680 tokens.", Param: "input_tokens"}, true},
		{400, apiError{Message: "You passed 90000 input characters…", Param: "input_text"}, true},
		{400, apiError{Message: "This model's maximum context length is 8192 tokens. However, your request has 9000 input tokens."}, true},
		{400, apiError{Message: "'max_tokens' or 'max_completion_tokens' is too large: 9000. This model's maximum context length is 8192 tokens and your request has 36 input tokens (9000 > 8192 - 36).", Param: "max_tokens"}, true},
		{400, apiError{Message: "max_tokens=9000 cannot be greater than max_model_len=8192", Param: "max_completion_tokens"}, true},
		{400, apiError{Message: "max_tokens must be at least 1, got 0.", Param: "max_tokens"}, false},
		{400, apiError{Message: "the request exceeds the available context size, try increasing it", Type: "invalid_request_error"}, true},
		{400, apiError{Message: "request (5012 tokens) exceeds the available context size (2048 tokens), try increasing it", Type: "exceed_context_size_error"}, true},
		{500, apiError{Message: "context shift is disabled", Type: "server_error"}, false},
		{400, apiError{Message: "temperature must be non-negative", Param: "temperature"}, false},
		{500, apiError{Message: "maximum context length exceeded", Param: "input_tokens"}, false},
	}
	for _, tt := range tests {
		if got := isContextLength(tt.status, tt.e); got != tt.want {
			t.Errorf("isContextLength(%d, %+v) = %v, want %v", tt.status, tt.e, got, tt.want)
		}
	}
}

func TestCleanText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"  two\n\nlines\tand  spaces ", "two lines and spaces"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{"ctrl\x00\x1b[31m", "ctrl [31m"},
		{"<html><body>Bad gateway</body></html>", ""},
		{strings.Repeat("é", 400), strings.Repeat("é", 300) + "…"},
	}
	for _, tt := range tests {
		if got := cleanText(tt.in, maxMessageChars); got != tt.want {
			t.Errorf("cleanText(%.40q) = %.40q, want %.40q", tt.in, got, tt.want)
		}
	}
}

// FuzzStatusError: whatever a server answers, the user-facing message is
// short, valid UTF-8, single-line and free of markup.
func FuzzStatusError(f *testing.F) {
	f.Add(500, "application/json", []byte(`{"error":{"message":"m","type":"t","param":null,"code":500}}`))
	f.Add(401, "application/json", []byte(`{"error":"Unauthorized"}`))
	f.Add(400, "application/json", []byte(`{"object":"error","message":"This model's maximum context length is 4096 tokens.","param":null}`))
	f.Add(502, "text/html", []byte("<html><body>bad gateway</body></html>"))
	f.Add(200, "", []byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte) {
		e := statusError(status, contentType, body, nil)
		if !utf8.ValidString(e.Message) {
			t.Fatalf("Message not UTF-8: %q", e.Message)
		}
		if n := utf8.RuneCountInString(e.Message); n > maxMessageChars+120 {
			t.Fatalf("Message has %d characters", n)
		}
		if strings.ContainsAny(e.Message, "\n\r\x00") {
			t.Fatalf("Message has control characters: %q", e.Message)
		}
		if strings.Contains(strings.ToLower(e.Message), "<html") {
			t.Fatalf("Message has HTML: %q", e.Message)
		}
		if e.Kind == "" || e.Status != status {
			t.Fatalf("Kind %q Status %d", e.Kind, e.Status)
		}
	})
}
