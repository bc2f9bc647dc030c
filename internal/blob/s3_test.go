package blob_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"luna/internal/blob"
)

// s3Env is where the S3 tests find a real S3-compatible server.
type s3Env struct {
	endpoint, accessKey, secretKey, bucket string
}

// s3TestEnv reads the LUNA_TEST_S3_* variables (scripts/s3test.sh starts
// a local versitygw and sets them). The tests skip when they are unset,
// and fail instead when LUNA_TEST_REQUIRE_S3=1.
func s3TestEnv(t *testing.T) s3Env {
	t.Helper()
	env := s3Env{
		endpoint:  os.Getenv("LUNA_TEST_S3_ENDPOINT"),
		accessKey: os.Getenv("LUNA_TEST_S3_ACCESS_KEY"),
		secretKey: os.Getenv("LUNA_TEST_S3_SECRET_KEY"),
		bucket:    os.Getenv("LUNA_TEST_S3_BUCKET"),
	}
	if env.endpoint == "" || env.accessKey == "" || env.secretKey == "" {
		msg := "S3 tests need LUNA_TEST_S3_ENDPOINT, LUNA_TEST_S3_ACCESS_KEY and LUNA_TEST_S3_SECRET_KEY " +
			"(`source scripts/s3test.sh` starts a local versitygw and sets them)"
		if os.Getenv("LUNA_TEST_REQUIRE_S3") == "1" {
			t.Fatalf("LUNA_TEST_REQUIRE_S3=1 but %s", msg)
		}
		t.Skip("skipping: " + msg)
	}
	if env.bucket == "" {
		env.bucket = "luna-test"
	}
	return env
}

// config returns a configuration for the test bucket, created when
// missing, with a random prefix so that tests and runs never share keys.
func (e s3Env) config(t *testing.T) blob.S3Config {
	t.Helper()
	return blob.S3Config{
		Endpoint:     e.endpoint,
		Bucket:       e.bucket,
		AccessKey:    e.accessKey,
		SecretKey:    e.secretKey,
		PathStyle:    true,
		Prefix:       "test-" + randomHex(t, 8),
		CreateBucket: true,
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}

func newS3(t *testing.T, cfg blob.S3Config) *blob.S3 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := blob.NewS3(ctx, cfg)
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	return store
}

func TestS3Store(t *testing.T) {
	t.Parallel()
	env := s3TestEnv(t)
	store := newS3(t, env.config(t))
	testStore(t, storeHarness{store: store, absURL: func(u string) string { return u }})
}

func TestS3Delete(t *testing.T) {
	t.Parallel()
	env := s3TestEnv(t)
	store := newS3(t, env.config(t))
	ctx := context.Background()
	if err := store.Put(ctx, "probe/a.txt", []byte("a"), ""); err != nil {
		t.Fatalf("Put: %v", err)
	}
	for range 2 { // deleting a missing object is no error
		if err := store.Delete(ctx, "probe/a.txt"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if _, _, err := store.Get(ctx, "probe/a.txt"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := store.Delete(ctx, "../a.txt"); !errors.Is(err, blob.ErrInvalidKey) {
		t.Errorf("Delete of an invalid key: %v, want ErrInvalidKey", err)
	}
}

func TestS3SignedURL(t *testing.T) {
	t.Parallel()
	env := s3TestEnv(t)
	store := newS3(t, env.config(t))
	ctx := context.Background()
	png := []byte("\x89PNG\r\n\x1a\npresigned")
	for _, key := range []string{"images/u1/a.png", "images/u1/b.png"} {
		if err := store.Put(ctx, key, png, "image/png"); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	signURL := func(key string, ttl time.Duration) *url.URL {
		t.Helper()
		s, err := store.SignedURL(ctx, key, ttl)
		if err != nil {
			t.Fatalf("SignedURL: %v", err)
		}
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("parse %q: %v", s, err)
		}
		return u
	}

	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		u := signURL("images/u1/a.png", time.Minute)
		resp := fetch(t, http.MethodGet, u.String())
		if got, want := resp.status, http.StatusOK; got != want {
			t.Fatalf("status = %d, want %d; body %q", got, want, resp.body)
		}
		if got, want := string(resp.body), string(png); got != want {
			t.Errorf("body = %q, want %q", got, want)
		}
		if got, want := resp.header.Get("Content-Type"), "image/png"; got != want {
			t.Errorf("Content-Type = %q, want %q", got, want)
		}
	})

	t.Run("tampered signature", func(t *testing.T) {
		t.Parallel()
		u := signURL("images/u1/a.png", time.Minute)
		q := u.Query()
		sig := q.Get("X-Amz-Signature")
		if sig == "" {
			t.Fatalf("presigned URL %s has no X-Amz-Signature", u)
		}
		last := "0"
		if strings.HasSuffix(sig, "0") {
			last = "1"
		}
		q.Set("X-Amz-Signature", sig[:len(sig)-1]+last)
		u.RawQuery = q.Encode()
		refused(t, u.String())
	})

	t.Run("signature of another key", func(t *testing.T) {
		t.Parallel()
		a, b := signURL("images/u1/a.png", time.Minute), signURL("images/u1/b.png", time.Minute)
		a.RawQuery = b.RawQuery
		refused(t, a.String())
	})

	t.Run("extended expiry", func(t *testing.T) {
		t.Parallel()
		u := signURL("images/u1/a.png", time.Minute)
		q := u.Query()
		q.Set("X-Amz-Expires", "3600")
		u.RawQuery = q.Encode()
		refused(t, u.String())
	})

	t.Run("expired", func(t *testing.T) {
		t.Parallel()
		u := signURL("images/u1/a.png", time.Second)
		// The server, not a clock of ours, decides: wait for real.
		time.Sleep(2 * time.Second)
		refused(t, u.String())
	})
}

// refused checks that S3 turns a presigned URL down.
func refused(t *testing.T, u string) {
	t.Helper()
	resp := fetch(t, http.MethodGet, u)
	if got, want := resp.status, http.StatusForbidden; got != want {
		t.Errorf("status = %d, want %d; body %q", got, want, resp.body)
	}
	if strings.Contains(string(resp.body), "presigned") {
		t.Errorf("refusal body contains the object: %q", resp.body)
	}
}

func TestS3Prefix(t *testing.T) {
	t.Parallel()
	env := s3TestEnv(t)
	prefix := "test-" + randomHex(t, 8)
	cfg := env.config(t)
	cfg.Prefix = "/" + prefix + "/" // surrounding slashes are dropped
	prefixed := newS3(t, cfg)
	cfg.Prefix = ""
	bare := newS3(t, cfg)
	ctx := context.Background()
	if err := prefixed.Put(ctx, "images/u1/p.png", []byte("prefixed"), "image/png"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	data, _ := get(t, bare, prefix+"/images/u1/p.png")
	if got, want := string(data), "prefixed"; got != want {
		t.Errorf("object under the prefix holds %q, want %q", got, want)
	}
	if _, _, err := bare.Get(ctx, "images/u1/p.png"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Get without the prefix error = %v, want ErrNotFound", err)
	}
}

func TestS3PublicEndpoint(t *testing.T) {
	t.Parallel()
	env := s3TestEnv(t)
	endpoint, err := url.Parse(env.endpoint)
	if err != nil || endpoint.Host == "" {
		t.Skipf("LUNA_TEST_S3_ENDPOINT %q is not a URL; this test needs one", env.endpoint)
	}
	if endpoint.Hostname() != "127.0.0.1" {
		t.Skipf("this test reaches the server as localhost, so it needs a 127.0.0.1 endpoint, not %q", env.endpoint)
	}
	public := endpoint.Scheme + "://localhost:" + endpoint.Port()
	cfg := env.config(t)
	cfg.PublicEndpoint = public
	store := newS3(t, cfg)
	ctx := context.Background()
	if err := store.Put(ctx, "images/u1/pub.png", []byte("public"), "image/png"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	signed, err := store.SignedURL(ctx, "images/u1/pub.png", time.Minute)
	if err != nil {
		t.Fatalf("SignedURL: %v", err)
	}
	if !strings.HasPrefix(signed, public+"/") {
		t.Fatalf("signed URL %s does not use the public endpoint %s", signed, public)
	}
	resp := fetch(t, http.MethodGet, signed)
	if got, want := resp.status, http.StatusOK; got != want {
		t.Fatalf("status = %d, want %d; body %q", got, want, resp.body)
	}
	if got, want := string(resp.body), "public"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
}

func TestNewS3Refuses(t *testing.T) {
	t.Parallel()
	env := s3TestEnv(t)
	tests := []struct {
		name   string
		change func(*blob.S3Config)
	}{
		{"missing bucket without CreateBucket", func(c *blob.S3Config) {
			c.Bucket = "luna-missing-" + randomHex(t, 6)
			c.CreateBucket = false
		}},
		{"wrong secret key", func(c *blob.S3Config) { c.SecretKey += "x" }},
		{"unknown access key", func(c *blob.S3Config) { c.AccessKey = "nobody" }},
		{"invalid bucket name", func(c *blob.S3Config) { c.Bucket = "Not_A_Bucket" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := env.config(t)
			tt.change(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := blob.NewS3(ctx, cfg); err == nil {
				t.Fatalf("NewS3 succeeded, want an error")
			}
		})
	}
}

func TestNewS3Config(t *testing.T) {
	t.Parallel()
	valid := blob.S3Config{Endpoint: "127.0.0.1:1", Bucket: "b", AccessKey: "a", SecretKey: "s"}
	tests := []struct {
		name   string
		change func(*blob.S3Config)
	}{
		{"no endpoint", func(c *blob.S3Config) { c.Endpoint = "" }},
		{"no bucket", func(c *blob.S3Config) { c.Bucket = "" }},
		{"no access key", func(c *blob.S3Config) { c.AccessKey = "" }},
		{"no secret key", func(c *blob.S3Config) { c.SecretKey = "" }},
		{"endpoint with a path", func(c *blob.S3Config) { c.Endpoint = "http://127.0.0.1:1/bucket" }},
		{"bad public endpoint", func(c *blob.S3Config) { c.PublicEndpoint = "ftp://example.com" }},
		{"bad prefix", func(c *blob.S3Config) { c.Prefix = "a/../b" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid
			tt.change(&cfg)
			// Nothing listens on port 1, so a config error must be found
			// before any request; the short deadline keeps a miss quick.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := blob.NewS3(ctx, cfg)
			if err == nil {
				t.Fatalf("NewS3 succeeded, want an error")
			}
			if strings.Contains(err.Error(), "check S3 bucket") {
				t.Fatalf("NewS3 sent a request before finding the config error: %v", err)
			}
		})
	}
}
