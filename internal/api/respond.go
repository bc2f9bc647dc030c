package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"luna"
	"luna/internal/credits"
	"luna/internal/ratelimit"
)

// statusByCode maps every stable error code to its HTTP status.
var statusByCode = map[string]int{
	luna.CodeInvalidRequest:       http.StatusBadRequest,
	luna.CodeUnauthorized:         http.StatusUnauthorized,
	luna.CodeInsufficientCredits:  http.StatusPaymentRequired,
	luna.CodeForbidden:            http.StatusForbidden,
	luna.CodeInviteRequired:       http.StatusForbidden,
	luna.CodeSignupClosed:         http.StatusForbidden,
	luna.CodeNotFound:             http.StatusNotFound,
	luna.CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	luna.CodeConflict:             http.StatusConflict,
	luna.CodeEmailTaken:           http.StatusConflict,
	luna.CodeGenerationInProgress: http.StatusConflict,
	luna.CodeIdempotencyConflict:  http.StatusConflict,
	luna.CodePayloadTooLarge:      http.StatusRequestEntityTooLarge,
	luna.CodeUnsupportedMedia:     http.StatusUnsupportedMediaType,
	luna.CodeRateLimited:          http.StatusTooManyRequests,
	luna.CodeInternal:             http.StatusInternalServerError,
	luna.CodeModelUnavailable:     http.StatusBadGateway,
	luna.CodeUpstreamUnavailable:  http.StatusServiceUnavailable,
	luna.CodeUnavailable:          http.StatusServiceUnavailable,
}

// StatusForCode returns the HTTP status of an error code.
func StatusForCode(code string) int {
	if status, ok := statusByCode[code]; ok {
		return status
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// A refusal for credits says what the request needs and what the user
	// has (insufficient_credits: a message, an action on one, an image).
	CreditsNeeded    *int64 `json:"creditsNeeded,omitempty"`
	CreditsAvailable *int64 `json:"creditsAvailable,omitempty"`
}

// writeJSON writes v as the JSON response body with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v) // the client went away; nothing to do
}

// writeError answers with the error shape. Errors that are not *luna.Error
// are internal: they are logged once, with the request id, and the client
// gets a generic message.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, message := luna.ErrorCode(err), luna.ErrorMessage(err)
	status := StatusForCode(code)
	var limited *ratelimit.ExceededError
	if errors.As(err, &limited) {
		// The end of the rate window, in whole seconds rounded up: never
		// "0", which would invite an immediate retry.
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int((limited.Wait+time.Second-1)/time.Second))))
	}
	if status >= 500 {
		s.logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path,
			"request_id", requestID(r.Context()), "err", err)
	}
	// Every 429 says when to try again; handlers that know better set it first.
	if status == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", defaultRetryAfter)
	}
	detail := errorDetail{Code: code, Message: message}
	var short *credits.InsufficientError
	if errors.As(err, &short) {
		detail.CreditsNeeded, detail.CreditsAvailable = &short.Needed, &short.Available
	}
	writeJSON(w, status, errorBody{Error: detail})
}

// defaultRetryAfter is the Retry-After (seconds) of a 429 whose handler did
// not set one, e.g. too many replies generating at once.
const defaultRetryAfter = "5"

func errorf(code, format string, args ...any) error { return luna.Errorf(code, format, args...) }

// decodeJSON reads the request body into dst: JSON only, at most
// s.maxBodyBytes, valid UTF-8, one object, no unknown fields.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mediaType, _, err := mime.ParseMediaType(ct)
		if err != nil || (mediaType != "application/json" && !strings.HasSuffix(mediaType, "+json")) {
			return errorf(luna.CodeUnsupportedMedia, "Send the request body as application/json.")
		}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBodyBytes))
	if err != nil {
		return jsonError(err)
	}
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) == 0:
		return errorf(luna.CodeInvalidRequest, "The request body is empty; send a JSON object.")
	case !utf8.Valid(trimmed):
		return errorf(luna.CodeInvalidRequest, "The request body is not valid UTF-8.")
	case trimmed[0] != '{':
		return errorf(luna.CodeInvalidRequest, "The request body must be a JSON object.")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errorf(luna.CodeInvalidRequest, "The request body must hold a single JSON object.")
	}
	// PostgreSQL text cannot hold NUL characters; refuse them here rather
	// than fail deep inside a write.
	if hasNUL(reflect.ValueOf(dst)) {
		return errorf(luna.CodeInvalidRequest, "Text must not contain NUL (\\u0000) characters.")
	}
	return nil
}

// hasNUL reports whether any string reachable from v contains a NUL byte.
func hasNUL(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		return strings.IndexByte(v.String(), 0) >= 0
	case reflect.Pointer, reflect.Interface:
		return !v.IsNil() && hasNUL(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if hasNUL(v.Field(i)) {
				return true
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if hasNUL(v.Index(i)) {
				return true
			}
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			if hasNUL(iter.Key()) || hasNUL(iter.Value()) {
				return true
			}
		}
	}
	return false
}

// jsonError turns a decoding error into a message a client developer can act on.
func jsonError(err error) error {
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return errorf(luna.CodePayloadTooLarge, "The request body is larger than %d bytes.", tooLarge.Limit)
	case errors.Is(err, io.EOF):
		return errorf(luna.CodeInvalidRequest, "The request body is empty; send a JSON object.")
	case errors.As(err, &syntaxErr):
		return errorf(luna.CodeInvalidRequest, "Malformed JSON at byte %d.", syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(luna.CodeInvalidRequest, "Malformed JSON: the body ends too early.")
	case errors.As(err, &typeErr):
		if typeErr.Field != "" {
			return errorf(luna.CodeInvalidRequest, "Field %q must be of type %s.", typeErr.Field, jsonType(typeErr.Type.Kind().String()))
		}
		return errorf(luna.CodeInvalidRequest, "The request body must be a JSON object.")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return errorf(luna.CodeInvalidRequest, "Unknown field %s.", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return errorf(luna.CodeInvalidRequest, "Malformed JSON.")
	}
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	default:
		return "number"
	}
}

// discardLogger is used when no logger is configured.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
