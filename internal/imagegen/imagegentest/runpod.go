package imagegentest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/uuid"
)

// RunpodEndpointID is the endpoint id in the fake's EndpointURL.
const RunpodEndpointID = "fake-endpoint"

// OutputShape is how a COMPLETED job's output looks.
type OutputShape int

// Output shapes of worker-comfyui.
const (
	// OutputV5Base64 is v5's {"images": [{"filename", "type": "base64", "data"}]}.
	OutputV5Base64 OutputShape = iota
	// OutputV5URL is v5 with S3 upload: {"images": [{"type": "s3_url", "data": <URL>}]}.
	OutputV5URL
	// OutputLegacyBase64 is pre-5.0's {"status": "success", "message": <base64>, "refresh_worker": false}.
	OutputLegacyBase64
	// OutputLegacyURL is pre-5.0 with S3 upload: "message" is the URL.
	OutputLegacyURL
	// OutputNoImages is v5's {"status": "success_no_images", "images": []}.
	OutputNoImages
	// OutputMissing is COMPLETED without output (a result too large to return).
	OutputMissing
	// OutputLegacyError is pre-5.0's COMPLETED {"status": "error", "message": …}.
	OutputLegacyError
)

// RunpodSubmission is one POST /run body the fake received.
type RunpodSubmission struct {
	// Body is the raw request body.
	Body []byte
	// JobID is the id the fake gave the job.
	JobID string
	// Workflow is the decoded input.workflow (numbers as float64), or nil.
	Workflow map[string]any
}

// RunpodFake is an httptest server that behaves like Runpod's serverless
// queue API (POST /run, GET /status/{id}, POST /cancel/{id}) in front of
// worker-comfyui. Each job walks through a status script, one step per GET
// /status; its final output or error is set with SetOutput and SetError.
// Every API request must carry "Authorization: Bearer <APIKey>" (or the bare
// key, which Runpod also accepts); image URLs it hands out behave like
// presigned S3 URLs and refuse an Authorization header.
type RunpodFake struct {
	// EndpointURL is the endpoint's base URL, for RunpodConfig.EndpointURL.
	EndpointURL string
	// APIKey is the key the fake accepts.
	APIKey string

	srv    *httptest.Server
	faults faults

	mu          sync.Mutex
	image       []byte
	script      []string
	failError   string
	shape       OutputShape
	jobs        map[string]*runpodJob
	submissions []RunpodSubmission
	statusPolls int
	cancels     []string
	authFails   int
	imageLeaks  int
}

// runpodJob is one submitted job.
type runpodJob struct {
	id        string
	script    []string
	polls     int
	cancelled bool
	failError string
	shape     OutputShape
	image     []byte
}

// NewRunpod starts a Runpod fake, closed when the test ends. Jobs go
// IN_QUEUE → IN_PROGRESS → COMPLETED with the v5 base64 output by default.
func NewRunpod(t testing.TB) *RunpodFake {
	t.Helper()
	f := &RunpodFake{
		APIKey: "rp_test_key",
		image:  SmallPNG(16, 12),
		script: []string{"IN_QUEUE", "IN_PROGRESS", "COMPLETED"},
		jobs:   map[string]*runpodJob{},
	}
	api := http.NewServeMux()
	base := "/v2/" + RunpodEndpointID
	api.HandleFunc("POST "+base+"/run", f.postRun)
	api.HandleFunc("GET "+base+"/status/{id}", f.getStatus)
	api.HandleFunc("POST "+base+"/cancel/{id}", f.postCancel)
	api.HandleFunc("GET "+base+"/health", f.getHealth)
	mux := http.NewServeMux()
	mux.Handle("/v2/", f.auth(api))
	mux.HandleFunc("GET /files/{name}", f.getFile)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if serveFault(&f.faults, w, r, mux) {
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	f.EndpointURL = f.srv.URL + base
	return f
}

// auth answers 401 unless the request carries the API key.
func (f *RunpodFake) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		if got != "Bearer "+f.APIKey && got != f.APIKey {
			f.mu.Lock()
			f.authFails++
			f.mu.Unlock()
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "Unauthorized"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Client returns an HTTP client for the fake, whose idle connections close with it.
func (f *RunpodFake) Client() *http.Client { return f.srv.Client() }

// Image returns the image finished jobs deliver.
func (f *RunpodFake) Image() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.image)
}

// SetImage sets the bytes later jobs deliver.
func (f *RunpodFake) SetImage(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.image = bytes.Clone(b)
}

// SetScript sets the statuses later jobs report, one per GET /status; the
// last one repeats. Any string is allowed, to test unknown statuses.
func (f *RunpodFake) SetScript(statuses ...string) {
	if len(statuses) == 0 {
		panic("imagegentest: SetScript needs at least one status")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script = append([]string(nil), statuses...)
}

// SetError sets the error string later jobs report when FAILED.
func (f *RunpodFake) SetError(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failError = msg
}

// SetOutput sets the output shape of later COMPLETED jobs.
func (f *RunpodFake) SetOutput(shape OutputShape) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shape = shape
}

// FailNext makes the next n requests, whatever their route, fail with mode.
func (f *RunpodFake) FailNext(n int, mode Fault) { f.faults.set(n, mode) }

// Submissions returns every accepted POST /run body, in order.
func (f *RunpodFake) Submissions() []RunpodSubmission {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]RunpodSubmission(nil), f.submissions...)
}

// SubmitCount returns how many jobs were submitted.
func (f *RunpodFake) SubmitCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.submissions)
}

// StatusPolls returns how many GET /status requests were answered.
func (f *RunpodFake) StatusPolls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.statusPolls
}

// Cancellations returns the job ids of POST /cancel requests.
func (f *RunpodFake) Cancellations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cancels...)
}

// AuthFailures returns how many API requests lacked the API key.
func (f *RunpodFake) AuthFailures() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.authFails
}

// ImageAuthLeaks returns how many image downloads carried an Authorization
// header (which a presigned S3 URL refuses, and which leaks the key).
func (f *RunpodFake) ImageAuthLeaks() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.imageLeaks
}

func (f *RunpodFake) postRun(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "could not read body"})
		return
	}
	if len(body) > 10<<20 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "payload exceeds the 10 MB limit of /run"})
		return
	}
	var req struct {
		Input json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Input) == 0 || string(req.Input) == "null" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "Invalid request: input is required"})
		return
	}
	var input struct {
		Workflow map[string]any `json:"workflow"`
	}
	_ = json.Unmarshal(req.Input, &input)

	f.mu.Lock()
	defer f.mu.Unlock()
	job := &runpodJob{
		id:        uuid.NewString() + "-u1",
		script:    append([]string(nil), f.script...),
		failError: f.failError,
		shape:     f.shape,
		image:     bytes.Clone(f.image),
	}
	if input.Workflow == nil {
		// worker-comfyui's validate_input refuses the job, which fails it.
		job.script = []string{"IN_QUEUE", "FAILED"}
		job.failError = "Missing 'workflow' parameter"
	}
	f.jobs[job.id] = job
	f.submissions = append(f.submissions, RunpodSubmission{Body: body, JobID: job.id, Workflow: input.Workflow})
	writeJSON(w, http.StatusOK, map[string]any{"id": job.id, "status": "IN_QUEUE"})
}

func (f *RunpodFake) getStatus(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statusPolls++
	job, ok := f.jobs[r.PathValue("id")]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "request does not exist"})
		return
	}
	status := job.script[min(job.polls, len(job.script)-1)]
	job.polls++
	if job.cancelled {
		status = "CANCELLED"
	}
	ans := map[string]any{"id": job.id, "status": status}
	switch status {
	case "IN_QUEUE":
	case "IN_PROGRESS", "RUNNING":
		ans["delayTime"] = 812
		ans["workerId"] = "fakeworker01"
	case "COMPLETED":
		ans["delayTime"] = 812
		ans["executionTime"] = 3604
		ans["workerId"] = "fakeworker01"
		if out := f.output(job); out != nil {
			ans["output"] = out
		}
	case "FAILED":
		ans["delayTime"] = 812
		ans["executionTime"] = 1200
		ans["workerId"] = "fakeworker01"
		ans["error"] = job.failError
	default:
		ans["delayTime"] = 812
	}
	writeJSON(w, http.StatusOK, ans)
}

// output is a COMPLETED job's output in its shape, or nil. f.mu is held.
func (f *RunpodFake) output(job *runpodJob) any {
	b64 := base64.StdEncoding.EncodeToString(job.image)
	fileURL := f.srv.URL + "/files/" + job.id + ".png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=fakesignature"
	switch job.shape {
	case OutputV5Base64:
		return map[string]any{"images": []any{map[string]any{"filename": "ComfyUI_00001_.png", "type": "base64", "data": b64}}}
	case OutputV5URL:
		return map[string]any{"images": []any{map[string]any{"filename": "ComfyUI_00001_.png", "type": "s3_url", "data": fileURL}}}
	case OutputLegacyBase64:
		return map[string]any{"status": "success", "message": b64, "refresh_worker": false}
	case OutputLegacyURL:
		return map[string]any{"status": "success", "message": fileURL, "refresh_worker": false}
	case OutputNoImages:
		return map[string]any{"status": "success_no_images", "images": []any{}}
	case OutputLegacyError:
		return map[string]any{"status": "error", "message": "the image does not exist in the specified output folder: /comfyui/output/ComfyUI_00001_.png", "refresh_worker": false}
	}
	return nil
}

func (f *RunpodFake) postCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels = append(f.cancels, id)
	job, ok := f.jobs[id]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "request does not exist"})
		return
	}
	current := job.script[min(job.polls, len(job.script)-1)]
	if current != "COMPLETED" && current != "FAILED" && current != "TIMED_OUT" {
		job.cancelled = true
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "status": "CANCELLED"})
}

func (f *RunpodFake) getHealth(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"jobs":    map[string]any{"completed": 0, "failed": 0, "inProgress": 0, "inQueue": len(f.jobs), "retried": 0},
		"workers": map[string]any{"idle": 1, "running": 0},
	})
}

func (f *RunpodFake) getFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "" {
		// S3 refuses a presigned URL that also carries an Authorization header.
		f.imageLeaks++
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>")
		return
	}
	for _, job := range f.jobs {
		if job.id+".png" == name {
			w.Header().Set("Content-Type", "image/png")
			_, _ = w.Write(job.image)
			return
		}
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusNotFound)
	_, _ = io.WriteString(w, "<Error><Code>NoSuchKey</Code></Error>")
}
