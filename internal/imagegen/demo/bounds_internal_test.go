package demo

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"luna/internal/imagegen"
)

// queue posts a default-workflow prompt of the given size and returns the
// answer's status and the file name the demo will serve.
func queue(t *testing.T, h *handler, side int) (int, string) {
	t.Helper()
	g, err := imagegen.DefaultWorkflow().Fill(imagegen.Request{Prompt: "bounded", Width: 512, Height: 512})
	if err != nil {
		t.Fatal(err)
	}
	size := g["27"].(map[string]any)["inputs"].(map[string]any)
	size["width"], size["height"] = side, side
	body, _ := json.Marshal(map[string]any{"prompt": g})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/prompt", strings.NewReader(string(body))))
	if rec.Code != http.StatusOK {
		return rec.Code, ""
	}
	var ans struct {
		PromptID string `json:"prompt_id"`
	}
	json.Unmarshal(rec.Body.Bytes(), &ans) // checked through the job below
	h.mu.Lock()
	defer h.mu.Unlock()
	return rec.Code, h.jobs[ans.PromptID].filename
}

// Rendering is bounded: no size beyond MaxSide, and no more than
// MaxConcurrentRenders images drawn at once.
func TestRenderingIsBounded(t *testing.T) {
	t.Parallel()
	h := NewHandler(Options{RenderDelay: -1, MaxSide: 1024, MaxConcurrentRenders: 1}).(*handler)
	if code, _ := queue(t, h, 2048); code != http.StatusBadRequest {
		t.Fatalf("2048² with MaxSide 1024: status %d, want 400", code)
	}
	code, file := queue(t, h, 64)
	if code != http.StatusOK {
		t.Fatalf("64²: status %d", code)
	}

	view := func(ctx context.Context) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, "GET", "/view?filename="+file, nil))
		return rec.Code
	}
	h.renders <- struct{}{} // another render holds the only slot
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if got := view(ctx); got != http.StatusServiceUnavailable {
		t.Fatalf("view while the slot is taken: %d, want 503 after waiting", got)
	}
	<-h.renders
	if got := view(t.Context()); got != http.StatusOK {
		t.Fatalf("view with a free slot: %d", got)
	}
}
