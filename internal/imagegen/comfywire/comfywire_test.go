package comfywire_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"

	"luna/internal/imagegen/comfywire"
)

func TestParseView(t *testing.T) {
	t.Parallel()
	tests := []struct {
		query      string
		wantStatus int
		wantRef    comfywire.ImageRef
	}{
		{"filename=a.png", 0, comfywire.ImageRef{Filename: "a.png", Type: "output"}},
		{"filename=a.png&type=temp&subfolder=x", 0, comfywire.ImageRef{Filename: "a.png", Subfolder: "x", Type: "temp"}},
		{"filename=a.png&type=secret", http.StatusBadRequest, comfywire.ImageRef{}},
		{"type=output", http.StatusNotFound, comfywire.ImageRef{}},
		{"filename=", http.StatusBadRequest, comfywire.ImageRef{}},
		{"filename=/etc/passwd", http.StatusBadRequest, comfywire.ImageRef{}},
		{"filename=../a.png", http.StatusBadRequest, comfywire.ImageRef{}},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		ref, status := comfywire.ParseView(q)
		if status != tt.wantStatus || (status == 0 && ref != tt.wantRef) {
			t.Errorf("ParseView(%q) = %+v, %d; want %+v, %d", tt.query, ref, status, tt.wantRef, tt.wantStatus)
		}
	}
}

func TestSortNodeIDs(t *testing.T) {
	t.Parallel()
	ids := []string{"b", "10", "9", "a", "31"}
	comfywire.SortNodeIDs(ids)
	if want := []string{"9", "10", "31", "a", "b"}; !slices.Equal(ids, want) {
		t.Fatalf("sorted %v, want %v", ids, want)
	}
}

// TestWriteError: ComfyUI's 400 shape, with empty objects (not null) where
// nothing was given.
func TestWriteError(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	comfywire.WriteError(rec, comfywire.Error{Type: "prompt_no_outputs", Message: "Prompt has no outputs"},
		map[string]comfywire.NodeError{"31": {Errors: []comfywire.Error{{Type: "t", Message: "m"}}, DependentOutputs: []string{"9"}, ClassType: "KSampler"}})
	if rec.Code != http.StatusBadRequest || rec.Header().Get("Content-Type") != comfywire.ContentType {
		t.Fatalf("status %d, type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	want := `{"error":{"type":"prompt_no_outputs","message":"Prompt has no outputs","details":"","extra_info":{}},` +
		`"node_errors":{"31":{"errors":[{"type":"t","message":"m","details":"","extra_info":{}}],"dependent_outputs":["9"],"class_type":"KSampler"}}}` + "\n"
	if got := rec.Body.String(); got != want {
		t.Fatalf("body\n%s\nwant\n%s", got, want)
	}
	rec = httptest.NewRecorder()
	comfywire.WritePromptIDExists(rec)
	if rec.Code != http.StatusConflict || rec.Body.String() != `{"error": "prompt_id already exists"}` {
		t.Fatalf("409: %d %s", rec.Code, rec.Body)
	}
}

// TestEntries: the history entries carry the prompt tuple, the outputs and
// the status messages a client reads.
func TestEntries(t *testing.T) {
	t.Parallel()
	item := comfywire.QueueItem(3, "p", json.RawMessage(`{"9":{"class_type":"SaveImage"}}`), map[string]any{"client_id": "luna"}, []string{"9"})
	decode := func(v any) map[string]any {
		b, _ := json.Marshal(v)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return m
	}
	lastKind := func(e map[string]any) string {
		msgs := e["status"].(map[string]any)["messages"].([]any)
		return msgs[len(msgs)-1].([]any)[0].(string)
	}
	ok := decode(comfywire.SuccessEntry(item, "p", map[string][]comfywire.ImageRef{"9": {{Filename: "x.png", Type: "output"}}}, 1, 2))
	if ok["status"].(map[string]any)["status_str"] != "success" || lastKind(ok) != "execution_success" ||
		ok["outputs"].(map[string]any)["9"].(map[string]any)["images"].([]any)[0].(map[string]any)["filename"] != "x.png" ||
		ok["prompt"].([]any)[1] != "p" {
		t.Errorf("success entry: %v", ok)
	}
	node := comfywire.FailedNode{ID: "31", ClassType: "KSampler", Executed: []string{"30"}}
	failed := decode(comfywire.ErrorEntry(item, "p", 1, node, "out of memory"))
	if failed["status"].(map[string]any)["status_str"] != "error" || lastKind(failed) != "execution_error" {
		t.Errorf("error entry: %v", failed)
	}
	stopped := decode(comfywire.InterruptedEntry(item, "p", 1, node))
	if stopped["status"].(map[string]any)["completed"] != false || lastKind(stopped) != "execution_interrupted" {
		t.Errorf("interrupted entry: %v", stopped)
	}
}
