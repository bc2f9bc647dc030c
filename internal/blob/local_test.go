package blob_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"luna/internal/blob"
)

// testSecret is a fixed 32-byte HMAC key so tests can forge signatures.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// clock is a settable time source for LocalConfig.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// newLocal makes a Local store in a temp dir with a settable clock.
func newLocal(t *testing.T) (*blob.Local, *clock, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "blobs")
	clk := &clock{now: time.Unix(1_800_000_000, 250_000_000)}
	local, err := blob.NewLocal(blob.LocalConfig{Dir: dir, Secret: testSecret, BasePath: "/files", Now: clk.Now})
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}
	return local, clk, dir
}

func TestLocalStore(t *testing.T) {
	t.Parallel()
	local, _, _ := newLocal(t)
	// Mounted the way the Handler documentation says.
	mux := http.NewServeMux()
	mux.Handle("GET /files/", local.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	testStore(t, storeHarness{store: local, absURL: func(u string) string { return srv.URL + u }})
}

func TestNewLocalConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		noDir   bool
		cfg     blob.LocalConfig // Dir is set to a fresh temp dir unless noDir
		wantErr bool
	}{
		{"valid", false, blob.LocalConfig{Secret: testSecret, BasePath: "/files"}, false},
		{"nested base path", false, blob.LocalConfig{Secret: testSecret, BasePath: "/v1/files"}, false},
		{"no dir", true, blob.LocalConfig{Secret: testSecret, BasePath: "/files"}, true},
		{"short secret", false, blob.LocalConfig{Secret: testSecret[:31], BasePath: "/files"}, true},
		{"no secret", false, blob.LocalConfig{BasePath: "/files"}, true},
		{"empty base path", false, blob.LocalConfig{Secret: testSecret}, true},
		{"root base path", false, blob.LocalConfig{Secret: testSecret, BasePath: "/"}, true},
		{"relative base path", false, blob.LocalConfig{Secret: testSecret, BasePath: "files"}, true},
		{"trailing slash", false, blob.LocalConfig{Secret: testSecret, BasePath: "/files/"}, true},
		{"odd characters", false, blob.LocalConfig{Secret: testSecret, BasePath: "/fi les"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			if !tt.noDir {
				cfg.Dir = filepath.Join(t.TempDir(), "a", "b")
			}
			_, err := blob.NewLocal(cfg)
			if got, want := err != nil, tt.wantErr; got != want {
				t.Fatalf("NewLocal error = %v, want error: %v", err, want)
			}
			if err != nil {
				return
			}
			stat, err := os.Stat(cfg.Dir)
			if err != nil {
				t.Fatalf("stat store dir: %v", err)
			}
			if got, want := stat.Mode().Perm(), fs.FileMode(0o700); got != want {
				t.Errorf("store dir mode = %v, want %v", got, want)
			}
		})
	}
}

func TestLocalPutLeavesPrivateFilesOnly(t *testing.T) {
	t.Parallel()
	local, _, dir := newLocal(t)
	ctx := context.Background()
	for i := range 3 {
		if err := local.Put(ctx, "images/u1/j.png", []byte("v"+strconv.Itoa(i)), "image/png"); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", path)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s mode = %v, want %v", path, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "images", "u1", "j.png"))
	if err != nil {
		t.Fatalf("read object file: %v", err)
	}
	if got, want := string(data), "v2"; got != want {
		t.Errorf("object file holds %q, want %q", got, want)
	}
}

// sign computes the documented signature, so tests can make URLs that
// SignedURL would refuse to make.
func sign(path string, expires int64) string {
	mac := hmac.New(sha256.New, testSecret)
	mac.Write([]byte("GET\n" + path + "\n" + strconv.FormatInt(expires, 10)))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// signedPath returns path?expires=...&sig=... signed with testSecret.
func signedPath(path string, expires int64) string {
	return path + "?" + url.Values{"expires": {strconv.FormatInt(expires, 10)}, "sig": {sign(path, expires)}}.Encode()
}

func TestLocalHandler(t *testing.T) {
	t.Parallel()
	local, clk, dir := newLocal(t)
	ctx := context.Background()
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte("pixels"), 1000)...)
	if err := local.Put(ctx, "images/u1/j1.png", png, "image/png"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if err := local.Put(ctx, "images/u1/j2.png", []byte("other"), "image/png"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	// A file that got into the store directory some other way, without a
	// content type sidecar: its type comes from its extension.
	if err := os.WriteFile(filepath.Join(dir, "images", "u1", "j3.webp"), []byte("webp"), 0o600); err != nil {
		t.Fatalf("write file: %v", err)
	}

	// The handler is the whole server here, so that requests for the base
	// path itself reach it rather than a mux redirect.
	srv := httptest.NewServer(local.Handler())
	t.Cleanup(srv.Close)

	start := clk.Now()
	mustSign := func(key string, ttl time.Duration) string {
		t.Helper()
		u, err := local.SignedURL(ctx, key, ttl)
		if err != nil {
			t.Fatalf("SignedURL(%q): %v", key, err)
		}
		return u
	}
	good := mustSign("images/u1/j1.png", time.Hour)
	other := mustSign("images/u1/j2.png", time.Hour)
	otherQuery := other[strings.Index(other, "?"):]
	parsed, err := url.Parse(good)
	if err != nil {
		t.Fatalf("parse signed URL: %v", err)
	}
	if got, want := parsed.Path, "/files/images/u1/j1.png"; got != want {
		t.Fatalf("signed URL path = %q, want %q", got, want)
	}
	expires, err := strconv.ParseInt(parsed.Query().Get("expires"), 10, 64)
	if err != nil {
		t.Fatalf("expires parameter: %v", err)
	}
	// An hour from start, whose fraction of a second rounds up.
	if got, want := expires, start.Unix()+3601; got != want {
		t.Fatalf("expires = %d, want %d", got, want)
	}
	sig := parsed.Query().Get("sig")
	tampered := sig[:len(sig)-2] + flip(sig[len(sig)-2]) + sig[len(sig)-1:]
	future := start.Add(24 * time.Hour).Unix()

	tests := []struct {
		name       string
		method     string
		url        string
		at         time.Time // the clock during the request; zero means start
		wantStatus int
		wantCode   string // error code, for error answers
		wantBody   []byte // for 200 answers to GET
		wantType   string
		wantCache  string // Cache-Control; empty means any "private, max-age=..."
	}{
		{name: "valid", url: good, wantStatus: 200, wantBody: png, wantType: "image/png", wantCache: "private, max-age=3600"},
		{name: "valid just before expiry", url: good, at: time.Unix(expires, 0).Add(-time.Millisecond), wantStatus: 200, wantBody: png, wantType: "image/png", wantCache: "private, max-age=0"},
		{name: "type from extension", url: mustSign("images/u1/j3.webp", time.Minute), wantStatus: 200, wantBody: []byte("webp"), wantType: "image/webp"},
		{name: "HEAD", method: http.MethodHead, url: good, wantStatus: 200, wantBody: []byte{}, wantType: "image/png"},
		{name: "expired", url: good, at: time.Unix(expires, 0), wantStatus: 403, wantCode: "forbidden"},
		{name: "long expired", url: good, at: start.Add(48 * time.Hour), wantStatus: 403, wantCode: "forbidden"},
		{name: "tampered signature", url: "/files/images/u1/j1.png?expires=" + strconv.FormatInt(expires, 10) + "&sig=" + tampered, wantStatus: 403, wantCode: "forbidden"},
		{name: "signature of another key", url: "/files/images/u1/j1.png" + otherQuery, wantStatus: 403, wantCode: "forbidden"},
		{name: "extended expiry", url: "/files/images/u1/j1.png?expires=" + strconv.FormatInt(expires+3600, 10) + "&sig=" + sig, wantStatus: 403, wantCode: "forbidden"},
		{name: "missing signature", url: "/files/images/u1/j1.png?expires=" + strconv.FormatInt(expires, 10), wantStatus: 403, wantCode: "forbidden"},
		{name: "missing expiry", url: "/files/images/u1/j1.png?sig=" + sig, wantStatus: 403, wantCode: "forbidden"},
		{name: "no parameters", url: "/files/images/u1/j1.png", wantStatus: 403, wantCode: "forbidden"},
		{name: "repeated parameters", url: good + "&sig=" + sig, wantStatus: 403, wantCode: "forbidden"},
		{name: "signature not base64", url: "/files/images/u1/j1.png?expires=" + strconv.FormatInt(expires, 10) + "&sig=%25%25", wantStatus: 403, wantCode: "forbidden"},
		{name: "percent-encoded path", url: "/files/images%2Fu1/j1.png" + good[strings.Index(good, "?"):], wantStatus: 403, wantCode: "forbidden"},
		{name: "path with dot segment", url: signedPath("/files/images/u1/../u1/j1.png", future), wantStatus: 403, wantCode: "forbidden"},
		{name: "missing object", url: mustSign("images/u1/missing.png", time.Minute), wantStatus: 404, wantCode: "not_found"},
		{name: "directory, signed", url: mustSign("images/u1", time.Minute), wantStatus: 404, wantCode: "not_found"},
		{name: "directory, unsigned", url: "/files/images/u1/", wantStatus: 403, wantCode: "forbidden"},
		{name: "base path, unsigned", url: "/files", wantStatus: 403, wantCode: "forbidden"},
		{name: "base path with slash, unsigned", url: "/files/", wantStatus: 403, wantCode: "forbidden"},
		{name: "base path, signed", url: signedPath("/files", future), wantStatus: 403, wantCode: "forbidden"},
		{name: "base path with slash, signed", url: signedPath("/files/", future), wantStatus: 403, wantCode: "forbidden"},
		{name: "sidecar file, signed", url: signedPath("/files/images/u1/.j1.png.type", future), wantStatus: 403, wantCode: "forbidden"},
		{name: "outside base path, signed", url: signedPath("/other/images/u1/j1.png", future), wantStatus: 403, wantCode: "forbidden"},
		{name: "POST", method: http.MethodPost, url: good, wantStatus: 405, wantCode: "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the cases share the clock.
			at := tt.at
			if at.IsZero() {
				at = start
			}
			clk.Set(at)
			defer clk.Set(start)
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			resp := fetch(t, method, srv.URL+tt.url)
			if got, want := resp.status, tt.wantStatus; got != want {
				t.Fatalf("status = %d, want %d; body %q", got, want, resp.body)
			}
			if got, want := resp.header.Get("X-Content-Type-Options"), "nosniff"; got != want {
				t.Errorf("X-Content-Type-Options = %q, want %q", got, want)
			}
			if tt.wantStatus != http.StatusOK {
				checkErrorBody(t, resp, tt.wantCode)
				return
			}
			if !bytes.Equal(resp.body, tt.wantBody) {
				t.Errorf("body has %d bytes, want %d", len(resp.body), len(tt.wantBody))
			}
			if got, want := resp.header.Get("Content-Type"), tt.wantType; got != want {
				t.Errorf("Content-Type = %q, want %q", got, want)
			}
			if tt.wantType == "image/png" {
				if got, want := resp.header.Get("Content-Length"), strconv.Itoa(len(png)); got != want {
					t.Errorf("Content-Length = %q, want %q", got, want)
				}
			}
			cache := resp.header.Get("Cache-Control")
			if !strings.HasPrefix(cache, "private, max-age=") {
				t.Errorf("Cache-Control = %q, want private, max-age=...", cache)
			}
			if tt.wantCache != "" {
				if got, want := cache, tt.wantCache; got != want {
					t.Errorf("Cache-Control = %q, want %q", got, want)
				}
			}
		})
	}
}

// flip returns a different base64url character than c.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// checkErrorBody checks Luna's JSON error shape.
func checkErrorBody(t *testing.T, resp response, wantCode string) {
	t.Helper()
	if got, want := resp.header.Get("Content-Type"), "application/json; charset=utf-8"; got != want {
		t.Errorf("error Content-Type = %q, want %q", got, want)
	}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.body, &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", resp.body, err)
	}
	if got, want := body.Error.Code, wantCode; got != want {
		t.Errorf("error code = %q, want %q", got, want)
	}
	if body.Error.Message == "" {
		t.Errorf("error message is empty")
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "data", "url-secret")
	first, err := blob.LoadOrCreateSecret(path)
	if err != nil {
		t.Fatalf("LoadOrCreateSecret: %v", err)
	}
	if got, want := len(first), 32; got != want {
		t.Fatalf("secret has %d bytes, want %d", got, want)
	}
	stat, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat secret: %v", err)
	}
	if got, want := stat.Mode().Perm(), fs.FileMode(0o600); got != want {
		t.Errorf("secret file mode = %v, want %v", got, want)
	}
	// Later calls, also concurrent ones, read the same secret.
	var wg sync.WaitGroup
	results := make([][]byte, 8)
	errs := make([]error, len(results))
	for i := range results {
		wg.Go(func() { results[i], errs[i] = blob.LoadOrCreateSecret(path) })
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("LoadOrCreateSecret again: %v", errs[i])
		}
		if !bytes.Equal(results[i], first) {
			t.Fatalf("LoadOrCreateSecret returned another secret on call %d", i+2)
		}
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatalf("read secret dir: %v", err)
	}
	if got, want := len(entries), 1; got != want {
		t.Errorf("secret dir holds %d entries, want %d (temporary files left?)", got, want)
	}
}

func TestLoadOrCreateSecretConcurrentCreate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "url-secret")
	var wg sync.WaitGroup
	results := make([][]byte, 8)
	errs := make([]error, len(results))
	for i := range results {
		wg.Go(func() { results[i], errs[i] = blob.LoadOrCreateSecret(path) })
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("LoadOrCreateSecret: %v", errs[i])
		}
		if !bytes.Equal(results[i], results[0]) {
			t.Fatalf("concurrent creators got different secrets")
		}
	}
}

func TestLoadOrCreateSecretRefusesShortFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "url-secret")
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatalf("write: %v", err)
	}
	if _, err := blob.LoadOrCreateSecret(path); err == nil {
		t.Fatalf("LoadOrCreateSecret accepted a 5-byte secret")
	}
}

func TestLocalSecretSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	newStore := func() *blob.Local {
		secret, err := blob.LoadOrCreateSecret(filepath.Join(dir, "url-secret"))
		if err != nil {
			t.Fatalf("LoadOrCreateSecret: %v", err)
		}
		local, err := blob.NewLocal(blob.LocalConfig{Dir: filepath.Join(dir, "blobs"), Secret: secret, BasePath: "/files"})
		if err != nil {
			t.Fatalf("NewLocal: %v", err)
		}
		return local
	}
	ctx := context.Background()
	before := newStore()
	if err := before.Put(ctx, "images/u1/j1.png", []byte("png"), "image/png"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	signed, err := before.SignedURL(ctx, "images/u1/j1.png", time.Minute)
	if err != nil {
		t.Fatalf("SignedURL: %v", err)
	}
	srv := httptest.NewServer(newStore().Handler())
	t.Cleanup(srv.Close)
	resp := fetch(t, http.MethodGet, srv.URL+signed)
	if got, want := resp.status, http.StatusOK; got != want {
		t.Fatalf("status after restart = %d, want %d", got, want)
	}
	if got, want := string(resp.body), "png"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
}

func TestLocalGetCanceled(t *testing.T) {
	t.Parallel()
	local, _, _ := newLocal(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := local.Put(ctx, "a.png", []byte("x"), ""); !errors.Is(err, context.Canceled) {
		t.Errorf("Put error = %v, want context.Canceled", err)
	}
	if _, _, err := local.Get(ctx, "a.png"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get error = %v, want context.Canceled", err)
	}
}
