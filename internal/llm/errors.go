package llm

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// ErrorKind says what went wrong with a stream, for deciding what to do next
// (retry, trim the history, show a message).
type ErrorKind string

// Error kinds.
const (
	KindTimeout       ErrorKind = "timeout"         // no first token within FirstTokenTimeout, or IdleTimeout exceeded between chunks
	KindConnection    ErrorKind = "connection"      // refused / reset / DNS / TLS / connect timeout before any response
	KindContextLength ErrorKind = "context_length"  // HTTP 400: the prompt (plus max_tokens) does not fit the model's context
	KindRateLimited   ErrorKind = "rate_limited"    // HTTP 429
	KindUpstream      ErrorKind = "upstream"        // any other HTTP error status, a non-stream answer, or an in-stream error event
	KindTruncated     ErrorKind = "truncated"       // the stream ended or broke before a finish_reason arrived
	KindMalformed     ErrorKind = "malformed"       // bytes that are not SSE carrying chat-completion chunks
	KindCanceled      ErrorKind = "canceled"        // the caller's ctx was cancelled or its deadline passed; Err is ctx.Err()
	KindInvalid       ErrorKind = "invalid_request" // the Request cannot be sent (bad BaseURL, unknown role, …); nothing was sent
)

// Error is the error every failed Stream returns.
type Error struct {
	Kind ErrorKind
	// Status is the HTTP status of the response, when one arrived (200 for
	// an in-stream error event or a stream that broke).
	Status int
	// Message is readable and safe to show a user: never HTML, upstream text
	// cleaned and cut to about 300 characters.
	Message string
	// Code is the code an error body or in-stream error carried (vLLM's and
	// llama.cpp's "code", usually the HTTP status it stands for); 0 when
	// none.
	Code int
	// BeforeFirstToken is true when no content delta had been passed to
	// onDelta; only then is retrying invisible to the user.
	BeforeFirstToken bool
	// Err is the cause, for logs.
	Err error
}

// Error formats the kind, status, message and cause, for logs.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("llm ")
	b.WriteString(string(e.Kind))
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	b.WriteString(": ")
	b.WriteString(strings.TrimSuffix(e.Message, "."))
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

const (
	// maxMessageChars bounds the upstream text copied into Error.Message.
	maxMessageChars = 300
	// maxCauseBytes bounds the raw upstream bytes copied into Error.Err.
	maxCauseBytes = 1000
)

// Sentinel causes raised by this package's own dialers and timers.
var (
	errConnectTimeout = errors.New("connect timed out")
	errTLSHandshake   = errors.New("TLS handshake failed")
	errStreamTimeout  = errors.New("stream timed out")
)

// apiError is what could be read from an error body or an error event.
type apiError struct {
	Message string
	Type    string
	Param   string
	Code    int // 0 when absent or not a number
}

// parseAPIError reads the error shapes vLLM and its neighbours send:
// {"error":{…}} (vLLM ≥ 0.10.1, and every in-stream event),
// {"object":"error","message":…} (vLLM ≤ 0.10.0), {"error":"Unauthorized"}
// (--api-key), and FastAPI's {"detail":…}. ok is false when body is not a
// JSON object.
func parseAPIError(body []byte) (e apiError, ok bool) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return apiError{}, false
	}
	if raw, found := top["error"]; found {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			return apiError{Message: s}, true
		}
		var inner map[string]json.RawMessage
		if err := json.Unmarshal(raw, &inner); err == nil {
			return apiErrorFrom(inner), true
		}
	}
	if _, found := top["message"]; found {
		return apiErrorFrom(top), true
	}
	if raw, found := top["detail"]; found {
		return apiError{Message: jsonText(raw)}, true
	}
	return apiError{}, true
}

func apiErrorFrom(fields map[string]json.RawMessage) apiError {
	e := apiError{
		Message: jsonText(fields["message"]),
		Type:    jsonText(fields["type"]),
		Param:   jsonText(fields["param"]),
	}
	code, err := strconv.Atoi(jsonText(fields["code"])) // a number, or a number in a string
	if err == nil {
		e.Code = code
	}
	return e
}

// jsonText returns a JSON string's value, or the raw JSON text of any other
// value (validation messages may be lists), or "" for null or absent.
func jsonText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	return string(raw)
}

// isContextLength reports whether a 400 says the prompt does not fit the
// context. vLLM's wording changed many times (reference section 2), so this
// matches the param first and falls back to substrings; llama.cpp says "the
// request exceeds the available context size" (newer builds: type
// exceed_context_size_error). A max_tokens param alone is not enough
// ("max_tokens must be at least 1" is our bug, not a long conversation): its
// message must also talk about the context.
func isContextLength(status int, e apiError) bool {
	if status != 400 {
		return false
	}
	if e.Type == "exceed_context_size_error" {
		return true
	}
	msg := strings.ToLower(e.Message)
	mentionsContext := strings.Contains(msg, "context length") ||
		strings.Contains(msg, "context size") ||
		strings.Contains(msg, "context window") ||
		strings.Contains(msg, "max_model_len") ||
		strings.Contains(msg, "input tokens") ||
		strings.Contains(msg, "input characters")
	switch e.Param {
	case "input_tokens", "input_text":
		return true
	case "max_tokens", "max_completion_tokens":
		return mentionsContext || msg == ""
	}
	return mentionsContext
}

// statusError builds the Error for a response that is not a 200 event stream.
func statusError(status int, contentType string, body []byte, readErr error) *Error {
	e, isJSON := parseAPIError(body)
	if !isJSON && isHTML(contentType, body) {
		e = apiError{}
	} else if !isJSON {
		e = apiError{Message: string(body)}
	}
	detail := cleanText(e.Message, maxMessageChars)
	kind := KindUpstream
	var base string
	switch {
	case status == 429:
		kind, base = KindRateLimited, "The model server is busy (HTTP 429: too many requests); try again shortly"
	case isContextLength(status, e):
		kind, base = KindContextLength, "The conversation is too long for the model's context window (HTTP 400)"
	case status == 200:
		base = fmt.Sprintf("The model server answered without streaming (HTTP 200, %s)", contentLabel(contentType))
	case status == 401 || status == 403:
		base = fmt.Sprintf("The model server refused the API key (HTTP %d)", status)
	case status == 404:
		base = "The model server does not know this model or route (HTTP 404)"
	case status == 502 || status == 503 || status == 504:
		base = fmt.Sprintf("The model server is unavailable (HTTP %d)", status)
	case status >= 500:
		base = fmt.Sprintf("The model server failed (HTTP %d)", status)
	case status >= 400:
		base = fmt.Sprintf("The model server rejected the request (HTTP %d)", status)
	default:
		base = fmt.Sprintf("The model server answered with unexpected HTTP status %d", status)
	}
	cause := fmt.Errorf("HTTP %d %s: %s", status, contentLabel(contentType), rawSnippet(body))
	if readErr != nil {
		cause = fmt.Errorf("%w (reading the body: %w)", cause, readErr)
	}
	return &Error{Kind: kind, Status: status, Code: e.Code, Message: withDetail(base, detail), Err: cause}
}

// eventError builds the Error for an in-stream data: {"error": …} event
// (or llama.cpp's error: line, read as one). An event whose code is 400 and
// that says the prompt does not fit (llama-server --no-context-shift) is
// KindContextLength, so that the caller can trim the conversation.
func eventError(status int, data []byte, beforeFirstToken bool) *Error {
	e, _ := parseAPIError(data)
	kind := KindUpstream
	base := "The model server reported an error while answering"
	if beforeFirstToken {
		base = "The model server reported an error before answering"
	}
	if isContextLength(e.Code, e) {
		kind, base = KindContextLength, "The conversation is too long for the model's context window"
	}
	return &Error{
		Kind:    kind,
		Status:  status,
		Code:    e.Code,
		Message: withDetail(base, cleanText(e.Message, maxMessageChars)),
		Err:     fmt.Errorf("in-stream error event: %s", rawSnippet(data)),
	}
}

// connectionError builds the Error for a failure before any response.
func connectionError(err error) *Error {
	reason := "network error"
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var alertErr tls.AlertError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.Is(err, errConnectTimeout):
		reason = "connection timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		reason = "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		reason = "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		reason = "connection closed without an answer"
	case errors.As(err, &dnsErr):
		reason = "host not found"
	case errors.Is(err, errTLSHandshake), errors.As(err, &certErr), errors.As(err, &alertErr), errors.As(err, &recordErr):
		reason = "TLS handshake failed"
	}
	return &Error{
		Kind:    KindConnection,
		Message: "Could not reach the model server (" + reason + ").",
		Err:     err,
	}
}

// withDetail joins a sentence and optional upstream detail.
func withDetail(base, detail string) string {
	if detail == "" {
		return base + "."
	}
	return base + ": " + detail
}

// cleanText makes upstream text safe to show: valid UTF-8, no control
// characters, whitespace collapsed, no HTML, at most max characters.
func cleanText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if isHTML("", []byte(s)) {
		return ""
	}
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	runes := []rune(s)
	return strings.TrimSpace(string(runes[:max])) + "…"
}

// rawSnippet is the start of raw upstream bytes for Error.Err (logs), on
// one line.
func rawSnippet(b []byte) string {
	cut := ""
	if len(b) > maxCauseBytes {
		b, cut = b[:maxCauseBytes], "…"
	}
	return strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "\uFFFD")), " ") + cut
}

func isHTML(contentType string, body []byte) bool {
	if strings.Contains(mediaType(contentType), "html") {
		return true
	}
	head := strings.ToLower(strings.TrimSpace(string(body[:min(len(body), 512)])))
	return strings.HasPrefix(head, "<") || strings.Contains(head, "<html") || strings.Contains(head, "<!doctype")
}

// mediaType is the lower-case media type of a Content-Type header, or "" when
// it cannot be parsed.
func mediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return mt
}

// contentLabel names a Content-Type in messages.
func contentLabel(contentType string) string {
	if mt := mediaType(contentType); mt != "" {
		return mt
	}
	return "no Content-Type"
}

// isJSONType reports whether a media type is JSON.
func isJSONType(mt string) bool {
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}
