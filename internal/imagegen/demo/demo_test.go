package demo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"luna/internal/imagegen"
	"luna/internal/imagegen/demo"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// mountPrefix is where the tests mount the demo, to show it is mount-agnostic.
const mountPrefix = "/demo/comfyui"

// startDemo serves the demo handler under mountPrefix and returns its base URL and client.
func startDemo(t *testing.T) (string, *http.Client) {
	t.Helper()
	return startDemoWith(t, demo.Options{RenderDelay: 20 * time.Millisecond})
}

// startDemoWith is startDemo with other options.
func startDemoWith(t *testing.T, opts demo.Options) (string, *http.Client) {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	mux := http.NewServeMux()
	h := demo.NewHandler(opts)
	mux.Handle(mountPrefix+"/", http.StripPrefix(mountPrefix, h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + mountPrefix, srv.Client()
}

// newBackend returns the real ComfyUI backend on the demo.
func newBackend(t *testing.T, baseURL string, client *http.Client, wf *imagegen.Workflow) *imagegen.ComfyUI {
	t.Helper()
	c, err := imagegen.NewComfyUI(imagegen.ComfyUIConfig{
		BaseURL:      baseURL,
		Workflow:     wf,
		PollInterval: 5 * time.Millisecond,
		HTTPClient:   client,
		Logger:       slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDemoThroughComfyUIBackend(t *testing.T) {
	t.Parallel()
	baseURL, client := startDemo(t)
	c := newBackend(t, baseURL, client, nil)
	run := func(prompt string, seed int64, w, h int) imagegen.Result {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		req := imagegen.Request{PromptID: uuid.NewString(), Prompt: prompt, Width: w, Height: h, Seed: seed}
		var recorded string
		res, err := c.Run(ctx, req, "", func(_ context.Context, id string) error {
			recorded = id
			return nil
		})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if recorded != req.PromptID {
			t.Errorf("recorded %q, want %q", recorded, req.PromptID)
		}
		return res
	}

	const prompt = "a \"cat\" \\ {x} \\n 日本 🙂 sitting on a very long wooden fence at dusk"
	first := run(prompt, 42, 512, 512)
	img, err := png.Decode(bytes.NewReader(first.Data))
	if err != nil {
		t.Fatalf("decode PNG: %v", err)
	}
	if got, want := img.Bounds().Dx(), 512; got != want {
		t.Errorf("decoded width = %d, want %d", got, want)
	}
	if got, want := img.Bounds().Dy(), 512; got != want {
		t.Errorf("decoded height = %d, want %d", got, want)
	}
	if got, want := first.ContentType, "image/png"; got != want {
		t.Errorf("content type = %q, want %q", got, want)
	}
	if got, want := [2]int{first.Width, first.Height}, [2]int{512, 512}; got != want {
		t.Errorf("result size = %v, want %v", got, want)
	}

	if again := run(prompt, 42, 512, 512); !bytes.Equal(again.Data, first.Data) {
		t.Errorf("same prompt and seed gave different bytes")
	}
	if other := run(prompt, 43, 512, 512); bytes.Equal(other.Data, first.Data) {
		t.Errorf("another seed gave the same bytes")
	}
	if other := run("a dog", 42, 512, 512); bytes.Equal(other.Data, first.Data) {
		t.Errorf("another prompt gave the same bytes")
	}
	if tall := run(prompt, 42, 768, 1024); tall.Width != 768 || tall.Height != 1024 {
		t.Errorf("768x1024 request gave %dx%d", tall.Width, tall.Height)
	}
}

func TestDemoResumeThroughComfyUIBackend(t *testing.T) {
	t.Parallel()
	baseURL, client := startDemo(t)
	c := newBackend(t, baseURL, client, nil)
	req := imagegen.Request{PromptID: uuid.NewString(), Prompt: "resume me", Width: 512, Height: 512, Seed: 1}

	res, err := c.Run(t.Context(), req, req.PromptID, nil)
	if err != nil {
		t.Fatalf("Run of a never-received prompt: %v", err)
	}
	again, err := c.Run(t.Context(), req, req.PromptID, nil)
	if err != nil {
		t.Fatalf("Run of a finished prompt: %v", err)
	}
	if !bytes.Equal(res.Data, again.Data) {
		t.Errorf("following a finished prompt gave other bytes")
	}
}

func TestDemoRejectsWorkflowWithoutPromptNode(t *testing.T) {
	t.Parallel()
	baseURL, client := startDemo(t)
	// The operator's workflow puts the prompt in node 60; the demo reads node 6.
	wf, err := imagegen.ParseWorkflow([]byte(`{
		"60": {"class_type": "CLIPTextEncode", "inputs": {"text": ""}},
		"27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
		"31": {"class_type": "KSampler", "inputs": {"seed": 0, "positive": ["60", 0]}},
		"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["31", 0]}}
	}`), imagegen.Mapping{
		Prompt: imagegen.InputRef{Node: "60", Input: "text"},
		Width:  imagegen.InputRef{Node: "27", Input: "width"},
		Height: imagegen.InputRef{Node: "27", Input: "height"},
		Seed:   imagegen.InputRef{Node: "31", Input: "seed"},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := newBackend(t, baseURL, client, wf)
	req := imagegen.Request{PromptID: uuid.NewString(), Prompt: "p", Width: 512, Height: 512}

	_, err = c.Run(t.Context(), req, "", nil)
	if got, want := imagegen.KindOf(err), imagegen.KindValidation; got != want {
		t.Fatalf("error kind = %q, want %q (error: %v)", got, want, err)
	}
	if !strings.Contains(err.Error(), "node 6") {
		t.Errorf("error %q does not name node 6", err)
	}
}

func TestDemoPromptValidation(t *testing.T) {
	t.Parallel()
	template := func(edit func(g map[string]any)) map[string]any {
		g, err := imagegen.DefaultWorkflow().Fill(imagegen.Request{Prompt: "p", Width: 512, Height: 512})
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			edit(g)
		}
		return g
	}
	inputs := func(g map[string]any, node string) map[string]any {
		return g[node].(map[string]any)["inputs"].(map[string]any)
	}
	tests := []struct {
		name          string
		body          any
		wantStatus    int
		wantType      string
		wantNodeError string
	}{
		{name: "valid", body: map[string]any{"prompt": template(nil), "prompt_id": uuid.NewString()}, wantStatus: http.StatusOK},
		{name: "valid without prompt_id", body: map[string]any{"prompt": template(nil)}, wantStatus: http.StatusOK},
		{name: "size and seed missing use defaults", body: map[string]any{"prompt": template(func(g map[string]any) {
			delete(g, "27")
			delete(inputs(g, "31"), "seed")
		})}, wantStatus: http.StatusOK},
		{name: "no prompt", body: map[string]any{"client_id": "x"}, wantStatus: http.StatusBadRequest, wantType: "no_prompt"},
		{name: "missing node 6", body: map[string]any{"prompt": template(func(g map[string]any) { delete(g, "6") })},
			wantStatus: http.StatusBadRequest, wantType: "prompt_outputs_failed_validation", wantNodeError: "6"},
		{name: "prompt not a string", body: map[string]any{"prompt": template(func(g map[string]any) { inputs(g, "6")["text"] = 5 })},
			wantStatus: http.StatusBadRequest, wantType: "prompt_outputs_failed_validation", wantNodeError: "6"},
		{name: "width too big", body: map[string]any{"prompt": template(func(g map[string]any) { inputs(g, "27")["width"] = 100000 })},
			wantStatus: http.StatusBadRequest, wantType: "prompt_outputs_failed_validation", wantNodeError: "27"},
		{name: "negative seed", body: map[string]any{"prompt": template(func(g map[string]any) { inputs(g, "31")["seed"] = -1 })},
			wantStatus: http.StatusBadRequest, wantType: "prompt_outputs_failed_validation", wantNodeError: "31"},
		{name: "no output node", body: map[string]any{"prompt": template(func(g map[string]any) { delete(g, "9") })},
			wantStatus: http.StatusBadRequest, wantType: "prompt_no_outputs"},
		{name: "node without class_type", body: map[string]any{"prompt": template(func(g map[string]any) { delete(g["8"].(map[string]any), "class_type") })},
			wantStatus: http.StatusBadRequest, wantType: "invalid_prompt"},
		{name: "prompt_id not a UUID", body: map[string]any{"prompt": template(nil), "prompt_id": "job-1"},
			wantStatus: http.StatusBadRequest, wantType: "invalid_prompt_id"},
		{name: "not JSON", body: "{", wantStatus: http.StatusBadRequest, wantType: "invalid_prompt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			baseURL, client := startDemo(t)
			var body []byte
			if s, ok := tt.body.(string); ok {
				body = []byte(s)
			} else {
				var err error
				if body, err = json.Marshal(tt.body); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := client.Post(baseURL+"/prompt", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if got, want := resp.StatusCode, tt.wantStatus; got != want {
				t.Fatalf("status = %d, want %d", got, want)
			}
			var ans struct {
				PromptID   string `json:"prompt_id"`
				Error      struct{ Type, Message string }
				NodeErrors map[string]struct {
					Errors    []struct{ Type, Message, Details string }
					ClassType string `json:"class_type"`
				} `json:"node_errors"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
				t.Fatalf("decode answer: %v", err)
			}
			if ans.NodeErrors == nil {
				t.Errorf("answer has no node_errors object")
			}
			if tt.wantStatus == http.StatusOK {
				if _, err := uuid.Parse(ans.PromptID); err != nil {
					t.Errorf("prompt_id %q: %v", ans.PromptID, err)
				}
				return
			}
			if got, want := ans.Error.Type, tt.wantType; got != want {
				t.Errorf("error type = %q, want %q", got, want)
			}
			if tt.wantNodeError != "" {
				ne, ok := ans.NodeErrors[tt.wantNodeError]
				if !ok || len(ne.Errors) == 0 {
					t.Errorf("node_errors = %+v, want an entry for node %s", ans.NodeErrors, tt.wantNodeError)
				}
			}
		})
	}
}

// clock is a manual clock for demo.Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

// Now returns the clock's time.
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// advance moves the clock forward.
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestDemoEndpoints(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	baseURL, client := startDemoWith(t, demo.Options{Now: clk.Now}) // default RenderDelay, 1.5s
	get := func(path string) (int, []byte) {
		t.Helper()
		resp, err := client.Get(baseURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}

	status, body := get("/system_stats")
	if status != http.StatusOK || !strings.Contains(string(body), `"comfyui_version":"`+demo.Version+`"`) {
		t.Errorf("GET /system_stats = %d %s", status, body)
	}
	status, body = get("/queue")
	if status != http.StatusOK || !strings.Contains(string(body), `"queue_running":[]`) || !strings.Contains(string(body), `"queue_pending":[]`) {
		t.Errorf("GET /queue = %d %s", status, body)
	}
	status, body = get("/history/" + uuid.NewString())
	if status != http.StatusOK || strings.TrimSpace(string(body)) != "{}" {
		t.Errorf("GET /history/{unknown} = %d %s, want 200 {}", status, body)
	}
	// Luna interrupts a prompt it gives up on; the demo has nothing to stop.
	for _, path := range []string{"/interrupt", "/queue"} {
		resp, err := client.Post(baseURL+path, "application/json", strings.NewReader(`{"prompt_id": "`+uuid.NewString()+`", "delete": []}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("POST %s = %d, want 200", path, resp.StatusCode)
		}
	}
	status, body = get("/view?filename=nothing.png&subfolder=&type=output")
	if status != http.StatusNotFound || len(body) != 0 {
		t.Errorf("GET /view of an unknown file = %d %q, want 404 with an empty body", status, body)
	}
	status, _ = get("/view?filename=../etc/passwd&type=output")
	if got, want := status, http.StatusBadRequest; got != want {
		t.Errorf("GET /view with .. = %d, want %d", got, want)
	}
	status, _ = get("/view?filename=a.png&type=secret")
	if got, want := status, http.StatusBadRequest; got != want {
		t.Errorf("GET /view with an unknown type = %d, want %d", got, want)
	}

	// A queued prompt is running until RenderDelay passes, then in the history.
	g, err := imagegen.DefaultWorkflow().Fill(imagegen.Request{Prompt: "queued", Width: 512, Height: 512})
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	b, err := json.Marshal(map[string]any{"prompt": g, "prompt_id": id, "client_id": "c"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Post(baseURL+"/api/prompt", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Fatalf("POST /api/prompt = %d, want %d", got, want)
	}
	if _, body = get("/queue"); !strings.Contains(string(body), id) {
		t.Errorf("GET /queue right after submitting = %s, want it to list %s", body, id)
	}
	clk.advance(1400 * time.Millisecond)
	if _, body = get("/history/" + id); strings.TrimSpace(string(body)) != "{}" {
		t.Errorf("GET /history/{id} before RenderDelay = %s, want {}", body)
	}
	clk.advance(100 * time.Millisecond)
	var entry map[string]struct {
		Outputs map[string]struct {
			Images []struct{ Filename, Subfolder, Type string }
		}
		Status struct {
			StatusStr string `json:"status_str"`
			Completed bool
		}
	}
	_, body = get("/history/" + id)
	if err := json.Unmarshal(body, &entry); err != nil {
		t.Fatalf("decode history: %v", err)
	}
	e, ok := entry[id]
	if !ok {
		t.Fatalf("GET /history/{id} after RenderDelay = %s, want the entry", body)
	}
	if got, want := e.Status.StatusStr, "success"; got != want || !e.Status.Completed {
		t.Errorf("status = %+v, want success and completed", e.Status)
	}
	imgs := e.Outputs["9"].Images
	if len(imgs) != 1 || imgs[0].Type != "output" || !strings.HasSuffix(imgs[0].Filename, "_.png") {
		t.Fatalf("outputs = %+v, want one output image of node 9", e.Outputs)
	}
	if _, body = get("/history"); !strings.Contains(string(body), id) {
		t.Errorf("GET /history does not list %s", id)
	}
	if _, body = get("/queue"); strings.Contains(string(body), id) {
		t.Errorf("GET /queue lists the finished prompt: %s", body)
	}
	status, body = get("/view?filename=" + imgs[0].Filename + "&subfolder=&type=output")
	if status != http.StatusOK {
		t.Fatalf("GET /view = %d", status)
	}
	if _, err := png.Decode(bytes.NewReader(body)); err != nil {
		t.Errorf("GET /view is not a PNG: %v", err)
	}
}

func TestDemoKeepsTheLast200Prompts(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	baseURL, client := startDemoWith(t, demo.Options{Now: clk.Now, RenderDelay: time.Second})
	g, err := imagegen.DefaultWorkflow().Fill(imagegen.Request{Prompt: "many", Width: 512, Height: 512})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 201 {
		id := uuid.NewString()
		ids = append(ids, id)
		b, err := json.Marshal(map[string]any{"prompt": g, "prompt_id": id})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Post(baseURL+"/prompt", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /prompt = %d", resp.StatusCode)
		}
	}
	clk.advance(time.Second)
	historyHas := func(id string) bool {
		t.Helper()
		resp, err := client.Get(baseURL + "/history/" + id)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]json.RawMessage
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		_, ok := m[id]
		return ok
	}
	if historyHas(ids[0]) {
		t.Errorf("the oldest of 201 prompts is still kept")
	}
	if !historyHas(ids[1]) || !historyHas(ids[200]) {
		t.Errorf("the newest 200 prompts are not all kept")
	}
}
