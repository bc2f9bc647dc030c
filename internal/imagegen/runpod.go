package imagegen

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// RunpodConfig configures NewRunpod.
type RunpodConfig struct {
	// EndpointURL is the endpoint's queue API base,
	// https://api.runpod.ai/v2/{endpoint_id}.
	EndpointURL string
	// APIKey is sent as "Authorization: Bearer <key>" (empty: no
	// Authorization header, e.g. for a local worker with SERVE_API_LOCALLY).
	APIKey string
	// Headers are extra headers sent on every API request; APIKey wins over
	// an Authorization entry here.
	Headers map[string]string
	// Workflow is the template to fill; default DefaultWorkflow(). Note that
	// Runpod's prebuilt -flux1-schnell image ships split model files, not the
	// checkpoint the default workflow names.
	Workflow *Workflow
	// PollInterval is the time between status checks; default 2s.
	PollInterval time.Duration
	// HTTPClient makes the requests; default a new http.Client.
	HTTPClient *http.Client
	// Logger receives retries and state changes; nil discards.
	Logger *slog.Logger
}

// Runpod is a Backend on a Runpod serverless endpoint running
// worker-comfyui: POST /run with {"input": {"workflow": …}}, then GET
// /status/{id} until a final status. It reads both the v5 output
// ({"images": [{type: base64|s3_url, data}]}) and the pre-5.0 one
// ({"status": "success", "message": <base64 or URL>}). It is safe for
// concurrent use.
type Runpod struct {
	endpoint string
	workflow *Workflow
	up       *upstream
}

// NewRunpod checks cfg and returns the backend.
func NewRunpod(cfg RunpodConfig) (*Runpod, error) {
	endpoint, err := parseBaseURL("Runpod endpoint URL", cfg.EndpointURL)
	if err != nil {
		return nil, err
	}
	wf := cfg.Workflow
	if wf == nil {
		wf = DefaultWorkflow()
	}
	headers := make(map[string]string, len(cfg.Headers)+1)
	for k, v := range cfg.Headers {
		if cfg.APIKey != "" && strings.EqualFold(k, "Authorization") {
			continue
		}
		headers[k] = v
	}
	if cfg.APIKey != "" {
		headers["Authorization"] = "Bearer " + cfg.APIKey
	}
	return &Runpod{
		endpoint: endpoint,
		workflow: wf,
		up:       newUpstream(cfg.HTTPClient, headers, cfg.Logger, cfg.PollInterval),
	}, nil
}

// Run makes the image; see Backend. On resume, req is not used. When ctx's
// deadline passes, the job is cancelled on Runpod so it stops costing GPU
// time; if recordID fails, the job is cancelled too.
func (p *Runpod) Run(ctx context.Context, req Request, resumeID string, recordID func(ctx context.Context, upstreamID string) error) (Result, error) {
	r := &runpodRun{p: p, logger: p.up.logger.With("backend", "runpod")}
	if resumeID == "" {
		graph, err := p.workflow.Fill(req)
		if err != nil {
			return Result{}, err
		}
		body, err := marshalJSON(map[string]any{"input": map[string]any{"workflow": graph}})
		if err != nil {
			return Result{}, fmt.Errorf("encode job: %w", err)
		}
		if err := r.submit(ctx, body); err != nil {
			return Result{}, r.fail(ctx, err)
		}
		if recordID != nil {
			if err := recordID(ctx, r.id); err != nil {
				r.abandon(ctx)
				return Result{}, fmt.Errorf("record Runpod job id %s: %w", r.id, err)
			}
		}
	} else {
		r.id = resumeID
		r.logger = r.logger.With("job_id", r.id)
		r.logger.InfoContext(ctx, "following Runpod job")
	}
	res, err := r.wait(ctx)
	if err != nil {
		return Result{}, r.fail(ctx, err)
	}
	return res, nil
}

// runpodRun is the state of one Run.
type runpodRun struct {
	p       *Runpod
	id      string
	logger  *slog.Logger
	reached bool // some request got a successful answer
}

// submit posts the job to /run and keeps its id.
func (r *runpodRun) submit(ctx context.Context, body []byte) error {
	resp, err := r.p.up.call(ctx, "submit job", exchange{method: http.MethodPost, url: r.p.endpoint + "/run", body: body, api: true})
	if err != nil {
		return err
	}
	switch {
	case resp.status >= 200 && resp.status < 300:
	case resp.status == http.StatusBadRequest:
		return newError(KindValidation, "The image service rejected the job: "+runpodErrorText(resp.body), &statusError{status: resp.status, body: resp.body})
	case resp.status == http.StatusUnauthorized || resp.status == http.StatusForbidden:
		return newError(KindUnavailable, "The image service rejected the API key.", &statusError{status: resp.status, body: resp.body})
	default:
		return refusedError(resp)
	}
	r.reached = true
	var ans struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(resp.body, &ans); err != nil {
		return fmt.Errorf("decode /run answer: %w", err)
	}
	if ans.ID == "" {
		return newError(KindUnavailable, "The image service answered unexpectedly.", fmt.Errorf("/run answer without id: %s", snippet(resp.body)))
	}
	r.id = ans.ID
	r.logger = r.logger.With("job_id", r.id)
	r.logger.InfoContext(ctx, "Runpod accepted the job", "status", ans.Status)
	return nil
}

// runpodStatus is GET /status/{id}'s answer.
type runpodStatus struct {
	ID     string          `json:"id"`
	Status string          `json:"status"`
	Output json.RawMessage `json:"output"`
	Error  json.RawMessage `json:"error"`
}

// wait polls /status until a final status and returns the image.
func (r *runpodRun) wait(ctx context.Context) (Result, error) {
	last := ""
	for first := true; ; first = false {
		if !first {
			if err := sleep(ctx, r.p.up.poll); err != nil {
				return Result{}, err
			}
		}
		st, err := r.status(ctx)
		if err != nil {
			return Result{}, err
		}
		if st.Status != last {
			r.logger.DebugContext(ctx, "Runpod job status", "status", st.Status)
		}
		switch st.Status {
		case "IN_QUEUE", "IN_PROGRESS", "RUNNING":
		case "COMPLETED":
			return r.output(ctx, st.Output)
		case "FAILED":
			return Result{}, runpodFailure(st)
		case "TIMED_OUT":
			return Result{}, newError(KindFailed, "The image job timed out on the image service.", errors.New("Runpod status TIMED_OUT"))
		case "CANCELLED":
			return Result{}, newError(KindFailed, "The image job was cancelled on the image service.", errors.New("Runpod status CANCELLED"))
		default:
			if st.Status != last {
				r.logger.WarnContext(ctx, "unknown Runpod job status; still waiting", "status", st.Status)
			}
		}
		last = st.Status
	}
}

// status reads GET /status/{id}.
func (r *runpodRun) status(ctx context.Context) (runpodStatus, error) {
	resp, err := r.p.up.call(ctx, "read job status", exchange{method: http.MethodGet, url: r.p.endpoint + "/status/" + url.PathEscape(r.id), api: true})
	if err != nil {
		return runpodStatus{}, err
	}
	switch resp.status {
	case http.StatusOK:
	case http.StatusNotFound:
		return runpodStatus{}, newError(KindFailed, "The image service no longer knows this job.", &statusError{status: resp.status, body: resp.body})
	case http.StatusUnauthorized, http.StatusForbidden:
		return runpodStatus{}, newError(KindUnavailable, "The image service rejected the API key.", &statusError{status: resp.status, body: resp.body})
	default:
		return runpodStatus{}, refusedError(resp)
	}
	r.reached = true
	var st runpodStatus
	if err := json.Unmarshal(resp.body, &st); err != nil {
		return runpodStatus{}, fmt.Errorf("decode /status answer: %w", err)
	}
	return st, nil
}

// runpodFailure is the error for a FAILED job.
func runpodFailure(st runpodStatus) error {
	text := runpodJobError(st.Error)
	if details := runpodDetails(st.Output); details != "" {
		text = joinNonEmpty(": ", text, details)
	}
	cause := fmt.Errorf("Runpod status FAILED: %s", truncateBytes(text, 1000))
	// worker-comfyui's errors for bad input, or for a workflow ComfyUI refused.
	validationMarkers := []string{
		"Workflow validation failed",
		"Missing 'workflow' parameter",
		"'images' must be a list",
		"Invalid JSON format in input",
		"Please provide input",
	}
	for _, m := range validationMarkers {
		if strings.Contains(text, m) {
			return newError(KindValidation, "The image service rejected the workflow: "+text, cause)
		}
	}
	if text == "" {
		return newError(KindFailed, "The image job failed on the image service.", cause)
	}
	return newError(KindFailed, "The image job failed: "+text, cause)
}

// runpodJobError reads a job's error: a string, possibly the JSON text the
// Runpod SDK makes of an uncaught exception ({error_type, error_message, …}).
func runpodJobError(raw json.RawMessage) string {
	text := jsonString(raw)
	var exc struct {
		ErrorType    string `json:"error_type"`
		ErrorMessage string `json:"error_message"`
		Message      string `json:"message"`
	}
	if strings.HasPrefix(strings.TrimSpace(text), "{") && json.Unmarshal([]byte(text), &exc) == nil {
		switch {
		case exc.ErrorMessage != "":
			return joinNonEmpty(": ", exc.ErrorType, exc.ErrorMessage)
		case exc.Message != "":
			return exc.Message
		}
	}
	return text
}

// runpodDetails returns the first of worker-comfyui's "details" in an
// output, or "".
func runpodDetails(output json.RawMessage) string {
	if !isJSONObject(output) {
		return ""
	}
	var out struct {
		Details []json.RawMessage `json:"details"`
	}
	if err := json.Unmarshal(output, &out); err != nil || len(out.Details) == 0 {
		return ""
	}
	return jsonString(out.Details[0])
}

// runpodOutput is worker-comfyui's output: v5 fills Images; before 5.0 it
// was Status + Message.
type runpodOutput struct {
	Images []struct {
		Filename string `json:"filename"`
		Type     string `json:"type"`
		Data     string `json:"data"`
	} `json:"images"`
	Status  string          `json:"status"`
	Message string          `json:"message"`
	Error   json.RawMessage `json:"error"`
	Errors  json.RawMessage `json:"errors"` // v5: non-fatal warnings
}

// output reads a COMPLETED job's output and returns its first image.
func (r *runpodRun) output(ctx context.Context, raw json.RawMessage) (Result, error) {
	if !isJSONObject(raw) {
		if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
			return Result{}, newError(KindInvalidOutput, "The image job finished without output (the result may have been too large).", errors.New("COMPLETED without output"))
		}
		return Result{}, newError(KindInvalidOutput, "The image job finished with output this service cannot read.", fmt.Errorf("output is not an object: %s", snippet(raw)))
	}
	var out runpodOutput
	if err := json.Unmarshal(raw, &out); err != nil {
		return Result{}, newError(KindInvalidOutput, "The image job finished with output this service cannot read.", fmt.Errorf("decode output: %w", err))
	}
	if len(out.Errors) > 0 && string(out.Errors) != "null" && string(out.Errors) != "[]" {
		r.logger.WarnContext(ctx, "worker-comfyui reported warnings", "errors", snippet(out.Errors))
	}
	var data []byte
	var err error
	switch {
	case len(out.Images) > 0:
		img := out.Images[0]
		switch {
		case img.Type == "s3_url" || img.Type != "base64" && isHTTPURL(img.Data):
			data, err = r.download(ctx, img.Data)
		default:
			data, err = decodeBase64(img.Data)
		}
	case out.Status == "error":
		return Result{}, newError(KindFailed, joinNonEmpty(": ", "The image job failed", out.Message), fmt.Errorf("COMPLETED with output status error: %s", truncateBytes(out.Message, 1000)))
	case out.Message != "":
		if isHTTPURL(out.Message) {
			data, err = r.download(ctx, out.Message)
		} else {
			data, err = decodeBase64(out.Message)
		}
	case len(out.Error) > 0:
		text := runpodJobError(out.Error)
		return Result{}, newError(KindFailed, joinNonEmpty(": ", "The image job failed", text), fmt.Errorf("COMPLETED with output error: %s", truncateBytes(text, 1000)))
	default:
		return Result{}, newError(KindInvalidOutput, "The image job finished without an image.", fmt.Errorf("output without images: %s", snippet(raw)))
	}
	if err != nil {
		return Result{}, err
	}
	res, err := decodeImage(data)
	if err != nil {
		return Result{}, err
	}
	r.logger.InfoContext(ctx, "Runpod image ready", "content_type", res.ContentType, "width", res.Width, "height", res.Height, "bytes", len(res.Data))
	return res, nil
}

// download fetches an output image URL (e.g. a presigned S3 URL) without the
// Runpod credentials.
func (r *runpodRun) download(ctx context.Context, rawURL string) ([]byte, error) {
	if !isHTTPURL(rawURL) {
		return nil, newError(KindInvalidOutput, "The image job returned an unusable image address.", fmt.Errorf("image URL %q", snippet([]byte(rawURL))))
	}
	resp, err := r.p.up.call(ctx, "download image", exchange{method: http.MethodGet, url: rawURL, image: true})
	if err != nil {
		return nil, err
	}
	if resp.status != http.StatusOK {
		return nil, newError(KindInvalidOutput, "The finished image could not be downloaded.",
			fmt.Errorf("GET %s: %w", safeURL(rawURL), &statusError{status: resp.status, body: resp.body}))
	}
	return resp.body, nil
}

// isHTTPURL reports whether s is an absolute http(s) URL.
func isHTTPURL(s string) bool {
	u, err := url.Parse(strings.TrimSpace(s))
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// decodeBase64 decodes base64 image data, with or without a data: URI
// prefix and padding.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "data:") {
		if i := strings.Index(s, ","); i >= 0 {
			s = s[i+1:]
		}
	}
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		data, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	if err != nil {
		return nil, newError(KindInvalidOutput, "The image job returned image data that cannot be decoded.", fmt.Errorf("decode base64 image: %w", err))
	}
	return data, nil
}

// runpodErrorText reads an error answer of the Runpod API, or its start.
func runpodErrorText(body []byte) string {
	var v map[string]json.RawMessage
	if err := json.Unmarshal(body, &v); err == nil {
		for _, k := range []string{"error", "message", "detail"} {
			if s := runpodJobError(v[k]); s != "" {
				return s
			}
		}
	}
	if len(body) == 0 {
		return "bad request"
	}
	return snippet(body)
}

// fail turns an error that ended a Run into an *Error; see comfyRun.fail.
func (r *runpodRun) fail(ctx context.Context, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if ctx.Err() == nil {
		return newError(KindUnavailable, "The image service answered unexpectedly.", err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && r.id != "" {
		r.abandon(ctx)
	}
	return ctxError(ctx, r.reached, err)
}

// abandon cancels the job on Runpod, best effort.
func (r *runpodRun) abandon(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	resp, err := r.p.up.do(ctx, exchange{method: http.MethodPost, url: r.p.endpoint + "/cancel/" + url.PathEscape(r.id), api: true})
	if err == nil && resp.status != http.StatusOK {
		err = &statusError{status: resp.status, body: resp.body}
	}
	if err != nil {
		r.logger.WarnContext(ctx, "could not cancel the Runpod job", "err", err)
		return
	}
	r.logger.InfoContext(ctx, "cancelled the Runpod job")
}
