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
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"luna/internal/imagegen/comfywire"
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
	objectInfo    map[string]comfywire.NodeClass
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
		objectInfo:  fluxSchnellObjectInfo(),
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
		mux.HandleFunc("GET "+prefix+"/object_info", f.getObjectInfo)
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

func (f *ComfyUIFake) postPrompt(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	var req comfywire.PromptRequest
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
		comfywire.WriteError(w, comfywire.Error{Type: "no_prompt", Message: "No prompt provided", Details: "No prompt provided"}, nil)
		return
	}
	id := sub.PromptID
	if req.PromptID == nil {
		id = uuid.NewString()
	} else if !comfywire.CanonicalUUID(id) { // newer ComfyUI requires this form
		comfywire.WriteError(w, comfywire.Error{Type: "invalid_prompt_id", Message: "Invalid prompt_id", Details: "prompt_id must be a canonical lowercase UUID"}, nil)
		return
	}
	graph, ok := decodeGraph(req.Prompt)
	if !ok {
		comfywire.WriteError(w, comfywire.Error{Type: "invalid_prompt", Message: "Cannot execute because a node is missing the class_type property."}, nil)
		return
	}
	if len(outputNodes(graph)) == 0 {
		comfywire.WriteError(w, comfywire.Error{Type: "prompt_no_outputs", Message: "Prompt has no outputs"}, nil)
		return
	}
	if f.reject {
		nodeErrors := map[string]comfywire.NodeError{"30": {
			Errors: []comfywire.Error{{
				Type: "value_not_in_list", Message: "Value not in list",
				Details: "ckpt_name: 'flux1-schnell-fp8.safetensors' not in []",
				ExtraInfo: map[string]any{"input_name": "ckpt_name", "input_config": []any{[]any{}, map[string]any{"tooltip": "The name of the checkpoint (model) to load."}},
					"received_value": "flux1-schnell-fp8.safetensors"},
			}},
			DependentOutputs: []string{"9"}, ClassType: "CheckpointLoaderSimple",
		}}
		comfywire.WriteError(w, comfywire.Error{Type: "prompt_outputs_failed_validation", Message: "Prompt outputs failed validation",
			Details: "Value not in list: ckpt_name: 'flux1-schnell-fp8.safetensors' not in []"}, nodeErrors)
		return
	}
	if _, exists := f.jobs[id]; exists {
		// Current server.py: PromptQueue.put refuses a known id (queued,
		// running or in history), after validation and numbering.
		f.number++
		comfywire.WritePromptIDExists(w)
		return
	}
	extra := map[string]any{"client_id": req.ClientID}
	number := f.queue(id, req.Prompt, extra, graph)
	select {
	case f.submitted <- id:
	default:
	}
	writeJSON(w, http.StatusOK, comfywire.PromptResponse{PromptID: id, Number: number, NodeErrors: map[string]any{}})
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
		if ct, _ := node["class_type"].(string); comfywire.IsOutputClass(ct) {
			ids = append(ids, id)
		}
	}
	comfywire.SortNodeIDs(ids)
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
	var info comfywire.PromptInfo
	info.ExecInfo.QueueRemaining = pending
	writeJSON(w, http.StatusOK, info)
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
	j.entry = comfywire.InterruptedEntry(queueItem(j), j.id, time.Now().UnixMilli(), samplerNode)
}

// samplerNode is where the built-in workflow's runs fail or are
// interrupted: the sampler, after the loaders and the text encoder.
var samplerNode = comfywire.FailedNode{ID: "31", ClassType: "KSampler", Executed: []string{"30", "27", "6", "33"}}

// complete writes the history entry of j. f.mu is held.
func (f *ComfyUIFake) complete(j *comfyJob) {
	now := time.Now().UnixMilli()
	if f.execError != "" {
		j.entry = comfywire.ErrorEntry(queueItem(j), j.id, now, samplerNode, f.execError)
		return
	}
	images := map[string][]comfywire.ImageRef{}
	for _, node := range j.outputs {
		f.fileCounter++
		name := fmt.Sprintf("ComfyUI_%05d_.png", f.fileCounter)
		f.files[name] = j.id
		images[node] = []comfywire.ImageRef{{Filename: name, Type: "output"}}
	}
	j.entry = comfywire.SuccessEntry(queueItem(j), j.id, images, now, now)
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
	return comfywire.QueueItem(j.number, j.id, j.graph, j.extra, j.outputs)
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
	writeJSON(w, http.StatusOK, comfywire.Queue{Running: running, Pending: pending})
}

func (f *ComfyUIFake) postQueue(w http.ResponseWriter, r *http.Request) {
	var req comfywire.QueueRequest
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
	var req comfywire.InterruptRequest
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
	ref, status := comfywire.ParseView(r.URL.Query())
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	name := ref.Filename
	f.mu.Lock()
	_, ok := f.files[name]
	img := bytes.Clone(f.image)
	f.mu.Unlock()
	if !ok || ref.Type != "output" || ref.Subfolder != "" {
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

// EditObjectInfo changes what GET /object_info answers: by default the node
// classes of the built-in FLUX schnell workflow, with its checkpoint among
// CheckpointLoaderSimple's choices.
func (f *ComfyUIFake) EditObjectInfo(edit func(info map[string]comfywire.NodeClass)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	edit(f.objectInfo)
}

func (f *ComfyUIFake) getObjectInfo(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	writeJSON(w, http.StatusOK, f.objectInfo)
}

// FluxCheckpoint is the checkpoint the built-in workflow loads.
const FluxCheckpoint = "flux1-schnell-fp8.safetensors"

// fluxSchnellObjectInfo is GET /object_info for the node classes of the
// built-in workflow, shaped as ComfyUI answers it (shared/reference
// comfyui-protocol.md): combo inputs both as [[choice…], {…}] (legacy) and
// ["COMBO", {"options": […]}] (V3 nodes).
func fluxSchnellObjectInfo() map[string]comfywire.NodeClass {
	str := []any{"STRING", map[string]any{"multiline": true}}
	link := func(typ string) []any { return []any{typ} }
	classes := map[string]map[string]any{
		"CheckpointLoaderSimple": {"ckpt_name": []any{[]string{FluxCheckpoint, "sd_xl_base_1.0.safetensors"}, map[string]any{}}},
		"CLIPTextEncode":         {"text": str, "clip": link("CLIP")},
		"EmptySD3LatentImage":    {"width": []any{"INT", map[string]any{"default": 1024}}, "height": []any{"INT", map[string]any{}}, "batch_size": []any{"INT", map[string]any{}}},
		"KSampler": {
			"model": link("MODEL"), "seed": []any{"INT", map[string]any{}}, "steps": []any{"INT", map[string]any{}},
			"cfg": []any{"FLOAT", map[string]any{}}, "positive": link("CONDITIONING"), "negative": link("CONDITIONING"),
			"latent_image": link("LATENT"), "denoise": []any{"FLOAT", map[string]any{}},
			"sampler_name": []any{"COMBO", map[string]any{"options": []string{"euler", "dpmpp_2m"}}},
			"scheduler":    []any{[]string{"normal", "simple"}, map[string]any{}},
		},
		"VAEDecode": {"samples": link("LATENT"), "vae": link("VAE")},
		"SaveImage": {"images": link("IMAGE"), "filename_prefix": []any{"STRING", map[string]any{"default": "ComfyUI"}}},
	}
	info := map[string]comfywire.NodeClass{}
	for name, required := range classes {
		info[name] = comfywire.NodeClass{
			Input: comfywire.NodeInputs{Required: required, Optional: map[string]any{}, Hidden: map[string]any{}},
			Name:  name, DisplayName: name, Category: "test", OutputNode: comfywire.IsOutputClass(name),
			Output: []string{}, OutputIsList: []bool{}, OutputName: []string{}, PythonModule: "nodes",
		}
	}
	return info
}
