// Package blob stores Luna's generated images and hands out expiring URLs
// that let a browser read one object without any other credential.
//
// Two implementations share the Store interface: Local keeps objects in a
// directory and serves them through its own signed HTTP handler; S3 keeps
// them in an S3-compatible bucket and hands out presigned GET URLs.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"path"
	"strings"
	"time"
)

// Store keeps objects (generated images) and hands out expiring URLs to read them.
type Store interface {
	// Put stores data under key. It is idempotent: the same key overwrites.
	// An empty contentType is derived from the key's extension.
	Put(ctx context.Context, key string, data []byte, contentType string) error
	// Get opens the object stored under key. The caller closes the reader.
	// It returns ErrNotFound when there is no such object.
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)
	// SignedURL returns a URL that serves the object until ttl passes.
	// Local: a path on Luna's own server signed with HMAC; S3: a presigned
	// GET URL. It does not check that the object exists.
	SignedURL(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// Info describes a stored object.
type Info struct {
	ContentType string
	Size        int64
}

var (
	// ErrNotFound is returned by Get when no object is stored under the key.
	ErrNotFound = errors.New("blob: object not found")
	// ErrInvalidKey is returned for keys that ValidateKey refuses.
	ErrInvalidKey = errors.New("blob: invalid key")
)

// MaxTTL is the longest lifetime of a signed URL: S3 refuses to presign for
// longer, and Local keeps the same limit so both stores behave alike.
const MaxTTL = 7 * 24 * time.Hour

// maxKeyLen keeps keys well inside S3's 1024-byte limit and common file
// system name limits.
const maxKeyLen = 512

// defaultContentType is used when neither the caller nor the key's
// extension tells what an object holds.
const defaultContentType = "application/octet-stream"

// ValidateKey reports whether key may name an object. Keys look like
// "images/<userID>/<jobID>.png": segments of [A-Za-z0-9._-] separated by
// single slashes. A key must not be empty, start or end with "/", contain
// "..", backslashes or empty segments, or have a segment that starts with
// "." (Local keeps its temporary and metadata files under such names).
// The error wraps ErrInvalidKey.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(key) > maxKeyLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidKey, maxKeyLen)
	case strings.Contains(key, ".."):
		return fmt.Errorf("%w: %q contains \"..\"", ErrInvalidKey, key)
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("%w: %q starts with \"/\"", ErrInvalidKey, key)
	}
	for _, c := range key {
		if !isKeyChar(c) {
			return fmt.Errorf("%w: %q contains %q", ErrInvalidKey, key, c)
		}
	}
	for segment := range strings.SplitSeq(key, "/") {
		if segment == "" {
			return fmt.Errorf("%w: %q has an empty path segment", ErrInvalidKey, key)
		}
		if strings.HasPrefix(segment, ".") {
			return fmt.Errorf("%w: %q has a segment starting with \".\"", ErrInvalidKey, key)
		}
	}
	return nil
}

// isKeyChar reports whether c is in [A-Za-z0-9._/-].
func isKeyChar(c rune) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '.', c == '_', c == '/', c == '-':
		return true
	}
	return false
}

// typeForKey returns the content type implied by key's extension, or
// application/octet-stream when the extension is unknown. It is a fixed
// list rather than mime.TypeByExtension so that the answer does not depend
// on the machine's /etc/mime.types.
func typeForKey(key string) string {
	switch strings.ToLower(path.Ext(key)) {
	case ".png":
		return "image/png"
	case ".jpg", ".jpeg":
		return "image/jpeg"
	case ".webp":
		return "image/webp"
	case ".gif":
		return "image/gif"
	case ".avif":
		return "image/avif"
	case ".json":
		return "application/json"
	case ".txt":
		return "text/plain; charset=utf-8"
	}
	return defaultContentType
}

// resolveContentType checks a caller's content type, or derives one from
// the key when it is empty. Content types end up in HTTP headers, so only
// well-formed media types are accepted.
func resolveContentType(key, contentType string) (string, error) {
	if contentType == "" {
		return typeForKey(key), nil
	}
	if _, _, err := mime.ParseMediaType(contentType); err != nil {
		return "", fmt.Errorf("blob: content type %q: %w", contentType, err)
	}
	for _, c := range contentType {
		if c < 0x20 || c > 0x7e {
			return "", fmt.Errorf("blob: content type %q has a non-printable or non-ASCII character", contentType)
		}
	}
	return contentType, nil
}

// checkTTL refuses lifetimes that are not positive or exceed MaxTTL.
func checkTTL(ttl time.Duration) error {
	if ttl <= 0 || ttl > MaxTTL {
		return fmt.Errorf("blob: signed URL lifetime %v must be positive and at most %v", ttl, MaxTTL)
	}
	return nil
}
