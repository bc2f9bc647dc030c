// Package demo is Luna's built-in demo image model: an HTTP handler that
// speaks ComfyUI's HTTP API (POST /prompt, GET /history, GET and POST /queue,
// POST /interrupt, GET /view, GET /system_stats, in ComfyUI's shapes) and, instead of running the
// workflow, draws a real PNG. When no image backend is configured, Luna
// serves it in-process (package inprocess), reachable by its own ComfyUI
// client only, so that the first run works without a GPU and still goes
// through the real ComfyUI client (DESIGN.md section 2.1). It lists every
// prompt it was given, so it must never be reachable from outside.
//
// It reads the prompt, size and seed where imagegen.DefaultMapping puts them
// (6.inputs.text, 27.inputs.width/height, 31.inputs.seed); a missing size or
// seed gets a default, a missing prompt node is a validation error with
// node_errors. The image depends only on prompt, seed and size: a gradient
// and discs coloured from a hash, "LUNA DEMO", and the prompt's first words.
// A prompt is done RenderDelay after it was queued; the last 200 prompts are
// kept in memory and images are drawn when /view asks for them.
package demo

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/opentype"

	"luna/internal/imagegen"
	"luna/internal/imagegen/comfywire"
)

// Version is what GET /system_stats reports as comfyui_version.
const Version = "luna-demo"

const (
	defaultRenderDelay = 1500 * time.Millisecond
	maxJobs            = 200
	maxBodyBytes       = 1 << 20
	defaultSide        = 1024
	minSide            = 16
	defaultMaxSide     = 2048
	defaultRenders     = 2
	outputPrefix       = "LunaDemo"
)

// Options configures the demo handler.
type Options struct {
	// RenderDelay is how long a prompt "runs" (default 1.5s; negative: done at once).
	RenderDelay time.Duration
	// Logger receives one line per queued prompt (nil discards).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MaxSide is the largest width or height accepted (default 2048);
	// Luna sets it to the largest resolution it asks for.
	MaxSide int
	// MaxConcurrentRenders bounds the images drawn at once (default 2);
	// further /view requests wait their turn.
	MaxConcurrentRenders int
}

// handler serves the demo ComfyUI.
type handler struct {
	delay   time.Duration
	logger  *slog.Logger
	now     func() time.Time
	painter *painter
	mapping imagegen.Mapping
	mux     *http.ServeMux
	maxSide int
	renders chan struct{} // a slot per concurrent render

	mu          sync.Mutex
	jobs        map[string]*job
	order       []string          // prompt ids, oldest first
	files       map[string]string // output filename → prompt id
	number      int
	fileCounter int
}

// job is one queued prompt.
type job struct {
	id            string
	number        int
	graph         json.RawMessage
	extra         map[string]any
	outputNode    string
	prompt        string
	seed          string
	width, height int
	created       time.Time
	doneAt        time.Time
	filename      string
}

// NewHandler returns the demo handler. It serves its routes relative to
// where it is mounted (and again under /api, as ComfyUI does): mount it with
// http.StripPrefix and use that prefix as the ComfyUI base URL.
func NewHandler(opts Options) http.Handler {
	delay := opts.RenderDelay
	switch {
	case delay == 0:
		delay = defaultRenderDelay
	case delay < 0:
		delay = 0
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	f, err := opentype.Parse(gobold.TTF)
	if err != nil {
		panic("demo: parse embedded Go Bold font: " + err.Error()) // cannot happen with the vendored font
	}
	h := &handler{
		delay:   delay,
		logger:  logger,
		now:     now,
		painter: &painter{font: f},
		mapping: imagegen.DefaultMapping(),
		jobs:    map[string]*job{},
		files:   map[string]string{},
		mux:     http.NewServeMux(),
		maxSide: cmp.Or(opts.MaxSide, defaultMaxSide),
		renders: make(chan struct{}, cmp.Or(opts.MaxConcurrentRenders, defaultRenders)),
	}
	for _, prefix := range []string{"", "/api"} {
		h.mux.HandleFunc("POST "+prefix+"/prompt", h.postPrompt)
		h.mux.HandleFunc("GET "+prefix+"/prompt", h.getPrompt)
		h.mux.HandleFunc("GET "+prefix+"/history/{id}", h.getHistoryID)
		h.mux.HandleFunc("GET "+prefix+"/history", h.getHistory)
		h.mux.HandleFunc("GET "+prefix+"/queue", h.getQueue)
		h.mux.HandleFunc("POST "+prefix+"/queue", h.postQueue)
		h.mux.HandleFunc("POST "+prefix+"/interrupt", h.postInterrupt)
		h.mux.HandleFunc("GET "+prefix+"/view", h.getView)
		h.mux.HandleFunc("GET "+prefix+"/system_stats", h.getSystemStats)
	}
	return h
}

// ServeHTTP routes the request.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) { comfywire.WriteJSON(w, status, v) }

// node is one decoded workflow node.
type node struct {
	ClassType string         `json:"class_type"`
	Inputs    map[string]any `json:"inputs"`
}

func (h *handler) postPrompt(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		comfywire.WriteError(w, comfywire.Error{Type: "invalid_prompt", Message: "Request body too large or unreadable", Details: err.Error()}, nil)
		return
	}
	var req comfywire.PromptRequest
	if err := json.Unmarshal(body, &req); err != nil {
		comfywire.WriteError(w, comfywire.Error{Type: "invalid_prompt", Message: "Request body is not valid JSON", Details: err.Error()}, nil)
		return
	}
	if len(req.Prompt) == 0 || string(req.Prompt) == "null" {
		comfywire.WriteError(w, comfywire.Error{Type: "no_prompt", Message: "No prompt provided", Details: "No prompt provided"}, nil)
		return
	}
	id := uuid.NewString()
	if req.PromptID != nil {
		id = *req.PromptID
		if !comfywire.CanonicalUUID(id) {
			comfywire.WriteError(w, comfywire.Error{Type: "invalid_prompt_id", Message: "Invalid prompt_id", Details: "prompt_id must be a canonical lowercase UUID"}, nil)
			return
		}
	}
	dec := json.NewDecoder(bytes.NewReader(req.Prompt))
	dec.UseNumber()
	var graph map[string]node
	if err := dec.Decode(&graph); err != nil {
		comfywire.WriteError(w, comfywire.Error{Type: "invalid_prompt", Message: "Prompt is not an API-format workflow", Details: err.Error()}, nil)
		return
	}
	var outputs []string
	for nodeID, n := range graph {
		if n.ClassType == "" {
			comfywire.WriteError(w, comfywire.Error{Type: "invalid_prompt", Message: "Cannot execute because a node is missing the class_type property.",
				Details: "Node ID '#" + nodeID + "'", ExtraInfo: map[string]any{"node_id": nodeID}}, nil)
			return
		}
		if comfywire.IsOutputClass(n.ClassType) {
			outputs = append(outputs, nodeID)
		}
	}
	if len(outputs) == 0 {
		comfywire.WriteError(w, comfywire.Error{Type: "prompt_no_outputs", Message: "Prompt has no outputs", Details: ""}, nil)
		return
	}
	comfywire.SortNodeIDs(outputs)
	j, nodeErrors := h.readJob(graph, outputs)
	if len(nodeErrors) > 0 {
		comfywire.WriteError(w, comfywire.Error{Type: "prompt_outputs_failed_validation", Message: "Prompt outputs failed validation", Details: firstDetails(nodeErrors)}, nodeErrors)
		return
	}
	j.id = id
	j.graph = req.Prompt
	j.extra = map[string]any{"client_id": req.ClientID}
	j.outputNode = outputs[0]
	prefix := outputPrefix
	if p, ok := graph[j.outputNode].Inputs["filename_prefix"].(string); ok && safePrefix(p) {
		prefix = p
	}
	number := h.add(j, prefix)
	h.logger.InfoContext(r.Context(), "demo image queued", "prompt_id", j.id, "width", j.width, "height", j.height)
	writeJSON(w, http.StatusOK, comfywire.PromptResponse{PromptID: j.id, Number: number, NodeErrors: map[string]any{}})
}

// readJob reads the prompt, size and seed from the graph where the default
// mapping puts them.
func (h *handler) readJob(graph map[string]node, outputs []string) (*job, map[string]comfywire.NodeError) {
	j := &job{width: min(defaultSide, h.maxSide), height: min(defaultSide, h.maxSide), seed: "0"}
	nodeErrors := map[string]comfywire.NodeError{}
	fail := func(ref imagegen.InputRef, classType string, e comfywire.Error) {
		if e.ExtraInfo == nil {
			e.ExtraInfo = map[string]any{"input_name": ref.Input}
		}
		ne := nodeErrors[ref.Node]
		ne.Errors = append(ne.Errors, e)
		ne.DependentOutputs = outputs
		ne.ClassType = classType
		nodeErrors[ref.Node] = ne
	}

	ref := h.mapping.Prompt
	n, ok := graph[ref.Node]
	switch text, isText := n.Inputs[ref.Input].(string); {
	case !ok:
		fail(ref, "CLIPTextEncode", comfywire.Error{Type: "required_input_missing", Message: "Required input is missing",
			Details: fmt.Sprintf("the demo image model reads the prompt from node %s, input %s, and the workflow has no node %s", ref.Node, ref.Input, ref.Node)})
	case !isText:
		fail(ref, n.ClassType, comfywire.Error{Type: "invalid_input_type", Message: "Input is not a string",
			Details: fmt.Sprintf("%s: the demo image model needs the prompt text as a string", ref.Input)})
	default:
		j.prompt = text
	}

	side := func(ref imagegen.InputRef, dst *int) {
		n, ok := graph[ref.Node]
		if !ok {
			return
		}
		v, ok := n.Inputs[ref.Input]
		if !ok {
			return
		}
		num, isNum := v.(json.Number)
		px, err := strconv.Atoi(num.String())
		switch {
		case !isNum || err != nil:
			if _, isLink := v.([]any); isLink {
				return
			}
			fail(ref, n.ClassType, comfywire.Error{Type: "invalid_input_type", Message: "Input is not an integer", Details: fmt.Sprintf("%s: %v", ref.Input, v)})
		case px < minSide:
			fail(ref, n.ClassType, comfywire.Error{Type: "value_smaller_than_min", Message: "Value smaller than min", Details: fmt.Sprintf("%s: %d < %d", ref.Input, px, minSide)})
		case px > h.maxSide:
			fail(ref, n.ClassType, comfywire.Error{Type: "value_bigger_than_max", Message: "Value bigger than max", Details: fmt.Sprintf("%s: %d > %d", ref.Input, px, h.maxSide)})
		default:
			*dst = px
		}
	}
	side(h.mapping.Width, &j.width)
	side(h.mapping.Height, &j.height)

	ref = h.mapping.Seed
	if n, ok := graph[ref.Node]; ok {
		if num, isNum := n.Inputs[ref.Input].(json.Number); isNum {
			if seed, err := strconv.ParseUint(num.String(), 10, 64); err == nil {
				j.seed = strconv.FormatUint(seed, 10)
			} else {
				fail(ref, n.ClassType, comfywire.Error{Type: "value_smaller_than_min", Message: "Value smaller than min", Details: fmt.Sprintf("%s: %s is not an integer in 0…2^64-1", ref.Input, num)})
			}
		}
	}
	return j, nodeErrors
}

// firstDetails returns the details of the first node error, for the top-level error.
func firstDetails(nodeErrors map[string]comfywire.NodeError) string {
	ids := make([]string, 0, len(nodeErrors))
	for id := range nodeErrors {
		ids = append(ids, id)
	}
	comfywire.SortNodeIDs(ids)
	for _, id := range ids {
		for _, e := range nodeErrors[id].Errors {
			return e.Message + ": " + e.Details
		}
	}
	return ""
}

// add stores j (evicting the oldest prompt beyond maxJobs) and returns its
// number. A prompt id already known keeps its first job.
func (h *handler) add(j *job, prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old, ok := h.jobs[j.id]; ok {
		return old.number
	}
	j.number = h.number
	h.number++
	h.fileCounter++
	j.filename = fmt.Sprintf("%s_%05d_.png", prefix, h.fileCounter)
	j.created = h.now()
	j.doneAt = j.created.Add(h.delay)
	h.jobs[j.id] = j
	h.files[j.filename] = j.id
	h.order = append(h.order, j.id)
	for len(h.order) > maxJobs {
		oldest := h.jobs[h.order[0]]
		delete(h.files, oldest.filename)
		delete(h.jobs, oldest.id)
		h.order = h.order[1:]
	}
	return j.number
}

// done reports whether j has finished "rendering". h.mu is held.
func (h *handler) done(j *job) bool { return !h.now().Before(j.doneAt) }

// entry is j's history entry. h.mu is held.
func (h *handler) entry(j *job) map[string]any {
	images := map[string][]comfywire.ImageRef{j.outputNode: {{Filename: j.filename, Type: "output"}}}
	return comfywire.SuccessEntry(queueItem(j), j.id, images, j.created.UnixMilli(), j.doneAt.UnixMilli())
}

// queueItem is j's queue and history tuple.
func queueItem(j *job) []any {
	return comfywire.QueueItem(j.number, j.id, j.graph, j.extra, []string{j.outputNode})
}

func (h *handler) getPrompt(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	remaining := 0
	for _, j := range h.jobs {
		if !h.done(j) {
			remaining++
		}
	}
	var info comfywire.PromptInfo
	info.ExecInfo.QueueRemaining = remaining
	writeJSON(w, http.StatusOK, info)
}

func (h *handler) getHistoryID(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	h.mu.Lock()
	defer h.mu.Unlock()
	j, ok := h.jobs[id]
	if !ok || !h.done(j) {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{id: h.entry(j)})
}

// getHistory answers the finished prompts, oldest first, windowed like
// ComfyUI: max_items alone takes the newest; offset skips from the start.
func (h *handler) getHistory(w http.ResponseWriter, r *http.Request) {
	maxItems, errMax := strconv.Atoi(r.URL.Query().Get("max_items"))
	offset, errOff := strconv.Atoi(r.URL.Query().Get("offset"))
	h.mu.Lock()
	defer h.mu.Unlock()
	var finished []*job
	for _, id := range h.order {
		if j := h.jobs[id]; h.done(j) {
			finished = append(finished, j)
		}
	}
	if errOff != nil || offset < 0 {
		offset = 0
		if errMax == nil && maxItems >= 0 {
			offset = max(0, len(finished)-maxItems)
		}
	}
	offset = min(offset, len(finished))
	end := len(finished)
	if errMax == nil && maxItems >= 0 {
		end = min(end, offset+maxItems)
	}
	all := map[string]any{}
	for _, j := range finished[offset:end] {
		all[j.id] = h.entry(j)
	}
	writeJSON(w, http.StatusOK, all)
}

func (h *handler) getQueue(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	running := []any{}
	for _, id := range h.order {
		j := h.jobs[id]
		if h.done(j) {
			continue
		}
		running = append(running, queueItem(j))
	}
	writeJSON(w, http.StatusOK, comfywire.Queue{Running: running, Pending: []any{}})
}

// postQueue accepts {"delete": […]} and {"clear": true}. Demo prompts start
// at once, so none is ever pending and there is nothing to remove.
func (h *handler) postQueue(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxBodyBytes))
	w.WriteHeader(http.StatusOK)
}

// postInterrupt accepts POST /interrupt {"prompt_id"} like ComfyUI (200,
// empty); a demo prompt is done at its time whatever happens, so there is
// nothing to stop.
func (h *handler) postInterrupt(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxBodyBytes))
	w.WriteHeader(http.StatusOK)
}

func (h *handler) getView(w http.ResponseWriter, r *http.Request) {
	ref, status := comfywire.ParseView(r.URL.Query())
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	name := ref.Filename
	h.mu.Lock()
	var j *job
	if id, ok := h.files[name]; ok && ref.Type == "output" && ref.Subfolder == "" {
		if candidate := h.jobs[id]; h.done(candidate) {
			j = candidate
		}
	}
	h.mu.Unlock()
	if j == nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	select {
	case h.renders <- struct{}{}:
	case <-r.Context().Done():
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	data, err := h.painter.render(j.prompt, j.seed, j.width, j.height)
	<-h.renders
	if err != nil {
		h.logger.ErrorContext(r.Context(), "demo image render failed", "prompt_id", j.id, "err", err)
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Content-Disposition", fmt.Sprintf("filename=%q", name))
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	_, _ = w.Write(data)
}

func (h *handler) getSystemStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"system": map[string]any{
			"os": "luna", "ram_total": 0, "ram_free": 0, "comfyui_version": Version,
			"required_frontend_version": "", "installed_templates_version": "", "required_templates_version": "",
			"python_version": "none (Luna demo image model)", "pytorch_version": "none", "embedded_python": false, "argv": []string{"luna", "demo"},
		},
		"devices": []any{map[string]any{
			"name": "Luna demo renderer (CPU)", "type": "cpu", "index": 0,
			"vram_total": 0, "vram_free": 0, "torch_vram_total": 0, "torch_vram_free": 0,
		}},
	})
}

// safePrefix reports whether a filename_prefix is plain enough to use in a file name.
func safePrefix(p string) bool {
	if p == "" || len(p) > 64 {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
