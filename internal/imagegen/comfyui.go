package imagegen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// maxComfySubmits bounds how often one Run queues its prompt: once, plus
// twice more if ComfyUI loses it (a restart empties its queue and history).
const maxComfySubmits = 3

// ComfyUIConfig configures NewComfyUI.
type ComfyUIConfig struct {
	// BaseURL is the server's address, e.g. http://gpu1:8188. A path prefix
	// (such as /api, or a proxy's) is kept.
	BaseURL string
	// Headers are sent on every request, e.g. Authorization for a proxy in
	// front of ComfyUI (ComfyUI itself has no authentication).
	Headers map[string]string
	// Workflow is the template to fill; default DefaultWorkflow().
	Workflow *Workflow
	// ClientID is sent as client_id; default a random UUID.
	ClientID string
	// PollInterval is the time between status checks; default 2s.
	PollInterval time.Duration
	// HTTPClient makes the requests; default a new http.Client.
	HTTPClient *http.Client
	// Logger receives retries and state changes; nil discards.
	Logger *slog.Logger
}

// ComfyUI is a Backend on a ComfyUI server's native HTTP API: POST /prompt
// with a client-chosen prompt_id, then GET /history/{prompt_id} and GET
// /queue until done, then GET /view for the image. ComfyUI ≥ 0.3.44 is
// needed for client-chosen prompt ids. It is safe for concurrent use.
type ComfyUI struct {
	base     string
	workflow *Workflow
	clientID string
	up       *upstream
}

// NewComfyUI checks cfg and returns the backend.
func NewComfyUI(cfg ComfyUIConfig) (*ComfyUI, error) {
	base, err := parseBaseURL("ComfyUI base URL", cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	wf := cfg.Workflow
	if wf == nil {
		wf = DefaultWorkflow()
	}
	clientID := cfg.ClientID
	if clientID == "" {
		clientID = uuid.NewString()
	}
	return &ComfyUI{
		base:     base,
		workflow: wf,
		clientID: clientID,
		up:       newUpstream(cfg.HTTPClient, cfg.Headers, cfg.Logger, cfg.PollInterval),
	}, nil
}

// comfySubmit is the body of POST /prompt.
type comfySubmit struct {
	Prompt   map[string]any `json:"prompt"`
	ClientID string         `json:"client_id,omitempty"`
	PromptID string         `json:"prompt_id"`
}

// Run makes the image; see Backend. req.PromptID (or resumeID) must be a
// canonical lowercase UUID. On resume, req is only used if ComfyUI never
// received the prompt. When ctx's deadline passes, the prompt is removed from
// ComfyUI's pending queue and interrupted if it is running.
func (c *ComfyUI) Run(ctx context.Context, req Request, resumeID string, recordID func(ctx context.Context, upstreamID string) error) (Result, error) {
	id := req.PromptID
	if resumeID != "" {
		id = resumeID
	}
	if !canonicalUUID(id) {
		return Result{}, newError(KindValidation, "The image job id is not a lowercase UUID.", fmt.Errorf("prompt id %q", id))
	}
	r := &comfyRun{c: c, req: req, id: id, logger: c.up.logger.With("backend", "comfyui", "prompt_id", id)}
	if resumeID == "" {
		// Fill first: an invalid request is refused before anything is recorded.
		if _, err := r.body(); err != nil {
			return Result{}, err
		}
		if recordID != nil {
			if err := recordID(ctx, id); err != nil {
				return Result{}, fmt.Errorf("record prompt id %s: %w", id, err)
			}
		}
		if err := r.submit(ctx); err != nil {
			return Result{}, r.fail(ctx, err)
		}
	} else {
		r.logger.InfoContext(ctx, "following ComfyUI prompt")
		where, entry, err := r.locate(ctx)
		if err != nil {
			return Result{}, r.fail(ctx, err)
		}
		switch where {
		case promptDone:
			res, err := r.finish(ctx, entry)
			if err != nil {
				return Result{}, r.fail(ctx, err)
			}
			return res, nil
		case promptAbsent:
			r.logger.InfoContext(ctx, "ComfyUI never received the prompt; submitting it")
			if err := r.submit(ctx); err != nil {
				return Result{}, r.fail(ctx, err)
			}
		}
	}
	res, err := r.wait(ctx)
	if err != nil {
		return Result{}, r.fail(ctx, err)
	}
	return res, nil
}

// comfyRun is the state of one Run.
type comfyRun struct {
	c       *ComfyUI
	req     Request
	id      string
	logger  *slog.Logger
	payload []byte // the POST /prompt body, built on first use
	reached bool   // some request got a successful answer
	submits int    // submissions ComfyUI accepted
}

// promptState is where a prompt is on the server.
type promptState int

const (
	promptAbsent promptState = iota // in neither the queue nor the history
	promptQueued                    // pending or running
	promptDone                      // in the history (success, error or interrupt)
)

// body returns the POST /prompt body, filling the workflow on first use.
func (r *comfyRun) body() ([]byte, error) {
	if r.payload != nil {
		return r.payload, nil
	}
	graph, err := r.c.workflow.Fill(r.req)
	if err != nil {
		return nil, err
	}
	b, err := marshalJSON(comfySubmit{Prompt: graph, ClientID: r.c.clientID, PromptID: r.id})
	if err != nil {
		return nil, fmt.Errorf("encode prompt: %w", err)
	}
	r.payload = b
	return b, nil
}

// submit queues the prompt. Before retrying a failed attempt it checks
// whether the attempt reached ComfyUI after all, so the prompt is never
// queued twice.
func (r *comfyRun) submit(ctx context.Context) error {
	body, err := r.body()
	if err != nil {
		return err
	}
	if r.submits >= maxComfySubmits {
		return newError(KindFailed, "The image server lost the job repeatedly.", fmt.Errorf("prompt lost after %d submissions", r.submits))
	}
	b := r.c.up.newBackoff()
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			where, _, err := r.locate(ctx)
			if err != nil {
				return err
			}
			if where != promptAbsent {
				r.logger.InfoContext(ctx, "an earlier submission reached ComfyUI")
				r.submits++
				return nil
			}
		}
		resp, err := r.c.up.do(ctx, exchange{method: http.MethodPost, url: r.c.base + "/prompt", body: body, api: true})
		if err == nil {
			switch {
			case resp.status >= 200 && resp.status < 300:
				r.reached = true
				r.submits++
				return r.accepted(ctx, resp.body)
			case resp.status == http.StatusConflict:
				// Current ComfyUI answers 409 {"error": "prompt_id already
				// exists"} when it has this id queued, running or done: an
				// earlier attempt arrived after all. Follow it; if it is
				// not there, wait resubmits it.
				r.reached = true
				r.submits++
				r.logger.InfoContext(ctx, "ComfyUI already has the prompt; following it", "answer", snippet(resp.body))
				return nil
			case resp.status == http.StatusBadRequest:
				return newError(KindValidation, comfyValidationMessage(resp.body), &statusError{status: resp.status, body: resp.body})
			case !retryStatus(resp.status):
				return refusedError(resp)
			}
			err = &statusError{status: resp.status, body: resp.body}
		} else if !transient(err) {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		if werr := b.wait(ctx, r.logger, "submit prompt", attempt, err, resp.header); werr != nil {
			return err
		}
	}
}

// accepted reads POST /prompt's success answer.
func (r *comfyRun) accepted(ctx context.Context, body []byte) error {
	var ans struct {
		PromptID   string                     `json:"prompt_id"`
		Number     json.Number                `json:"number"`
		NodeErrors map[string]json.RawMessage `json:"node_errors"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return fmt.Errorf("decode POST /prompt answer: %w", err)
	}
	if len(ans.NodeErrors) > 0 {
		r.logger.WarnContext(ctx, "ComfyUI skips some workflow outputs", "node_errors", snippet(body))
	}
	if ans.PromptID != "" && ans.PromptID != r.id {
		// ComfyUI before 0.3.44 ignores prompt_id and picks its own; follow
		// that one, though a crash now can no longer be resumed.
		r.logger.WarnContext(ctx, "ComfyUI ignored the client-chosen prompt_id; upgrade ComfyUI to 0.3.44 or later", "server_prompt_id", ans.PromptID)
		r.id = ans.PromptID
	}
	r.logger.InfoContext(ctx, "ComfyUI queued the prompt", "number", ans.Number.String())
	return nil
}

// wait polls until the prompt is in the history, resubmitting it if
// ComfyUI lost it, and returns its image.
func (r *comfyRun) wait(ctx context.Context) (Result, error) {
	for {
		if err := sleep(ctx, r.c.up.poll); err != nil {
			return Result{}, err
		}
		entry, found, err := r.history(ctx)
		if err != nil {
			return Result{}, err
		}
		if found {
			return r.finish(ctx, entry)
		}
		where, entry, err := r.locate(ctx)
		if err != nil {
			return Result{}, err
		}
		switch where {
		case promptDone:
			return r.finish(ctx, entry)
		case promptAbsent:
			r.logger.WarnContext(ctx, "ComfyUI lost the prompt (restarted?); submitting it again")
			if err := r.submit(ctx); err != nil {
				return Result{}, err
			}
		}
	}
}

// locate tells whether ComfyUI has the prompt. It reads the queue before the
// history: a prompt leaves the queue only after its history entry is
// written, so "absent from both" is never a prompt finishing in between.
func (r *comfyRun) locate(ctx context.Context) (promptState, comfyHistoryEntry, error) {
	queued, err := r.inQueue(ctx)
	if err != nil {
		return promptAbsent, comfyHistoryEntry{}, err
	}
	if queued {
		return promptQueued, comfyHistoryEntry{}, nil
	}
	entry, found, err := r.history(ctx)
	if err != nil {
		return promptAbsent, comfyHistoryEntry{}, err
	}
	if found {
		return promptDone, entry, nil
	}
	return promptAbsent, comfyHistoryEntry{}, nil
}

// comfyHistoryEntry is the part of a /history entry this package reads.
type comfyHistoryEntry struct {
	Outputs map[string]json.RawMessage `json:"outputs"`
	Status  struct {
		StatusStr string            `json:"status_str"`
		Completed bool              `json:"completed"`
		Messages  []json.RawMessage `json:"messages"`
	} `json:"status"`
}

// history reads GET /history/{prompt_id}; found is false while the prompt is
// queued or running, and for unknown ids.
func (r *comfyRun) history(ctx context.Context) (comfyHistoryEntry, bool, error) {
	resp, err := r.c.up.call(ctx, "read history", exchange{method: http.MethodGet, url: r.c.base + "/history/" + url.PathEscape(r.id), api: true})
	if err != nil {
		return comfyHistoryEntry{}, false, err
	}
	if resp.status != http.StatusOK {
		return comfyHistoryEntry{}, false, refusedError(resp)
	}
	r.reached = true
	var all map[string]comfyHistoryEntry
	if err := json.Unmarshal(resp.body, &all); err != nil {
		return comfyHistoryEntry{}, false, fmt.Errorf("decode history: %w", err)
	}
	entry, found := all[r.id]
	return entry, found, nil
}

// inQueue reports whether GET /queue lists the prompt as running or pending.
func (r *comfyRun) inQueue(ctx context.Context) (bool, error) {
	resp, err := r.c.up.call(ctx, "read queue", exchange{method: http.MethodGet, url: r.c.base + "/queue", api: true})
	if err != nil {
		return false, err
	}
	if resp.status != http.StatusOK {
		return false, refusedError(resp)
	}
	r.reached = true
	var q struct {
		Running []json.RawMessage `json:"queue_running"`
		Pending []json.RawMessage `json:"queue_pending"`
	}
	if err := json.Unmarshal(resp.body, &q); err != nil {
		return false, fmt.Errorf("decode queue: %w", err)
	}
	for _, item := range append(q.Running, q.Pending...) {
		// item = [number, prompt_id, graph, extra_data, outputs_to_execute]
		var fields []json.RawMessage
		if err := json.Unmarshal(item, &fields); err != nil || len(fields) < 2 {
			continue
		}
		var id string
		if err := json.Unmarshal(fields[1], &id); err == nil && id == r.id {
			return true, nil
		}
	}
	return false, nil
}

// finish turns a history entry into the result: the failure it reports, or
// its first output image.
func (r *comfyRun) finish(ctx context.Context, entry comfyHistoryEntry) (Result, error) {
	switch entry.Status.StatusStr {
	case "success", "":
	case "error":
		msg, cause := comfyExecutionError(entry.Status.Messages)
		return Result{}, newError(KindFailed, msg, cause)
	default:
		return Result{}, newError(KindFailed, "The image server reported an unknown job status.", fmt.Errorf("status_str %q", entry.Status.StatusStr))
	}
	img, ok := firstComfyImage(entry.Outputs)
	if !ok {
		return Result{}, newError(KindInvalidOutput, "The image job finished without an image.", errors.New("history outputs hold no images"))
	}
	q := url.Values{"filename": {img.Filename}, "subfolder": {img.Subfolder}, "type": {img.Type}}
	resp, err := r.c.up.call(ctx, "download image", exchange{method: http.MethodGet, url: r.c.base + "/view?" + q.Encode(), api: true, image: true})
	if err != nil {
		return Result{}, err
	}
	switch {
	case resp.status == http.StatusOK:
	case resp.status == http.StatusNotFound || resp.status == http.StatusBadRequest || resp.status == http.StatusForbidden:
		return Result{}, newError(KindInvalidOutput, "The image server could not deliver the finished image.",
			fmt.Errorf("GET /view %s: %w", img.Filename, &statusError{status: resp.status, body: resp.body}))
	default:
		return Result{}, refusedError(resp)
	}
	res, err := decodeImage(resp.body)
	if err != nil {
		return Result{}, err
	}
	r.logger.InfoContext(ctx, "ComfyUI image ready", "content_type", res.ContentType, "width", res.Width, "height", res.Height, "bytes", len(res.Data))
	return res, nil
}

// comfyImage is one item of a history output's "images" list.
type comfyImage struct {
	Filename  string `json:"filename"`
	Subfolder string `json:"subfolder"`
	Type      string `json:"type"`
}

// firstComfyImage returns the first image of the outputs in node id order,
// preferring saved images over previews (type "temp").
func firstComfyImage(outputs map[string]json.RawMessage) (comfyImage, bool) {
	ids := make([]string, 0, len(outputs))
	for id := range outputs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return nodeIDLess(ids[i], ids[j]) })
	var preview *comfyImage
	for _, id := range ids {
		var out struct {
			Images []comfyImage `json:"images"`
		}
		if err := json.Unmarshal(outputs[id], &out); err != nil {
			continue
		}
		for _, img := range out.Images {
			if img.Filename == "" {
				continue
			}
			if img.Type != "temp" {
				return img, true
			}
			if preview == nil {
				preview = &img
			}
		}
	}
	if preview != nil {
		return *preview, true
	}
	return comfyImage{}, false
}

// nodeIDLess orders node ids numerically when both are numbers.
func nodeIDLess(a, b string) bool {
	na, errA := strconv.Atoi(a)
	nb, errB := strconv.Atoi(b)
	if errA == nil && errB == nil {
		return na < nb
	}
	if (errA == nil) != (errB == nil) {
		return errA == nil
	}
	return a < b
}

// comfyExecutionError builds the message for a history entry with status_str
// "error" from its execution_error or execution_interrupted message.
func comfyExecutionError(messages []json.RawMessage) (string, error) {
	for _, m := range messages {
		var pair []json.RawMessage
		if err := json.Unmarshal(m, &pair); err != nil || len(pair) != 2 {
			continue
		}
		var event string
		if err := json.Unmarshal(pair[0], &event); err != nil {
			continue
		}
		var data struct {
			NodeID           string `json:"node_id"`
			NodeType         string `json:"node_type"`
			ExceptionMessage string `json:"exception_message"`
			ExceptionType    string `json:"exception_type"`
		}
		switch event {
		case "execution_error":
			_ = json.Unmarshal(pair[1], &data) // best effort: a partial record still names the node
			msg := strings.TrimSpace(data.ExceptionMessage)
			if msg == "" {
				msg = "unknown error"
			}
			where := ""
			if data.NodeID != "" {
				where = " in node " + data.NodeID
				if data.NodeType != "" {
					where += " (" + data.NodeType + ")"
				}
			}
			return "Image generation failed" + where + ": " + msg,
				fmt.Errorf("execution_error node %s %s: %s: %s", data.NodeID, data.NodeType, data.ExceptionType, truncateBytes(data.ExceptionMessage, 1000))
		case "execution_interrupted":
			return "Image generation was interrupted on the image server.", errors.New("execution_interrupted")
		}
	}
	return "Image generation failed on the image server.", errors.New(`history status_str "error" without execution_error`)
}

// comfyValidationMessage builds the message for POST /prompt's 400 answer
// {"error": {type, message, details}, "node_errors": {id: {errors, class_type}}}.
func comfyValidationMessage(body []byte) string {
	const prefix = "The image server rejected the workflow"
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return prefix + "."
	}
	type apiErr struct {
		Type    string `json:"type"`
		Message string `json:"message"`
		Details string `json:"details"`
	}
	var parts []string
	var nodes map[string]struct {
		Errors    []apiErr `json:"errors"`
		ClassType string   `json:"class_type"`
	}
	if err := json.Unmarshal(top["node_errors"], &nodes); err == nil {
		ids := make([]string, 0, len(nodes))
		for id := range nodes {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return nodeIDLess(ids[i], ids[j]) })
		for _, id := range ids {
			n := nodes[id]
			for _, e := range n.Errors {
				parts = append(parts, fmt.Sprintf("node %s (%s): %s", id, n.ClassType, joinNonEmpty(": ", e.Message, e.Details)))
			}
		}
	}
	var e apiErr
	if err := json.Unmarshal(top["error"], &e); err == nil {
		if len(parts) == 0 {
			parts = append(parts, joinNonEmpty(": ", e.Message, e.Details))
		} else if e.Message != "" {
			parts = append([]string{e.Message}, parts...)
		}
	} else if s := jsonString(top["error"]); s != "" {
		parts = append([]string{s}, parts...)
	}
	msg := joinNonEmpty("; ", parts...)
	if msg == "" {
		return prefix + "."
	}
	return prefix + ": " + msg
}

// joinNonEmpty joins the non-empty strings with sep.
func joinNonEmpty(sep string, s ...string) string {
	var kept []string
	for _, v := range s {
		if v = strings.TrimSpace(v); v != "" {
			kept = append(kept, v)
		}
	}
	return strings.Join(kept, sep)
}

// refusedError is the error for a non-2xx answer that retrying will not fix
// (401, 403, 404, …): the upstream is misconfigured or refuses us.
func refusedError(resp response) error {
	return newError(KindUnavailable, fmt.Sprintf("The image service refused the request (HTTP %d).", resp.status),
		&statusError{status: resp.status, body: resp.body})
}

// fail turns an error that ended a Run into an *Error. When ctx ended, it is
// KindTimeout if the upstream had answered at all, else KindUnavailable; on a
// deadline the prompt is also removed from ComfyUI's pending queue.
func (r *comfyRun) fail(ctx context.Context, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if ctx.Err() == nil {
		return newError(KindUnavailable, "The image service answered unexpectedly.", err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && r.reached {
		r.abandon(ctx)
	}
	return ctxError(ctx, r.reached, err)
}

// abandon stops the prompt on ComfyUI: POST /queue {"delete"} removes it if
// pending, then POST /interrupt {"prompt_id"} stops it if it is the one
// running (a no-op otherwise). Without the interrupt a running prompt keeps
// the GPU, and ComfyUI runs one prompt at a time.
func (r *comfyRun) abandon(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	post := func(path string, v any) error {
		body, err := marshalJSON(v)
		if err != nil {
			return err
		}
		resp, err := r.c.up.do(ctx, exchange{method: http.MethodPost, url: r.c.base + path, body: body, api: true})
		if err == nil && resp.status != http.StatusOK {
			err = &statusError{status: resp.status, body: resp.body}
		}
		return err
	}
	if err := post("/queue", map[string][]string{"delete": {r.id}}); err != nil {
		r.logger.WarnContext(ctx, "could not remove the prompt from ComfyUI's queue", "err", err)
	}
	// Delete first: a prompt that starts running in between is still
	// caught by the interrupt.
	if err := post("/interrupt", map[string]string{"prompt_id": r.id}); err != nil {
		r.logger.WarnContext(ctx, "could not interrupt the prompt on ComfyUI", "err", err)
		return
	}
	r.logger.InfoContext(ctx, "gave up on the prompt; asked ComfyUI to drop it if pending and interrupt it if running")
}

// ctxError is the error for a Run whose ctx ended; last is the failure seen
// when it did.
func ctxError(ctx context.Context, reached bool, last error) error {
	cause := ctx.Err()
	if last != nil && !errors.Is(last, cause) {
		cause = fmt.Errorf("%w (last error: %v)", cause, last)
	}
	if reached {
		return newError(KindTimeout, "The image was not ready in time.", cause)
	}
	return newError(KindUnavailable, "The image service could not be reached.", cause)
}

// canonicalUUID reports whether s is a UUID in canonical lowercase form.
func canonicalUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}
