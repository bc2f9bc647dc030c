// Package luna holds the domain types and error codes shared by every part of
// Luna: users, credits and models are described here, and the packages under
// internal/ implement them (storage, HTTP API, identity providers).
package luna

import (
	"errors"
	"fmt"
)

// Error codes are part of the public API contract: clients switch on them, so
// they never change once released. Each code maps to one HTTP status in
// internal/api.
const (
	CodeInvalidRequest       = "invalid_request"        // 400
	CodeUnauthorized         = "unauthorized"           // 401
	CodeInsufficientCredits  = "insufficient_credits"   // 402
	CodeForbidden            = "forbidden"              // 403
	CodeNotFound             = "not_found"              // 404
	CodeMethodNotAllowed     = "method_not_allowed"     // 405
	CodeInviteRequired       = "invite_required"        // 403: sign-up needs a valid, unused invite code
	CodeSignupClosed         = "signup_closed"          // 403: sign-up is closed
	CodeConflict             = "conflict"               // 409
	CodeEmailTaken           = "email_taken"            // 409: an account with this email exists
	CodeGenerationInProgress = "generation_in_progress" // 409
	CodeIdempotencyConflict  = "idempotency_conflict"   // 409: the request's idempotency key (clientMessageId, clientRequestId) was used for a different request
	CodePayloadTooLarge      = "payload_too_large"      // 413
	CodeUnsupportedMedia     = "unsupported_media_type" // 415
	CodeRateLimited          = "rate_limited"           // 429
	CodeInternal             = "internal"               // 500
	CodeModelUnavailable     = "model_unavailable"      // 502
	CodeUpstreamUnavailable  = "upstream_unavailable"   // 503
	CodeUnavailable          = "unavailable"            // 503
)

// Error is an error meant for the user: its Code is stable and its Message is
// safe to show. Any other error reaching the HTTP layer is an internal error
// and is answered with a generic message.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or
// CodeInternal when there is none.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the user-facing message of err, or a generic one for
// internal errors.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "An internal error occurred."
}
