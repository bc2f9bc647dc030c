// Package imagegen makes images through an upstream generation service: a
// ComfyUI server spoken to through its native HTTP API (NewComfyUI), or a
// Runpod serverless endpoint running worker-comfyui (NewRunpod). Both run the
// same API-format workflow template (Workflow), with the user's prompt,
// resolution and seed placed into it as JSON values.
//
// A Backend follows one job to completion by polling, retries transient
// upstream failures within the caller's context, and is crash-safe: the
// upstream job id is handed to the caller to persist before waiting, and a
// later Run with that id follows the same job instead of submitting again.
package imagegen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/image/webp"
)

// Request is one image to make.
type Request struct {
	// PromptID is a lowercase UUID chosen by the caller before submitting.
	// ComfyUI uses it as the prompt_id; Runpod ignores it.
	PromptID string
	// Prompt is the user's text, placed into the workflow as a JSON value.
	Prompt string
	// Width and Height are 512, 768 or 1024.
	Width, Height int
	// Seed is the sampler seed; it must not be negative.
	Seed int64
}

// Result is the finished image.
type Result struct {
	// Data is the image file as the upstream produced it.
	Data []byte
	// ContentType is image/png, image/jpeg or image/webp, from the magic bytes.
	ContentType string
	// Width and Height are decoded from the image.
	Width, Height int
}

// Backend makes images on an upstream service.
type Backend interface {
	// Run makes the image. With resumeID == "" it submits req; recordID is
	// called with the upstream id BEFORE waiting (ComfyUI: before
	// submitting, since the prompt_id is ours, so a crash after recording and
	// before submitting is recoverable; Runpod: right after /run answers) and
	// the caller persists it. With resumeID != "" it follows that existing
	// upstream job and never submits a second time — EXCEPT for ComfyUI, when
	// /history and /queue both show that the prompt_id was never received
	// (then submitting it now, with that same prompt_id, is the first
	// submission). It polls about every PollInterval (default 2s) until done,
	// and returns the first output image.
	//
	// It gives up when ctx ends (the caller sets the time budget). Transient
	// upstream failures (connection refused/reset, HTTP 5xx, 429) are retried
	// with backoff within ctx; validation errors fail fast. Failures are
	// *Error values, except an error returned by recordID, which is returned
	// wrapped as it is.
	Run(ctx context.Context, req Request, resumeID string, recordID func(ctx context.Context, upstreamID string) error) (Result, error)
}

// ErrorKind says why a Run failed.
type ErrorKind string

// Error kinds.
const (
	// KindValidation: the upstream rejected the workflow or input (ComfyUI
	// 400 with node_errors / error; Runpod input or workflow validation
	// failure), or the Request itself is invalid. Retrying will not help.
	KindValidation ErrorKind = "validation"
	// KindFailed: the upstream reported a failure (ComfyUI history
	// status_str "error"; Runpod FAILED, TIMED_OUT or CANCELLED), or lost the
	// job.
	KindFailed ErrorKind = "failed"
	// KindTimeout: ctx ended while waiting for a job the upstream knew about.
	KindTimeout ErrorKind = "timeout"
	// KindUnavailable: the upstream could not be reached (or never answered
	// successfully) within the budget, or it refused the request as a whole
	// (bad credentials, wrong URL).
	KindUnavailable ErrorKind = "unavailable"
	// KindInvalidOutput: the job finished but gave no image, or an image that
	// cannot be decoded.
	KindInvalidOutput ErrorKind = "invalid_output"
)

// Error is the error a failed Run returns.
type Error struct {
	Kind ErrorKind
	// Message is readable and safe to show a user: one line, at most 300
	// characters, without upstream URLs.
	Message string
	// Err is the cause, for logs. When ctx ended it wraps ctx.Err(), so
	// errors.Is(err, context.Canceled) tells a shutdown from a timeout.
	Err error
}

// Error formats the kind, message and cause, for logs.
func (e *Error) Error() string {
	msg := strings.TrimSuffix(e.Message, ".")
	if e.Err != nil {
		return fmt.Sprintf("imagegen %s: %s: %v", e.Kind, msg, e.Err)
	}
	return fmt.Sprintf("imagegen %s: %s", e.Kind, msg)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of err when it is (or wraps) an *Error, and "" otherwise.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

// maxMessageChars bounds Error.Message.
const maxMessageChars = 300

// newError returns an *Error with msg cleaned to one line of at most
// maxMessageChars characters.
func newError(kind ErrorKind, msg string, err error) *Error {
	return &Error{Kind: kind, Message: cleanMessage(msg), Err: err}
}

// cleanMessage collapses whitespace and control characters to single spaces
// and cuts the text to maxMessageChars runes.
func cleanMessage(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
	if utf8.RuneCountInString(s) <= maxMessageChars {
		return s
	}
	runes := []rune(s)
	return strings.TrimSpace(string(runes[:maxMessageChars-1])) + "…"
}

// Image limits: enough for any resolution this package asks for, small enough
// that a hostile header cannot make decoding allocate gigabytes.
const (
	maxImageBytes = 64 << 20
	maxImageSide  = 16384
	maxImagePixel = 64 << 20
)

// decodeImage checks that data is a PNG, JPEG or WebP image that decodes
// completely, and returns it as a Result.
func decodeImage(data []byte) (Result, error) {
	contentType := sniffImage(data)
	var (
		decodeConfig func([]byte) (image.Config, error)
		decode       func([]byte) (image.Image, error)
	)
	switch contentType {
	case "image/png":
		decodeConfig = func(b []byte) (image.Config, error) { return png.DecodeConfig(bytes.NewReader(b)) }
		decode = func(b []byte) (image.Image, error) { return png.Decode(bytes.NewReader(b)) }
	case "image/jpeg":
		decodeConfig = func(b []byte) (image.Config, error) { return jpeg.DecodeConfig(bytes.NewReader(b)) }
		decode = func(b []byte) (image.Image, error) { return jpeg.Decode(bytes.NewReader(b)) }
	case "image/webp":
		decodeConfig = func(b []byte) (image.Config, error) { return webp.DecodeConfig(bytes.NewReader(b)) }
		decode = func(b []byte) (image.Image, error) { return webp.Decode(bytes.NewReader(b)) }
	default:
		return Result{}, newError(KindInvalidOutput, "The image service returned a file that is not a PNG, JPEG or WebP image.",
			fmt.Errorf("unrecognised image bytes (%d bytes)", len(data)))
	}
	cfg, err := decodeConfig(data)
	if err != nil {
		return Result{}, newError(KindInvalidOutput, "The image service returned an image that cannot be decoded.", fmt.Errorf("decode %s header: %w", contentType, err))
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > maxImageSide || cfg.Height > maxImageSide || cfg.Width*cfg.Height > maxImagePixel {
		return Result{}, newError(KindInvalidOutput, "The image service returned an image of unusable size.", fmt.Errorf("image is %dx%d", cfg.Width, cfg.Height))
	}
	img, err := decode(data)
	if err != nil {
		return Result{}, newError(KindInvalidOutput, "The image service returned an image that cannot be decoded.", fmt.Errorf("decode %s: %w", contentType, err))
	}
	b := img.Bounds()
	return Result{Data: data, ContentType: contentType, Width: b.Dx(), Height: b.Dy()}, nil
}

// sniffImage returns the content type told by data's magic bytes, or "".
func sniffImage(data []byte) string {
	switch {
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return "image/png"
	case bytes.HasPrefix(data, []byte("\xff\xd8\xff")):
		return "image/jpeg"
	case len(data) >= 12 && string(data[0:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		return "image/webp"
	}
	return ""
}
