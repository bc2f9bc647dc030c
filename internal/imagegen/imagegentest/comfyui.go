package imagegentest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// ComfyUISubmission is one POST /prompt body the fake received.
type ComfyUISubmission struct {
	// Body is the raw request body.
	Body []byte
	// PromptID and ClientID are the body's prompt_id and client_id.
	PromptID, ClientID string
	// Prompt is the decoded "prompt" graph (numbers as float64), or nil.
	Prompt map[string]any
}

// ComfyUIFake is an httptest server that behaves like ComfyUI's HTTP API:
// POST /prompt validates and queues (409 "prompt_id already exists" for an
// id it already has, queued, running or done), GET /queue lists pending and
// running prompts, GET /history/{id} answers {} until the prompt is done,
// GET /view serves the output image, POST /queue {"delete"} drops pending
// prompts and POST /interrupt stops the running one. A prompt advances on
// GET /history/{id} polls: pending before the first, running after it, done
// at the n-th (SetFinishAfterPolls, default 2). Like ComfyUI it runs one
// prompt at a time: a prompt stays pending while another one runs.
// Every route also answers under /api.
type ComfyUIFake struct {
	// URL is the server's base URL, for ComfyUIConfig.BaseURL.
	URL string

	srv       *httptest.Server
	faults    faults
	submitted chan string

	mu            sync.Mutex
	image         []byte
	reject        bool
	execError     string
	neverFinish   bool
	finishAfter   int
	headerName    string
	headerValue   string
	number        int
	fileCounter   int
	jobs          map[string]*comfyJob
	files         map[string]string // output filename → prompt id
	submissions   []ComfyUISubmission
	counts        map[string]int
	historyPolls  int
	queueReads    int
	queueDeletes  []string
	interrupts    []string // prompt_id of each POST /interrupt; "" for a global one
	unauthorized  int
	requestsTotal int
}

// comfyJob is one queued prompt.
type comfyJob struct {
	id      string
	number  int
	graph   json.RawMessage
	extra   map[string]any
	outputs []string
	polls   int
	entry   map[string]any // the history entry, once done
}

// NewComfyUI starts a ComfyUI fake, closed when the test ends.
func NewComfyUI(t testing.TB) *ComfyUIFake {
	t.Helper()
	f := &ComfyUIFake{
		submitted:   make(chan string, 100),
		image:       SmallPNG(16, 12),
		finishAfter: 2,
		jobs:        map[string]*comfyJob{},
		files:       map[string]string{},
		counts:      map[string]int{},
	}
	mux := http.NewServeMux()
	for _, prefix := range []string{"", "/api"} {
		mux.HandleFunc("POST "+prefix+"/prompt", f.postPrompt)
		mux.HandleFunc("GET "+prefix+"/prompt", f.getPrompt)
		mux.HandleFunc("GET "+prefix+"/history/{id}", f.getHistoryID)
		mux.HandleFunc("GET "+prefix+"/history", f.getHistory)
		mux.HandleFunc("GET "+prefix+"/queue", f.getQueue)
		mux.HandleFunc("POST "+prefix+"/queue", f.postQueue)
		mux.HandleFunc("POST "+prefix+"/interrupt", f.postInterrupt)
		mux.HandleFunc("GET "+prefix+"/view", f.getView)
		mux.HandleFunc("GET "+prefix+"/system_stats", f.getSystemStats)
	}
	handler := f.guard(mux)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if serveFault(&f.faults, w, r, handler) {
			return
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	f.URL = f.srv.URL
	return f
}

// guard checks the required header and ComfyUI's origin rule before next.
func (f *ComfyUIFake) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requestsTotal++
		name, value := f.headerName, f.headerValue
		if name != "" && r.Header.Get(name) != value {
			f.unauthorized++
			f.mu.Unlock()
			http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
			return
		}
		f.mu.Unlock()
		// ComfyUI refuses a loopback Host with a different Origin.
		if origin := r.Header.Get("Origin"); origin != "" {
			if u, err := url.Parse(origin); err == nil && u.Host != r.Host {
				http.Error(w, "403 Forbidden", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Client returns an HTTP client for the fake, whose idle connections close with it.
func (f *ComfyUIFake) Client() *http.Client { return f.srv.Client() }

// Image returns the image the fake serves for finished prompts.
func (f *ComfyUIFake) Image() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.image)
}

// SetImage sets the bytes GET /view serves (any bytes: used to test
// JPEG, WebP or undecodable output).
func (f *ComfyUIFake) SetImage(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.image = bytes.Clone(b)
}

// RejectSubmissions makes POST /prompt answer 400 with node_errors (a
// checkpoint not in the server's list), as ComfyUI does for a workflow that
// fails validation.
func (f *ComfyUIFake) RejectSubmissions(reject bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reject = reject
}

// FailExecution makes prompts finish with history status_str "error" and an
// execution_error whose exception_message is message ("" restores success).
func (f *ComfyUIFake) FailExecution(message string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execError = message
}

// SetNeverFinish keeps prompts running forever (until set back to false).
func (f *ComfyUIFake) SetNeverFinish(never bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.neverFinish = never
}

// SetFinishAfterPolls makes a prompt finish at its n-th GET /history/{id} (default 2).
func (f *ComfyUIFake) SetFinishAfterPolls(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finishAfter = n
}

// FailNext makes the next n requests, whatever their route, fail with mode.
func (f *ComfyUIFake) FailNext(n int, mode Fault) { f.faults.set(n, mode) }

// RequireHeader makes every request without header name = value answer 401,
// as an authenticating proxy in front of ComfyUI would.
func (f *ComfyUIFake) RequireHeader(name, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.headerName, f.headerValue = name, value
}

// Restart forgets every prompt, as a ComfyUI restart does (queue and
// history live in memory).
func (f *ComfyUIFake) Restart() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs = map[string]*comfyJob{}
	f.files = map[string]string{}
}

// Submitted receives the prompt_id of every accepted submission.
func (f *ComfyUIFake) Submitted() <-chan string { return f.submitted }

// Submissions returns every POST /prompt body received, in order.
func (f *ComfyUIFake) Submissions() []ComfyUISubmission {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ComfyUISubmission(nil), f.submissions...)
}

// SubmitCount returns how many POST /prompt bodies carried promptID.
func (f *ComfyUIFake) SubmitCount(promptID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[promptID]
}

// HistoryPolls returns how many GET /history/{id} requests were answered.
func (f *ComfyUIFake) HistoryPolls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.historyPolls
}

// QueueReads returns how many GET /queue requests were answered.
func (f *ComfyUIFake) QueueReads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queueReads
}

// QueueDeletes returns the prompt ids named in POST /queue {"delete": […]}.
func (f *ComfyUIFake) QueueDeletes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.queueDeletes...)
}

// Interrupts returns the prompt ids named in POST /interrupt {"prompt_id"},
// in order; a global interrupt (no prompt_id) is recorded as "".
func (f *ComfyUIFake) Interrupts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.interrupts...)
}

// Unauthorized returns how many requests lacked the required header.
func (f *ComfyUIFake) Unauthorized() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unauthorized
}

// Requests returns how many requests reached the handlers (faults excluded).
func (f *ComfyUIFake) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requestsTotal
}

// Enqueue queues a prompt as if it had been submitted, for tests that
// resume a job submitted by an earlier process. It is counted as a submission.
func (f *ComfyUIFake) Enqueue(promptID string, graph map[string]any) {
	raw, err := json.Marshal(graph)
	if err != nil {
		panic("imagegentest: encode graph: " + err.Error())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[promptID]++
	f.queue(promptID, raw, map[string]any{"client_id": "earlier-process"}, graph)
}

// comfyErrorBody is ComfyUI's 400 answer.
func comfyErrorBody(typ, message, details string, nodeErrors map[string]any) map[string]any {
	if nodeErrors == nil {
		nodeErrors = map[string]any{}
	}
	return map[string]any{
		"error":       map[string]any{"type": typ, "message": message, "details": details, "extra_info": map[string]any{}},
		"node_errors": nodeErrors,
	}
}

func (f *ComfyUIFake) postPrompt(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	var req struct {
		Prompt   json.RawMessage `json:"prompt"`
		ClientID string          `json:"client_id"`
		PromptID *string         `json:"prompt_id"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		// aiohttp's request.json() raises and nothing catches it.
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	sub := ComfyUISubmission{Body: body, ClientID: req.ClientID}
	if req.PromptID != nil {
		sub.PromptID = *req.PromptID
	}
	_ = json.Unmarshal(req.Prompt, &sub.Prompt)

	f.mu.Lock()
	defer f.mu.Unlock()
	f.submissions = append(f.submissions, sub)
	f.counts[sub.PromptID]++

	if len(req.Prompt) == 0 || string(req.Prompt) == "null" {
		writeJSON(w, http.StatusBadRequest, comfyErrorBody("no_prompt", "No prompt provided", "No prompt provided", nil))
		return
	}
	id := sub.PromptID
	if req.PromptID == nil {
		id = uuid.NewString()
	} else if !canonicalUUID(id) { // newer ComfyUI requires this form
		writeJSON(w, http.StatusBadRequest, comfyErrorBody("invalid_prompt_id", "Invalid prompt_id", "prompt_id must be a canonical lowercase UUID", nil))
		return
	}
	graph, ok := decodeGraph(req.Prompt)
	if !ok {
		writeJSON(w, http.StatusBadRequest, comfyErrorBody("invalid_prompt", "Cannot execute because a node is missing the class_type property.", "", nil))
		return
	}
	if len(outputNodes(graph)) == 0 {
		writeJSON(w, http.StatusBadRequest, comfyErrorBody("prompt_no_outputs", "Prompt has no outputs", "", nil))
		return
	}
	if f.reject {
		nodeErrors := map[string]any{"30": map[string]any{
			"errors": []any{map[string]any{
				"type": "value_not_in_list", "message": "Value not in list",
				"details": "ckpt_name: 'flux1-schnell-fp8.safetensors' not in []",
				"extra_info": map[string]any{"input_name": "ckpt_name", "input_config": []any{[]any{}, map[string]any{"tooltip": "The name of the checkpoint (model) to load."}},
					"received_value": "flux1-schnell-fp8.safetensors"},
			}},
			"dependent_outputs": []any{"9"}, "class_type": "CheckpointLoaderSimple",
		}}
		writeJSON(w, http.StatusBadRequest, comfyErrorBody("prompt_outputs_failed_validation", "Prompt outputs failed validation",
			"Value not in list: ckpt_name: 'flux1-schnell-fp8.safetensors' not in []", nodeErrors))
		return
	}
	if _, exists := f.jobs[id]; exists {
		// Current server.py: PromptQueue.put refuses a known id (queued,
		// running or in history), after validation and numbering.
		f.number++
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusConflict)
		_, _ = io.WriteString(w, `{"error": "prompt_id already exists"}`)
		return
	}
	extra := map[string]any{"client_id": req.ClientID}
	number := f.queue(id, req.Prompt, extra, graph)
	select {
	case f.submitted <- id:
	default:
	}
	writeJSON(w, http.StatusOK, map[string]any{"prompt_id": id, "number": number, "node_errors": map[string]any{}})
}

// queue adds a pending prompt and returns its number. f.mu is held.
func (f *ComfyUIFake) queue(id string, raw json.RawMessage, extra map[string]any, graph map[string]any) int {
	n := f.number
	f.number++
	f.jobs[id] = &comfyJob{id: id, number: n, graph: raw, extra: extra, outputs: outputNodes(graph)}
	return n
}

// decodeGraph decodes an API-format graph and checks every node has a class_type.
func decodeGraph(raw json.RawMessage) (map[string]any, bool) {
	var graph map[string]any
	if err := json.Unmarshal(raw, &graph); err != nil {
		return nil, false
	}
	for _, n := range graph {
		node, ok := n.(map[string]any)
		if !ok {
			return nil, false
		}
		if ct, ok := node["class_type"].(string); !ok || ct == "" {
			return nil, false
		}
	}
	return graph, true
}

// outputNodes returns the ids of the graph's image output nodes, in order.
func outputNodes(graph map[string]any) []string {
	var ids []string
	for id, n := range graph {
		node, _ := n.(map[string]any)
		if ct, _ := node["class_type"].(string); ct == "SaveImage" || ct == "PreviewImage" {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool {
		a, errA := strconv.Atoi(ids[i])
		b, errB := strconv.Atoi(ids[j])
		if errA == nil && errB == nil {
			return a < b
		}
		return ids[i] < ids[j]
	})
	return ids
}

func (f *ComfyUIFake) getPrompt(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pending := 0
	for _, j := range f.jobs {
		if j.entry == nil {
			pending++
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"exec_info": map[string]any{"queue_remaining": pending}})
}

func (f *ComfyUIFake) getHistoryID(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.historyPolls++
	j, ok := f.jobs[id]
	if !ok {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	// One prompt runs at a time: a pending prompt starts only when no
	// other prompt is running.
	if j.entry == nil && (j.polls > 0 || f.running() == nil) {
		j.polls++
		if !f.neverFinish && j.polls >= f.finishAfter {
			f.complete(j)
		}
	}
	if j.entry == nil {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{id: j.entry})
}

// running returns the running prompt, or nil. f.mu is held.
func (f *ComfyUIFake) running() *comfyJob {
	for _, j := range f.jobs {
		if j.entry == nil && j.polls > 0 {
			return j
		}
	}
	return nil
}

// interrupt ends j as ComfyUI does an interrupted prompt: a history entry
// with status_str "error" and an execution_interrupted message. f.mu is held.
func (f *ComfyUIFake) interrupt(j *comfyJob) {
	now := time.Now().UnixMilli()
	var graph any
	_ = json.Unmarshal(j.graph, &graph)
	j.entry = map[string]any{
		"prompt":  []any{j.number, j.id, graph, j.extra, j.outputs},
		"outputs": map[string]any{},
		"meta":    map[string]any{},
		"status": map[string]any{"status_str": "error", "completed": false, "messages": []any{
			[]any{"execution_start", map[string]any{"prompt_id": j.id, "timestamp": now}},
			[]any{"execution_cached", map[string]any{"nodes": []any{}, "prompt_id": j.id, "timestamp": now}},
			[]any{"execution_interrupted", map[string]any{"prompt_id": j.id, "node_id": "31", "node_type": "KSampler",
				"executed": []any{"30", "27", "6", "33"}, "timestamp": now}},
		}},
	}
}

// complete writes the history entry of j. f.mu is held.
func (f *ComfyUIFake) complete(j *comfyJob) {
	now := time.Now().UnixMilli()
	var graph any
	_ = json.Unmarshal(j.graph, &graph)
	entry := map[string]any{
		"prompt": []any{j.number, j.id, graph, j.extra, j.outputs},
		"meta":   map[string]any{},
	}
	messages := []any{
		[]any{"execution_start", map[string]any{"prompt_id": j.id, "timestamp": now}},
		[]any{"execution_cached", map[string]any{"nodes": []any{}, "prompt_id": j.id, "timestamp": now}},
	}
	if f.execError != "" {
		messages = append(messages, []any{"execution_error", map[string]any{
			"prompt_id": j.id, "node_id": "31", "node_type": "KSampler", "executed": []any{"30", "27", "6", "33"},
			"exception_message": f.execError, "exception_type": "RuntimeError",
			"traceback":      []any{"Traceback (most recent call last):\n", "  File \"execution.py\", line 496, in execute\n", "RuntimeError: " + f.execError + "\n"},
			"current_inputs": map[string]any{}, "current_outputs": map[string]any{}, "timestamp": now,
		}})
		entry["outputs"] = map[string]any{}
		entry["status"] = map[string]any{"status_str": "error", "completed": false, "messages": messages}
		j.entry = entry
		return
	}
	outputs := map[string]any{}
	meta := map[string]any{}
	for _, node := range j.outputs {
		f.fileCounter++
		name := fmt.Sprintf("ComfyUI_%05d_.png", f.fileCounter)
		f.files[name] = j.id
		outputs[node] = map[string]any{"images": []any{map[string]any{"filename": name, "subfolder": "", "type": "output"}}}
		meta[node] = map[string]any{"node_id": node, "display_node": node, "parent_node": nil, "real_node_id": node}
	}
	messages = append(messages, []any{"execution_success", map[string]any{"prompt_id": j.id, "timestamp": now}})
	entry["outputs"] = outputs
	entry["meta"] = meta
	entry["status"] = map[string]any{"status_str": "success", "completed": true, "messages": messages}
	j.entry = entry
}

func (f *ComfyUIFake) getHistory(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	all := map[string]any{}
	for id, j := range f.jobs {
		if j.entry != nil {
			all[id] = j.entry
		}
	}
	writeJSON(w, http.StatusOK, all)
}

// queueItem is a queue tuple [number, prompt_id, graph, extra_data, outputs_to_execute].
func queueItem(j *comfyJob) []any {
	var graph any
	_ = json.Unmarshal(j.graph, &graph)
	return []any{j.number, j.id, graph, j.extra, j.outputs}
}

func (f *ComfyUIFake) getQueue(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queueReads++
	running, pending := []any{}, []any{}
	for _, j := range f.jobs {
		switch {
		case j.entry != nil:
		case j.polls > 0:
			running = append(running, queueItem(j))
		default:
			pending = append(pending, queueItem(j))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"queue_running": running, "queue_pending": pending})
}

func (f *ComfyUIFake) postQueue(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Delete []string `json:"delete"`
		Clear  bool     `json:"clear"`
	}
	_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queueDeletes = append(f.queueDeletes, req.Delete...)
	for id, j := range f.jobs {
		pending := j.entry == nil && j.polls == 0
		if pending && (req.Clear || slices.Contains(req.Delete, id)) {
			delete(f.jobs, id)
		}
	}
	w.WriteHeader(http.StatusOK)
}

// postInterrupt is POST /interrupt: {"prompt_id": id} interrupts that prompt
// only if it is the running one (else nothing happens); no prompt_id, or a
// body that is not JSON, interrupts whatever runs. Always 200, empty.
func (f *ComfyUIFake) postInterrupt(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PromptID string `json:"prompt_id"`
	}
	_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.interrupts = append(f.interrupts, req.PromptID)
	if j := f.running(); j != nil && (req.PromptID == "" || req.PromptID == j.id) {
		f.interrupt(j)
	}
	w.WriteHeader(http.StatusOK)
}

func (f *ComfyUIFake) getView(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name, typ := q.Get("filename"), q.Get("type")
	if typ == "" {
		typ = "output"
	}
	if typ != "output" && typ != "input" && typ != "temp" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if !q.Has("filename") {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	_, ok := f.files[name]
	img := bytes.Clone(f.image)
	f.mu.Unlock()
	if !ok || typ != "output" || q.Get("subfolder") != "" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Content-Disposition", fmt.Sprintf("filename=%q", name))
	_, _ = w.Write(img)
}

func (f *ComfyUIFake) getSystemStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"system": map[string]any{
			"os": "posix", "ram_total": 68719476736, "ram_free": 34359738368, "comfyui_version": "0.3.64",
			"required_frontend_version": "1.27.10", "python_version": "3.12.3", "pytorch_version": "2.8.0+cu128",
			"embedded_python": false, "argv": []any{"main.py", "--listen"},
		},
		"devices": []any{map[string]any{
			"name": "cuda:0 NVIDIA L4 : cudaMallocAsync", "type": "cuda", "index": 0,
			"vram_total": 23580639232, "vram_free": 23000000000, "torch_vram_total": 0, "torch_vram_free": 0,
		}},
	})
}

// canonicalUUID reports whether s is a UUID in canonical lowercase form.
func canonicalUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}
