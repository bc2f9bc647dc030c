package imagegen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/jpeg"
	_ "image/png" // image.DecodeConfig of expected PNG images
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"
	_ "golang.org/x/image/webp" // image.DecodeConfig of expected WebP images

	"luna/internal/imagegen"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Both backends implement Backend.
var (
	_ imagegen.Backend = (*imagegen.ComfyUI)(nil)
	_ imagegen.Backend = (*imagegen.Runpod)(nil)
)

// testPoll is the poll interval of every test backend.
const testPoll = 5 * time.Millisecond

// testLogger logs to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testRequest is a valid request with a fresh prompt id.
func testRequest() imagegen.Request {
	return imagegen.Request{PromptID: uuid.NewString(), Prompt: "a red fox in the snow", Width: 512, Height: 512, Seed: 42}
}

// recorder records the upstream ids a Run hands to recordID.
type recorder struct {
	mu  sync.Mutex
	ids []string
	// check, if set, runs inside recordID (e.g. to assert nothing was submitted yet).
	check func(id string)
	err   error
}

// record is the recordID callback.
func (r *recorder) record(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, id)
	if r.check != nil {
		r.check(id)
	}
	return r.err
}

// recorded returns the ids recorded so far.
func (r *recorder) recorded() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// mustNotRecord is a recordID that fails the test when called.
func mustNotRecord(t *testing.T) func(context.Context, string) error {
	return func(ctx context.Context, id string) error {
		t.Errorf("recordID(%q) called on resume", id)
		return nil
	}
}

// wantKind checks that err is an *imagegen.Error of kind want with a usable message.
func wantKind(t *testing.T, err error, want imagegen.ErrorKind) *imagegen.Error {
	t.Helper()
	var e *imagegen.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want an *imagegen.Error of kind %q", err, err, want)
	}
	if got := e.Kind; got != want {
		t.Fatalf("error kind = %q, want %q (error: %v)", got, want, err)
	}
	if got := imagegen.KindOf(err); got != want {
		t.Errorf("KindOf = %q, want %q", got, want)
	}
	if e.Message == "" || len([]rune(e.Message)) > 300 || strings.ContainsAny(e.Message, "\n\r") {
		t.Errorf("message %q: want one non-empty line of at most 300 characters", e.Message)
	}
	return e
}

// checkResult checks res against the expected image bytes.
func checkResult(t *testing.T, res imagegen.Result, wantData []byte, wantType string) {
	t.Helper()
	if !bytes.Equal(res.Data, wantData) {
		t.Errorf("image data differs from the served image (%d bytes, want %d)", len(res.Data), len(wantData))
	}
	if got, want := res.ContentType, wantType; got != want {
		t.Errorf("content type = %q, want %q", got, want)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(wantData))
	if err != nil {
		t.Fatalf("decode expected image: %v", err)
	}
	if got, want := res.Width, cfg.Width; got != want {
		t.Errorf("width = %d, want %d", got, want)
	}
	if got, want := res.Height, cfg.Height; got != want {
		t.Errorf("height = %d, want %d", got, want)
	}
}

// readTestFile reads a file under testdata or the package directory.
func readTestFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeJSON decodes b keeping numbers as json.Number, so seeds above 2^53 compare exactly.
func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode JSON: %v", err)
	}
	return v
}

// smallJPEG returns a real 10×7 JPEG.
func smallJPEG(t *testing.T) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 10, 7))
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
