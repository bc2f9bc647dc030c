package vllmwire

import (
	"encoding/json"
	"testing"
)

func TestErrorEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		e    APIError
		want string
	}{
		{
			name: "reference section 2",
			e:    APIError{Message: "Internal server error", Type: "InternalServerError", Code: 500},
			want: `data: {"error": {"message": "Internal server error", "type": "InternalServerError", "param": null, "code": 500}}` + "\n\n",
		},
		{
			name: "ensure_ascii escapes, param set",
			e:    APIError{Message: "é \"q\" \\ \n\t\x01 🙂 \u2028 / <", Type: "BadRequestError", Param: "input_tokens", Code: 400},
			want: `data: {"error": {"message": "\u00e9 \"q\" \\ \n\t\u0001 \ud83d\ude42 \u2028 / <", "type": "BadRequestError", "param": "input_tokens", "code": 400}}` + "\n\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(ErrorEvent(tt.e))
			if got != tt.want {
				t.Errorf("ErrorEvent =\n%s\nwant\n%s", got, tt.want)
			}
			// And it is JSON that decodes back to the message.
			var v struct {
				Error struct{ Message string } `json:"error"`
			}
			if err := json.Unmarshal([]byte(got[len("data: "):]), &v); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			if got, want := v.Error.Message, tt.e.Message; got != want {
				t.Errorf("decoded message = %q, want %q", got, want)
			}
		})
	}
}

func TestErrorBody(t *testing.T) {
	t.Parallel()
	e := APIError{Message: "The model `x` does not exist.", Type: "NotFoundError", Param: "model", Code: 404}
	tests := []struct {
		shape, want, wantType string
	}{
		{ShapeNested, `{"error":{"message":"The model ` + "`x`" + ` does not exist.","type":"NotFoundError","param":"model","code":404}}`, "application/json"},
		{"", `{"error":{"message":"The model ` + "`x`" + ` does not exist.","type":"NotFoundError","param":"model","code":404}}`, "application/json"},
		{ShapeFlat, `{"object":"error","message":"The model ` + "`x`" + ` does not exist.","type":"NotFoundError","param":"model","code":404}`, "application/json"},
		{ShapeString, `{"error":"The model ` + "`x`" + ` does not exist."}`, "application/json"},
	}
	for _, tt := range tests {
		body, ct := ErrorBody(tt.shape, e)
		if got := string(body); got != tt.want {
			t.Errorf("ErrorBody(%q) = %s, want %s", tt.shape, got, tt.want)
		}
		if ct != tt.wantType {
			t.Errorf("ErrorBody(%q) content type = %q, want %q", tt.shape, ct, tt.wantType)
		}
	}
}

func TestChunksKeepRawUTF8AndMarkup(t *testing.T) {
	t.Parallel()
	c := Completion{ID: "chatcmpl-1", Created: 1, Model: "m"}
	got := string(c.ContentEvent("日本 <b>&"))
	want := `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"日本 <b>&"},"logprobs":null,"finish_reason":null,"token_ids":null}]}` + "\n\n"
	if got != want {
		t.Errorf("ContentEvent =\n%s\nwant\n%s", got, want)
	}
}
