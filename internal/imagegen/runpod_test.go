package imagegen_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"luna/internal/imagegen"
	"luna/internal/imagegen/imagegentest"
)

// newRunpod returns a backend on the fake; edit adjusts the config.
func newRunpod(t *testing.T, f *imagegentest.RunpodFake, edit func(*imagegen.RunpodConfig)) *imagegen.Runpod {
	t.Helper()
	cfg := imagegen.RunpodConfig{
		EndpointURL:  f.EndpointURL,
		APIKey:       f.APIKey,
		PollInterval: testPoll,
		HTTPClient:   f.Client(),
		Logger:       testLogger(t),
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := imagegen.NewRunpod(cfg)
	if err != nil {
		t.Fatalf("NewRunpod: %v", err)
	}
	return p
}

func TestRunpodRunSucceeds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		shape     imagegentest.OutputShape
		script    []string
		image     func(t *testing.T) []byte
		wantType  string
		wantPolls int
	}{
		{name: "v5 base64", shape: imagegentest.OutputV5Base64, wantType: "image/png", wantPolls: 3},
		{name: "v5 S3 URL", shape: imagegentest.OutputV5URL, wantType: "image/png", wantPolls: 3},
		{name: "pre-5.0 base64", shape: imagegentest.OutputLegacyBase64, wantType: "image/png", wantPolls: 3},
		{name: "pre-5.0 URL", shape: imagegentest.OutputLegacyURL, wantType: "image/png", wantPolls: 3},
		{name: "RUNNING status", script: []string{"IN_QUEUE", "RUNNING", "RUNNING", "COMPLETED"}, wantType: "image/png", wantPolls: 4},
		{name: "unknown status on the way", script: []string{"IN_QUEUE", "WARMING_UP", "IN_PROGRESS", "COMPLETED"}, wantType: "image/png", wantPolls: 4},
		{name: "completed at once", script: []string{"COMPLETED"}, wantType: "image/png", wantPolls: 1},
		{name: "JPEG", image: smallJPEG, wantType: "image/jpeg", wantPolls: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := imagegentest.NewRunpod(t)
			f.SetOutput(tt.shape)
			if tt.script != nil {
				f.SetScript(tt.script...)
			}
			if tt.image != nil {
				f.SetImage(tt.image(t))
			}
			p := newRunpod(t, f, nil)
			req := testRequest()
			req.Prompt = "a \"cat\" \\ {x} \\n\n日本 🙂"
			rec := &recorder{}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			res, err := p.Run(ctx, req, "", rec.record)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkResult(t, res, f.Image(), tt.wantType)
			subs := f.Submissions()
			if got, want := len(subs), 1; got != want {
				t.Fatalf("submissions = %d, want %d", got, want)
			}
			if got, want := rec.recorded(), []string{subs[0].JobID}; !slices.Equal(got, want) {
				t.Errorf("recorded ids = %q, want %q", got, want)
			}
			if got, want := input(subs[0].Workflow, "6", "text"), any(req.Prompt); got != want {
				t.Errorf("input.workflow 6.inputs.text = %q, want %q", got, want)
			}
			if got, want := f.StatusPolls(), tt.wantPolls; got != want {
				t.Errorf("status polls = %d, want %d", got, want)
			}
			if got := f.AuthFailures(); got != 0 {
				t.Errorf("%d requests without the API key", got)
			}
			if got := f.ImageAuthLeaks(); got != 0 {
				t.Errorf("%d image downloads carried the API key", got)
			}
		})
	}
}

func TestRunpodRunFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		setup       func(t *testing.T, f *imagegentest.RunpodFake)
		edit        func(cfg *imagegen.RunpodConfig)
		request     func(req *imagegen.Request)
		budget      time.Duration
		wantKind    imagegen.ErrorKind
		wantMessage string
		check       func(t *testing.T, f *imagegentest.RunpodFake, err error)
	}{
		{
			name: "FAILED",
			setup: func(t *testing.T, f *imagegentest.RunpodFake) {
				f.SetScript("IN_QUEUE", "IN_PROGRESS", "FAILED")
				f.SetError("Workflow execution error: Node Type: KSampler, Node ID: 31, Message: CUDA out of memory")
			},
			wantKind:    imagegen.KindFailed,
			wantMessage: "CUDA out of memory",
		},
		{
			name: "FAILED by an uncaught handler exception",
			setup: func(t *testing.T, f *imagegentest.RunpodFake) {
				f.SetScript("IN_QUEUE", "FAILED")
				f.SetError(`{"error_type": "<class 'KeyError'>", "error_message": "'images'", "error_traceback": "Traceback (most recent call last): ...", "hostname": "abc", "worker_id": "w1", "runpod_version": "1.7.9"}`)
			},
			wantKind:    imagegen.KindFailed,
			wantMessage: "<class 'KeyError'>: 'images'",
			check: func(t *testing.T, f *imagegentest.RunpodFake, err error) {
				if e := wantKind(t, err, imagegen.KindFailed); strings.Contains(e.Message, "Traceback") {
					t.Errorf("message %q shows the traceback", e.Message)
				}
			},
		},
		{
			name: "FAILED workflow validation",
			setup: func(t *testing.T, f *imagegentest.RunpodFake) {
				f.SetScript("IN_QUEUE", "FAILED")
				f.SetError("Workflow validation failed:\n• Node 30 (errors): [{'type': 'value_not_in_list', 'message': 'Value not in list'}]\nAvailable checkpoint models: flux1-dev-fp8.safetensors")
			},
			wantKind:    imagegen.KindValidation,
			wantMessage: "Node 30",
		},
		{
			name:        "TIMED_OUT",
			setup:       func(t *testing.T, f *imagegentest.RunpodFake) { f.SetScript("IN_QUEUE", "TIMED_OUT") },
			wantKind:    imagegen.KindFailed,
			wantMessage: "timed out",
		},
		{
			name:        "CANCELLED",
			setup:       func(t *testing.T, f *imagegentest.RunpodFake) { f.SetScript("IN_QUEUE", "IN_PROGRESS", "CANCELLED") },
			wantKind:    imagegen.KindFailed,
			wantMessage: "cancelled",
		},
		{
			name:        "COMPLETED without images",
			setup:       func(t *testing.T, f *imagegentest.RunpodFake) { f.SetOutput(imagegentest.OutputNoImages) },
			wantKind:    imagegen.KindInvalidOutput,
			wantMessage: "without an image",
		},
		{
			name:        "COMPLETED without output",
			setup:       func(t *testing.T, f *imagegentest.RunpodFake) { f.SetOutput(imagegentest.OutputMissing) },
			wantKind:    imagegen.KindInvalidOutput,
			wantMessage: "without output",
		},
		{
			name:        "pre-5.0 COMPLETED with status error",
			setup:       func(t *testing.T, f *imagegentest.RunpodFake) { f.SetOutput(imagegentest.OutputLegacyError) },
			wantKind:    imagegen.KindFailed,
			wantMessage: "the image does not exist",
		},
		{
			name:        "undecodable image",
			setup:       func(t *testing.T, f *imagegentest.RunpodFake) { f.SetImage([]byte("definitely not an image")) },
			wantKind:    imagegen.KindInvalidOutput,
			wantMessage: "not a PNG, JPEG or WebP",
		},
		{
			name:        "wrong API key",
			edit:        func(cfg *imagegen.RunpodConfig) { cfg.APIKey = "wrong" },
			wantKind:    imagegen.KindUnavailable,
			wantMessage: "API key",
			check: func(t *testing.T, f *imagegentest.RunpodFake, err error) {
				if got, want := f.AuthFailures(), 1; got != want {
					t.Errorf("auth failures = %d, want %d (no retries)", got, want)
				}
			},
		},
		{
			name:        "negative seed",
			request:     func(req *imagegen.Request) { req.Seed = -1 },
			wantKind:    imagegen.KindValidation,
			wantMessage: "seed",
			check: func(t *testing.T, f *imagegentest.RunpodFake, err error) {
				if got := f.SubmitCount(); got != 0 {
					t.Errorf("submissions = %d, want none", got)
				}
			},
		},
		{
			name:        "never finishes",
			setup:       func(t *testing.T, f *imagegentest.RunpodFake) { f.SetScript("IN_QUEUE", "IN_PROGRESS") },
			budget:      300 * time.Millisecond,
			wantKind:    imagegen.KindTimeout,
			wantMessage: "not ready in time",
			check: func(t *testing.T, f *imagegentest.RunpodFake, err error) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
				}
				if got, want := f.Cancellations(), []string{f.Submissions()[0].JobID}; !slices.Equal(got, want) {
					t.Errorf("cancellations = %q, want %q", got, want)
				}
			},
		},
		{
			name:        "never leaves the queue",
			setup:       func(t *testing.T, f *imagegentest.RunpodFake) { f.SetScript("IN_QUEUE") },
			budget:      300 * time.Millisecond,
			wantKind:    imagegen.KindTimeout,
			wantMessage: "not ready in time",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := imagegentest.NewRunpod(t)
			if tt.setup != nil {
				tt.setup(t, f)
			}
			p := newRunpod(t, f, tt.edit)
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
			start := time.Now()

			_, err := p.Run(ctx, req, "", nil)
			e := wantKind(t, err, tt.wantKind)
			if !strings.Contains(e.Message, tt.wantMessage) {
				t.Errorf("message = %q, want it to contain %q", e.Message, tt.wantMessage)
			}
			if tt.budget == 0 && time.Since(start) > 5*time.Second {
				t.Errorf("Run took %v, want it to fail fast", time.Since(start))
			}
			if tt.check != nil {
				tt.check(t, f, err)
			}
		})
	}
}

func TestRunpodRetriesTransientFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault imagegentest.Fault
		n     int
	}{
		{"connection closed", imagegentest.FaultHangUp, 3},
		{"503", imagegentest.FaultUnavailable, 3},
		{"429", imagegentest.FaultRateLimited, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := imagegentest.NewRunpod(t)
			f.FailNext(tt.n, tt.fault)
			p := newRunpod(t, f, nil)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			res, err := p.Run(ctx, testRequest(), "", nil)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkResult(t, res, f.Image(), "image/png")
			if got, want := f.SubmitCount(), 1; got != want {
				t.Errorf("submissions = %d, want %d", got, want)
			}
		})
	}
}

func TestRunpodResume(t *testing.T) {
	t.Parallel()
	f := imagegentest.NewRunpod(t)
	p := newRunpod(t, f, nil)
	req := testRequest()

	// The first process records the job id, then stops before the job ends.
	ctx, cancel := context.WithCancel(t.Context())
	var jobID string
	_, err := p.Run(ctx, req, "", func(_ context.Context, id string) error {
		jobID = id
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first Run error = %v, want one wrapping context.Canceled", err)
	}
	if got := f.Cancellations(); len(got) != 0 {
		t.Errorf("cancellations after a shutdown = %q, want none (the job is to be resumed)", got)
	}

	res, err := p.Run(t.Context(), imagegen.Request{}, jobID, mustNotRecord(t))
	if err != nil {
		t.Fatalf("resumed Run: %v", err)
	}
	checkResult(t, res, f.Image(), "image/png")
	if got, want := f.SubmitCount(), 1; got != want {
		t.Errorf("submissions = %d, want %d", got, want)
	}
}

func TestRunpodResumeUnknownJob(t *testing.T) {
	t.Parallel()
	f := imagegentest.NewRunpod(t)
	p := newRunpod(t, f, nil)

	_, err := p.Run(t.Context(), imagegen.Request{}, "expired-job-u1", mustNotRecord(t))
	wantKind(t, err, imagegen.KindFailed)
	if got := f.SubmitCount(); got != 0 {
		t.Errorf("submissions = %d, want none", got)
	}
}

func TestRunpodRecordFailureCancelsJob(t *testing.T) {
	t.Parallel()
	f := imagegentest.NewRunpod(t)
	p := newRunpod(t, f, nil)
	dbDown := errors.New("database is down")

	_, err := p.Run(t.Context(), testRequest(), "", func(context.Context, string) error { return dbDown })
	if !errors.Is(err, dbDown) {
		t.Fatalf("error = %v, want it to wrap the recordID error", err)
	}
	if got, want := f.Cancellations(), []string{f.Submissions()[0].JobID}; !slices.Equal(got, want) {
		t.Errorf("cancellations = %q, want %q", got, want)
	}
}
