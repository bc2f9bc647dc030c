// Package vllmwire writes the server side of vLLM's OpenAI-compatible chat
// completions protocol, byte for byte as described in
// /work/shared/reference/llm-protocol.md sections 1 and 2: the chunk JSON of a
// streamed reply (pydantic field order, compact, raw UTF-8), the SSE framing,
// the in-stream error event (Python json.dumps style) and the error bodies
// (nested, flat and string shapes).
//
// It is shared by Luna's built-in demo model endpoint and by the llmtest fake,
// so both speak exactly what a real vLLM speaks.
package vllmwire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// ContentType is the Content-Type vLLM answers a streaming request with.
const ContentType = "text/event-stream; charset=utf-8"

// Done is the event that terminates every stream, after a normal end and
// after an in-stream error.
const Done = "data: [DONE]\n\n"

// KeepAlive is the SSE comment newer vLLM builds send when a stream is idle
// (flag --sse-keep-alive-interval).
const KeepAlive = ": keep-alive\n\n"

// Completion identifies one streamed completion: every chunk of a stream
// repeats the same id, created and model.
type Completion struct {
	ID      string // "chatcmpl-…"
	Created int64  // Unix seconds
	Model   string // served model name
}

// RoleEvent is the first event of a stream: delta {"role":"assistant","content":""}.
func (c Completion) RoleEvent() []byte {
	empty := ""
	return event(chunk{
		ID: c.ID, Object: "chat.completion.chunk", Created: c.Created, Model: c.Model,
		Choices:        []choice{{Delta: delta{Role: "assistant", Content: &empty}}},
		PromptTokenIDs: null(),
	})
}

// ContentEvent is one content delta.
func (c Completion) ContentEvent(text string) []byte {
	return event(chunk{
		ID: c.ID, Object: "chat.completion.chunk", Created: c.Created, Model: c.Model,
		Choices: []choice{{Delta: delta{Content: &text}, TokenIDs: null()}},
	})
}

// FinishEvent is the chunk that carries the finish reason ("stop", "length",
// …), an empty content delta and a null stop_reason.
func (c Completion) FinishEvent(reason string) []byte {
	empty := ""
	return event(chunk{
		ID: c.ID, Object: "chat.completion.chunk", Created: c.Created, Model: c.Model,
		Choices: []choice{{Delta: delta{Content: &empty}, FinishReason: &reason, StopReason: null(), TokenIDs: null()}},
	})
}

// UsageEvent is the last chunk before [DONE] when include_usage is on:
// "choices":[] and the token counts.
func (c Completion) UsageEvent(promptTokens, completionTokens int) []byte {
	return event(chunk{
		ID: c.ID, Object: "chat.completion.chunk", Created: c.Created, Model: c.Model,
		Choices: []choice{},
		Usage:   &usage{PromptTokens: promptTokens, TotalTokens: promptTokens + completionTokens, CompletionTokens: completionTokens},
	})
}

// Response is the JSON body of a non-streaming chat.completion.
func (c Completion) Response(content, finishReason string, promptTokens, completionTokens int) []byte {
	type message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	type responseChoice struct {
		Index        int              `json:"index"`
		Message      message          `json:"message"`
		Logprobs     *json.RawMessage `json:"logprobs"`
		FinishReason string           `json:"finish_reason"`
		StopReason   *json.RawMessage `json:"stop_reason"`
	}
	type response struct {
		ID      string           `json:"id"`
		Object  string           `json:"object"`
		Created int64            `json:"created"`
		Model   string           `json:"model"`
		Choices []responseChoice `json:"choices"`
		Usage   usage            `json:"usage"`
	}
	return marshal(response{
		ID: c.ID, Object: "chat.completion", Created: c.Created, Model: c.Model,
		Choices: []responseChoice{{Message: message{Role: "assistant", Content: content}, FinishReason: finishReason}},
		Usage:   usage{PromptTokens: promptTokens, TotalTokens: promptTokens + completionTokens, CompletionTokens: completionTokens},
	})
}

// APIError is vLLM's ErrorResponse.
type APIError struct {
	Message string
	Type    string // e.g. "BadRequestError", "InternalServerError"
	Param   string // empty is sent as null
	Code    int    // equals the HTTP status
}

// ErrorEvent is an in-stream error event as vLLM writes it with json.dumps:
// `data: {"error": {"message": …, "type": …, "param": null, "code": 500}}`,
// with ", " and ": " separators and non-ASCII escaped as \uXXXX.
func ErrorEvent(e APIError) []byte {
	param := "null"
	if e.Param != "" {
		param = pyString(e.Param)
	}
	data := fmt.Sprintf(`{"error": {"message": %s, "type": %s, "param": %s, "code": %d}}`,
		pyString(e.Message), pyString(e.Type), param, e.Code)
	return []byte("data: " + data + "\n\n")
}

// Error body shapes.
const (
	ShapeNested = "nested" // vLLM ≥ 0.10.1: {"error":{"message":…,"type":…,"param":…,"code":…}}
	ShapeFlat   = "flat"   // vLLM ≤ 0.10.0: {"object":"error","message":…,…}
	ShapeString = "string" // --api-key rejection: {"error":"Unauthorized"} (message only)
	ShapeHTML   = "html"   // not vLLM: an HTML page from a proxy in front of it
)

// WriteError answers status with e in the given shape (ShapeNested when
// empty), with the Content-Type vLLM (Starlette JSONResponse) uses.
func WriteError(w http.ResponseWriter, status int, shape string, e APIError) {
	body, contentType := ErrorBody(shape, e)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// ErrorBody returns the bytes and Content-Type of an error body in shape.
func ErrorBody(shape string, e APIError) (body []byte, contentType string) {
	type flat struct {
		Object  string  `json:"object,omitempty"`
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    int     `json:"code"`
	}
	var param *string
	if e.Param != "" {
		param = &e.Param
	}
	switch shape {
	case ShapeFlat:
		return marshal(flat{Object: "error", Message: e.Message, Type: e.Type, Param: param, Code: e.Code}), "application/json"
	case ShapeString:
		return marshal(struct {
			Error string `json:"error"`
		}{e.Message}), "application/json"
	case ShapeHTML:
		title := fmt.Sprintf("%d %s", e.Code, http.StatusText(e.Code))
		return []byte("<html>\r\n<head><title>" + title + "</title></head>\r\n<body>\r\n<center><h1>" + title +
			"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"), "text/html"
	default:
		return marshal(struct {
			Error flat `json:"error"`
		}{flat{Message: e.Message, Type: e.Type, Param: param, Code: e.Code}}), "application/json"
	}
}

// ModelList is the body of GET /v1/models for one served model.
func ModelList(model string, created int64, maxModelLen int) []byte {
	type card struct {
		ID          string            `json:"id"`
		Object      string            `json:"object"`
		Created     int64             `json:"created"`
		OwnedBy     string            `json:"owned_by"`
		Root        string            `json:"root"`
		Parent      *string           `json:"parent"`
		MaxModelLen int               `json:"max_model_len"`
		Permission  []json.RawMessage `json:"permission"`
	}
	return marshal(struct {
		Object string `json:"object"`
		Data   []card `json:"data"`
	}{"list", []card{{ID: model, Object: "model", Created: created, OwnedBy: "vllm", Root: model, MaxModelLen: maxModelLen, Permission: []json.RawMessage{}}}})
}

type chunk struct {
	ID             string           `json:"id"`
	Object         string           `json:"object"`
	Created        int64            `json:"created"`
	Model          string           `json:"model"`
	Choices        []choice         `json:"choices"`
	Usage          *usage           `json:"usage,omitempty"`
	PromptTokenIDs *json.RawMessage `json:"prompt_token_ids,omitempty"`
}

type choice struct {
	Index        int              `json:"index"`
	Delta        delta            `json:"delta"`
	Logprobs     *json.RawMessage `json:"logprobs"`
	FinishReason *string          `json:"finish_reason"`
	StopReason   *json.RawMessage `json:"stop_reason,omitempty"`
	TokenIDs     *json.RawMessage `json:"token_ids,omitempty"`
}

type delta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	TotalTokens      int `json:"total_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// null returns an explicit JSON null for fields that pydantic serialises as
// null because vLLM set them explicitly (exclude_unset keeps them).
func null() *json.RawMessage {
	n := json.RawMessage("null")
	return &n
}

func event(c chunk) []byte {
	return append(append([]byte("data: "), marshal(c)...), "\n\n"...)
}

// marshal encodes compactly without HTML escaping, like pydantic's
// model_dump_json and Starlette's JSONResponse (raw UTF-8, no \u003c).
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only fixed struct types of this package are encoded; they cannot fail.
		panic(fmt.Sprintf("vllmwire: encode %T: %v", v, err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// pyString quotes s like Python's json.dumps with ensure_ascii=True.
func pyString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20 || (r >= 0x7f && r <= 0xffff) || r == utf8.RuneError:
			fmt.Fprintf(&b, `\u%04x`, r)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
