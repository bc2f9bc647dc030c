package blob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"luna/internal/blob"
)

// storeHarness is a Store under test and what the shared tests need to
// reach the URLs it signs.
type storeHarness struct {
	store blob.Store
	// absURL turns what SignedURL returned into a URL a plain client can fetch.
	absURL func(string) string
}

// testStore runs the behaviour every Store must have: the same tests for
// Local and S3.
func testStore(t *testing.T, h storeHarness) {
	ctx := context.Background()

	t.Run("PutGet", func(t *testing.T) {
		t.Parallel()
		png := []byte("\x89PNG\r\n\x1a\nnot really a png")
		tests := []struct {
			name        string
			key         string
			data        []byte
			contentType string
			wantType    string
		}{
			{"png", "images/u1/j1.png", png, "image/png", "image/png"},
			{"type from extension", "images/u1/j2.png", png, "", "image/png"},
			{"unknown extension", "images/u1/j3.bin", []byte{0, 1, 2}, "", "application/octet-stream"},
			{"explicit type wins", "images/u1/j4.dat", []byte("{}"), "application/json", "application/json"},
			{"empty object", "images/u1/empty.png", []byte{}, "image/png", "image/png"},
			{"top level key", "j5.webp", []byte("webp"), "", "image/webp"},
			{"binary", "images/u-2/a_b.C-9.png", bytes.Repeat([]byte{0xff, 0, 0x7f}, 100_000), "image/png", "image/png"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := h.store.Put(ctx, tt.key, tt.data, tt.contentType); err != nil {
					t.Fatalf("Put: %v", err)
				}
				data, info := get(t, h.store, tt.key)
				if !bytes.Equal(data, tt.data) {
					t.Fatalf("Get returned %d bytes, want the %d put", len(data), len(tt.data))
				}
				if got, want := info.ContentType, tt.wantType; got != want {
					t.Errorf("ContentType = %q, want %q", got, want)
				}
				if got, want := info.Size, int64(len(tt.data)); got != want {
					t.Errorf("Size = %d, want %d", got, want)
				}
			})
		}
	})

	t.Run("PutOverwrites", func(t *testing.T) {
		t.Parallel()
		key := "images/u1/overwrite.png"
		if err := h.store.Put(ctx, key, []byte("first version, longer"), "image/png"); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if err := h.store.Put(ctx, key, []byte("second"), "image/webp"); err != nil {
			t.Fatalf("Put again: %v", err)
		}
		data, info := get(t, h.store, key)
		if got, want := string(data), "second"; got != want {
			t.Errorf("data = %q, want %q", got, want)
		}
		if got, want := info.ContentType, "image/webp"; got != want {
			t.Errorf("ContentType = %q, want %q", got, want)
		}
	})

	t.Run("GetMissing", func(t *testing.T) {
		t.Parallel()
		for _, key := range []string{"images/nobody/missing.png", "missing.png", "nodir/at/all.png"} {
			rc, _, err := h.store.Get(ctx, key)
			if rc != nil {
				rc.Close()
			}
			if !errors.Is(err, blob.ErrNotFound) {
				t.Errorf("Get(%q) error = %v, want ErrNotFound", key, err)
			}
		}
	})

	t.Run("InvalidKeys", func(t *testing.T) {
		t.Parallel()
		for _, key := range []string{"", "/images/a.png", "images/../a.png", "..", "images\\a.png", "images/a b.png",
			"images/a%2e.png", "images//a.png", "images/", "images/.hidden", "images/ü.png", "a?b", "a\x00b"} {
			if err := h.store.Put(ctx, key, []byte("x"), "image/png"); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("Put(%q) error = %v, want ErrInvalidKey", key, err)
			}
			if _, _, err := h.store.Get(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("Get(%q) error = %v, want ErrInvalidKey", key, err)
			}
			if _, err := h.store.SignedURL(ctx, key, time.Minute); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("SignedURL(%q) error = %v, want ErrInvalidKey", key, err)
			}
		}
	})

	t.Run("InvalidContentType", func(t *testing.T) {
		t.Parallel()
		for _, contentType := range []string{"image/png\r\nX-Evil: 1", "not a type", "image/png; q=\"unterminated"} {
			if err := h.store.Put(ctx, "images/u1/bad-type.png", []byte("x"), contentType); err == nil {
				t.Errorf("Put with content type %q succeeded, want an error", contentType)
			}
		}
	})

	t.Run("InvalidTTL", func(t *testing.T) {
		t.Parallel()
		for _, ttl := range []time.Duration{0, -time.Second, blob.MaxTTL + time.Second} {
			if _, err := h.store.SignedURL(ctx, "images/u1/j1.png", ttl); err == nil {
				t.Errorf("SignedURL with ttl %v succeeded, want an error", ttl)
			}
		}
	})

	t.Run("SignedURLServesObject", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name        string
			key         string
			data        []byte
			contentType string
		}{
			{"png", "images/u7/signed.png", append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{1, 2, 3}, 5000)...), "image/png"},
			{"jpeg", "images/u7/signed.jpg", []byte("\xff\xd8\xff jpeg-ish"), "image/jpeg"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := h.store.Put(ctx, tt.key, tt.data, tt.contentType); err != nil {
					t.Fatalf("Put: %v", err)
				}
				signed, err := h.store.SignedURL(ctx, tt.key, 5*time.Minute)
				if err != nil {
					t.Fatalf("SignedURL: %v", err)
				}
				resp := fetch(t, http.MethodGet, h.absURL(signed))
				if got, want := resp.status, http.StatusOK; got != want {
					t.Fatalf("status = %d, want %d; body %q", got, want, resp.body)
				}
				if !bytes.Equal(resp.body, tt.data) {
					t.Errorf("body has %d bytes, want the %d put", len(resp.body), len(tt.data))
				}
				if got, want := resp.header.Get("Content-Type"), tt.contentType; got != want {
					t.Errorf("Content-Type = %q, want %q", got, want)
				}
				// A browser would try to decode any other encoding.
				if got := resp.header.Get("Content-Encoding"); got != "" {
					t.Errorf("Content-Encoding = %q, want none", got)
				}
				if got := resp.header.Get("Cache-Control"); !strings.HasPrefix(got, "private, max-age=") {
					t.Errorf("Cache-Control = %q, want private, max-age=...", got)
				}
			})
		}
	})
}

// get reads the whole object under key.
func get(t *testing.T, store blob.Store, key string) ([]byte, blob.Info) {
	t.Helper()
	rc, info, err := store.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return data, info
}

// response is what fetch read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// fetch sends a plain request, as a browser following a signed URL would.
func fetch(t *testing.T, method, url string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, nil)
	if err != nil {
		t.Fatalf("new request for %s: %v", url, err)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %s: %v", url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}
