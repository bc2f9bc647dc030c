package imagegen_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"luna/internal/imagegen"
	"luna/internal/imagegen/imagegentest"
)

// newComfyUI returns a backend on the fake; edit adjusts the config.
func newComfyUI(t *testing.T, f *imagegentest.ComfyUIFake, edit func(*imagegen.ComfyUIConfig)) *imagegen.ComfyUI {
	t.Helper()
	cfg := imagegen.ComfyUIConfig{
		BaseURL:      f.URL,
		ClientID:     "luna-test",
		PollInterval: testPoll,
		HTTPClient:   f.Client(),
		Logger:       testLogger(t),
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := imagegen.NewComfyUI(cfg)
	if err != nil {
		t.Fatalf("NewComfyUI: %v", err)
	}
	return c
}

func TestComfyUIRunSucceeds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		setup    func(t *testing.T, f *imagegentest.ComfyUIFake)
		edit     func(f *imagegentest.ComfyUIFake, cfg *imagegen.ComfyUIConfig)
		wantType string
	}{
		{name: "PNG", wantType: "image/png"},
		{
			name:     "slow prompt",
			setup:    func(t *testing.T, f *imagegentest.ComfyUIFake) { f.SetFinishAfterPolls(6) },
			wantType: "image/png",
		},
		{
			name: "auth header for a proxy",
			setup: func(t *testing.T, f *imagegentest.ComfyUIFake) {
				f.RequireHeader("Authorization", "Bearer proxy-secret")
			},
			edit: func(f *imagegentest.ComfyUIFake, cfg *imagegen.ComfyUIConfig) {
				cfg.Headers = map[string]string{"Authorization": "Bearer proxy-secret"}
			},
			wantType: "image/png",
		},
		{
			name:     "/api prefix",
			edit:     func(f *imagegentest.ComfyUIFake, cfg *imagegen.ComfyUIConfig) { cfg.BaseURL = f.URL + "/api/" },
			wantType: "image/png",
		},
		{
			name:     "JPEG",
			setup:    func(t *testing.T, f *imagegentest.ComfyUIFake) { f.SetImage(smallJPEG(t)) },
			wantType: "image/jpeg",
		},
		{
			name:     "WebP",
			setup:    func(t *testing.T, f *imagegentest.ComfyUIFake) { f.SetImage(readTestFile(t, "testdata/gopher.webp")) },
			wantType: "image/webp",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := imagegentest.NewComfyUI(t)
			if tt.setup != nil {
				tt.setup(t, f)
			}
			c := newComfyUI(t, f, func(cfg *imagegen.ComfyUIConfig) {
				if tt.edit != nil {
					tt.edit(f, cfg)
				}
			})
			req := testRequest()
			rec := &recorder{check: func(id string) {
				if got := f.SubmitCount(id); got != 0 {
					t.Errorf("recordID called after %d submissions, want before submitting", got)
				}
			}}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			res, err := c.Run(ctx, req, "", rec.record)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkResult(t, res, f.Image(), tt.wantType)
			if got, want := rec.recorded(), []string{req.PromptID}; !slices.Equal(got, want) {
				t.Errorf("recorded ids = %q, want %q", got, want)
			}
			if got, want := f.SubmitCount(req.PromptID), 1; got != want {
				t.Errorf("submissions = %d, want %d", got, want)
			}
			if got := f.Unauthorized(); got != 0 {
				t.Errorf("%d requests lacked the auth header", got)
			}
		})
	}
}

func TestComfyUISubmitsPromptAsData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		prompt string
		width  int
		height int
		seed   int64
	}{
		{"plain", "a red fox in the snow", 512, 512, 42},
		{"quotes, backslashes, braces, newlines, non-ASCII", "a \"cat\" \\ {x} \\n\n日本 🙂", 1024, 768, 0},
		{"JSON and HTML look-alikes", `"}, "9": {"class_type": "Evil"}, "x": {"` + "<b>&amp;</b>\t\u0000", 768, 1024, 1},
		{"seed above 2^53", "seed", 512, 768, 1<<62 + 1},
	}
	template := decodeJSON(t, readTestFile(t, "workflows/flux-schnell-api.json")).(map[string]any)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := imagegentest.NewComfyUI(t)
			c := newComfyUI(t, f, nil)
			req := imagegen.Request{PromptID: uuid.NewString(), Prompt: tt.prompt, Width: tt.width, Height: tt.height, Seed: tt.seed}
			if _, err := c.Run(t.Context(), req, "", nil); err != nil {
				t.Fatalf("Run: %v", err)
			}
			subs := f.Submissions()
			if got, want := len(subs), 1; got != want {
				t.Fatalf("submissions = %d, want %d", got, want)
			}
			body := decodeJSON(t, subs[0].Body).(map[string]any)
			if got, want := body["prompt_id"], req.PromptID; got != want {
				t.Errorf("prompt_id = %v, want %v", got, want)
			}
			if got, want := body["client_id"], "luna-test"; got != want {
				t.Errorf("client_id = %v, want %v", got, want)
			}
			graph := body["prompt"].(map[string]any)
			if got, want := input(graph, "6", "text"), any(tt.prompt); got != want {
				t.Errorf("6.inputs.text = %q, want %q", got, want)
			}
			want := decodeJSON(t, readTestFile(t, "workflows/flux-schnell-api.json")).(map[string]any)
			setInput(want, "6", "text", tt.prompt)
			setInput(want, "27", "width", json.Number(strconv.Itoa(tt.width)))
			setInput(want, "27", "height", json.Number(strconv.Itoa(tt.height)))
			setInput(want, "31", "seed", json.Number(strconv.FormatInt(tt.seed, 10)))
			setInput(want, "31", "steps", json.Number("4"))
			if !reflect.DeepEqual(graph, want) {
				got, _ := json.Marshal(graph)
				wantJSON, _ := json.Marshal(want)
				t.Errorf("submitted workflow differs from the template beyond the mapped inputs:\n got %s\nwant %s", got, wantJSON)
			}
			if reflect.DeepEqual(template, want) {
				t.Errorf("test expectation equals the untouched template")
			}
		})
	}
}

func TestComfyUIRunFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		setup       func(t *testing.T, f *imagegentest.ComfyUIFake)
		request     func(req *imagegen.Request)
		budget      time.Duration
		wantKind    imagegen.ErrorKind
		wantMessage string
		check       func(t *testing.T, f *imagegentest.ComfyUIFake, req imagegen.Request, rec *recorder, err error)
	}{
		{
			name:        "node_errors on submit",
			setup:       func(t *testing.T, f *imagegentest.ComfyUIFake) { f.RejectSubmissions(true) },
			wantKind:    imagegen.KindValidation,
			wantMessage: "ckpt_name: 'flux1-schnell-fp8.safetensors' not in []",
			check: func(t *testing.T, f *imagegentest.ComfyUIFake, req imagegen.Request, rec *recorder, err error) {
				if got, want := f.SubmitCount(req.PromptID), 1; got != want {
					t.Errorf("submissions = %d, want %d", got, want)
				}
				if got := f.HistoryPolls() + f.QueueReads(); got != 0 {
					t.Errorf("%d status requests after a validation error, want none", got)
				}
			},
		},
		{
			name: "execution error",
			setup: func(t *testing.T, f *imagegentest.ComfyUIFake) {
				f.FailExecution("Allocation on device 0 would exceed allowed memory")
			},
			wantKind:    imagegen.KindFailed,
			wantMessage: "Image generation failed in node 31 (KSampler): Allocation on device 0 would exceed allowed memory",
		},
		{
			name:        "never finishes",
			setup:       func(t *testing.T, f *imagegentest.ComfyUIFake) { f.SetNeverFinish(true) },
			budget:      300 * time.Millisecond,
			wantKind:    imagegen.KindTimeout,
			wantMessage: "not ready in time",
			check: func(t *testing.T, f *imagegentest.ComfyUIFake, req imagegen.Request, rec *recorder, err error) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
				}
				if got, want := f.QueueDeletes(), []string{req.PromptID}; !slices.Equal(got, want) {
					t.Errorf("queue deletes = %q, want %q", got, want)
				}
				if got, want := f.Interrupts(), []string{req.PromptID}; !slices.Equal(got, want) {
					t.Errorf("interrupts = %q, want %q", got, want)
				}
			},
		},
		{
			name:        "undecodable image",
			setup:       func(t *testing.T, f *imagegentest.ComfyUIFake) { f.SetImage([]byte("\x89PNG\r\n\x1a\nnot really")) },
			wantKind:    imagegen.KindInvalidOutput,
			wantMessage: "cannot be decoded",
		},
		{
			name:        "not an image",
			setup:       func(t *testing.T, f *imagegentest.ComfyUIFake) { f.SetImage([]byte("<html>oops</html>")) },
			wantKind:    imagegen.KindInvalidOutput,
			wantMessage: "not a PNG, JPEG or WebP",
		},
		{
			name: "proxy refuses credentials",
			setup: func(t *testing.T, f *imagegentest.ComfyUIFake) {
				f.RequireHeader("Authorization", "Bearer proxy-secret")
			},
			wantKind:    imagegen.KindUnavailable,
			wantMessage: "HTTP 401",
		},
		{
			name:        "unsupported size",
			request:     func(req *imagegen.Request) { req.Width = 500 },
			wantKind:    imagegen.KindValidation,
			wantMessage: "512, 768 or 1024",
			check: func(t *testing.T, f *imagegentest.ComfyUIFake, req imagegen.Request, rec *recorder, err error) {
				if got := f.Requests(); got != 0 {
					t.Errorf("%d requests for an invalid request, want none", got)
				}
				if got := rec.recorded(); len(got) != 0 {
					t.Errorf("recorded %q for an invalid request", got)
				}
			},
		},
		{
			name:        "prompt id not a lowercase UUID",
			request:     func(req *imagegen.Request) { req.PromptID = strings.ToUpper(uuid.NewString()) },
			wantKind:    imagegen.KindValidation,
			wantMessage: "not a lowercase UUID",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := imagegentest.NewComfyUI(t)
			if tt.setup != nil {
				tt.setup(t, f)
			}
			c := newComfyUI(t, f, nil)
			req := testRequest()
			if tt.request != nil {
				tt.request(&req)
			}
			budget := tt.budget
			if budget == 0 {
				budget = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(t.Context(), budget)
			defer cancel()
			rec := &recorder{}
			start := time.Now()

			_, err := c.Run(ctx, req, "", rec.record)
			e := wantKind(t, err, tt.wantKind)
			if !strings.Contains(e.Message, tt.wantMessage) {
				t.Errorf("message = %q, want it to contain %q", e.Message, tt.wantMessage)
			}
			if tt.budget == 0 && time.Since(start) > 5*time.Second {
				t.Errorf("Run took %v, want it to fail fast", time.Since(start))
			}
			if tt.check != nil {
				tt.check(t, f, req, rec, err)
			}
		})
	}
}

func TestComfyUIRetriesTransientFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault imagegentest.Fault
		n     int
	}{
		{"connection closed", imagegentest.FaultHangUp, 4},
		{"503", imagegentest.FaultUnavailable, 4},
		{"429", imagegentest.FaultRateLimited, 2},
		{"submission arrives but its answer is lost", imagegentest.FaultHangUpAfter, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := imagegentest.NewComfyUI(t)
			f.FailNext(tt.n, tt.fault)
			c := newComfyUI(t, f, nil)
			req := testRequest()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			res, err := c.Run(ctx, req, "", nil)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkResult(t, res, f.Image(), "image/png")
			if got, want := f.SubmitCount(req.PromptID), 1; got != want {
				t.Errorf("submissions = %d, want %d", got, want)
			}
		})
	}
}

// A submission whose answer was lost (a proxy's 504) reaches ComfyUI only
// after Luna looked for it in /queue and /history; the resubmission with the
// same id gets 409 "prompt_id already exists", which means the prompt is
// there: Luna follows it instead of failing the job.
func TestComfyUIFollowsDuplicatePromptID(t *testing.T) {
	t.Parallel()
	f := imagegentest.NewComfyUI(t)
	f.FailNext(1, imagegentest.FaultLateDelivery)
	c := newComfyUI(t, f, nil)
	req := testRequest()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	res, err := c.Run(ctx, req, "", nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkResult(t, res, f.Image(), "image/png")
	if got, want := f.SubmitCount(req.PromptID), 2; got != want {
		t.Errorf("POST /prompt bodies = %d, want %d (the late one and the duplicate)", got, want)
	}
	if got, want := len(f.Submitted()), 1; got != want {
		t.Errorf("accepted submissions = %d, want %d", got, want)
	}
}

// A job that runs out of time while its prompt runs interrupts it: ComfyUI
// runs one prompt at a time, and removing it from the pending queue does not
// stop it, so without the interrupt every later image would wait behind it.
func TestComfyUITimeoutInterruptsRunningPrompt(t *testing.T) {
	t.Parallel()
	f := imagegentest.NewComfyUI(t)
	f.SetNeverFinish(true)
	c := newComfyUI(t, f, nil)
	first := testRequest()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Run(ctx, first, "", nil)
	wantKind(t, err, imagegen.KindTimeout)
	if got, want := f.Interrupts(), []string{first.PromptID}; !slices.Equal(got, want) {
		t.Errorf("interrupts = %q, want %q", got, want)
	}

	f.SetNeverFinish(false)
	next := testRequest()
	ctx, cancel = context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	res, err := c.Run(ctx, next, "", nil)
	if err != nil {
		t.Fatalf("next Run after the interrupt: %v", err)
	}
	checkResult(t, res, f.Image(), "image/png")
}

func TestComfyUIUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := imagegen.NewComfyUI(imagegen.ComfyUIConfig{BaseURL: "http://" + addr, PollInterval: testPoll, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()

	_, err = c.Run(ctx, testRequest(), "", nil)
	e := wantKind(t, err, imagegen.KindUnavailable)
	if strings.Contains(e.Message, addr) {
		t.Errorf("message %q names the upstream address", e.Message)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
}

func TestComfyUIResume(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// before brings the fake to the state a crashed process left behind
		// and returns the prompt id it had recorded.
		before      func(t *testing.T, f *imagegentest.ComfyUIFake, c *imagegen.ComfyUI, req imagegen.Request) string
		wantSubmits int
	}{
		{
			name: "submitted, then the process stopped",
			before: func(t *testing.T, f *imagegentest.ComfyUIFake, c *imagegen.ComfyUI, req imagegen.Request) string {
				f.SetNeverFinish(true)
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error, 1)
				go func() {
					_, err := c.Run(ctx, req, "", nil)
					done <- err
				}()
				if got, want := <-f.Submitted(), req.PromptID; got != want {
					t.Errorf("submitted %q, want %q", got, want)
				}
				cancel()
				if err := <-done; !errors.Is(err, context.Canceled) {
					t.Errorf("first Run error = %v, want one wrapping context.Canceled", err)
				}
				if got := f.QueueDeletes(); len(got) != 0 {
					t.Errorf("queue deletes after a cancellation = %q, want none (the job is to be resumed)", got)
				}
				f.SetNeverFinish(false)
				return req.PromptID
			},
			wantSubmits: 1,
		},
		{
			name: "submitted by an earlier process, still pending",
			before: func(t *testing.T, f *imagegentest.ComfyUIFake, c *imagegen.ComfyUI, req imagegen.Request) string {
				graph, err := imagegen.DefaultWorkflow().Fill(req)
				if err != nil {
					t.Fatal(err)
				}
				f.Enqueue(req.PromptID, graph)
				return req.PromptID
			},
			wantSubmits: 1,
		},
		{
			name: "finished before the resume",
			before: func(t *testing.T, f *imagegentest.ComfyUIFake, c *imagegen.ComfyUI, req imagegen.Request) string {
				if _, err := c.Run(t.Context(), req, "", nil); err != nil {
					t.Fatalf("first Run: %v", err)
				}
				return req.PromptID
			},
			wantSubmits: 1,
		},
		{
			name: "recorded but never received",
			before: func(t *testing.T, f *imagegentest.ComfyUIFake, c *imagegen.ComfyUI, req imagegen.Request) string {
				return req.PromptID
			},
			wantSubmits: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := imagegentest.NewComfyUI(t)
			c := newComfyUI(t, f, nil)
			req := testRequest()
			id := tt.before(t, f, c, req)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			res, err := c.Run(ctx, req, id, mustNotRecord(t))
			if err != nil {
				t.Fatalf("resumed Run: %v", err)
			}
			checkResult(t, res, f.Image(), "image/png")
			if got, want := f.SubmitCount(id), tt.wantSubmits; got != want {
				t.Errorf("submissions = %d, want %d", got, want)
			}
		})
	}
}

func TestComfyUIResubmitsPromptLostInRestart(t *testing.T) {
	t.Parallel()
	f := imagegentest.NewComfyUI(t)
	f.SetNeverFinish(true)
	c := newComfyUI(t, f, nil)
	req := testRequest()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx, req, "", nil)
		done <- err
	}()
	<-f.Submitted()
	f.Restart()
	f.SetNeverFinish(false)

	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, want := f.SubmitCount(req.PromptID), 2; got != want {
		t.Errorf("submissions = %d, want %d (once, and once after the restart)", got, want)
	}
}

// input returns graph[node].inputs[name].
func input(graph map[string]any, node, name string) any {
	return graph[node].(map[string]any)["inputs"].(map[string]any)[name]
}

// setInput sets graph[node].inputs[name].
func setInput(graph map[string]any, node, name string, v any) {
	graph[node].(map[string]any)["inputs"].(map[string]any)[name] = v
}
