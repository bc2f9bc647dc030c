// Package comfywire writes the server side of ComfyUI's HTTP API as
// described in /work/shared/reference (comfyui-protocol.md): the bodies of
// POST /prompt, GET /prompt, GET /queue, POST /queue, POST /interrupt,
// GET /history, GET /view's query and GET /object_info, and the error
// bodies (400 {"error", "node_errors"}, 409 "prompt_id already exists").
//
// It is shared by Luna's built-in demo image endpoint (imagegen/demo) and
// by the imagegentest fake, so both speak what a real ComfyUI speaks, as
// vllmwire does for the LLM side.
package comfywire

import (
	"cmp"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// ContentType is the Content-Type of ComfyUI's JSON answers.
const ContentType = "application/json; charset=utf-8"

// PromptRequest is the body of POST /prompt.
type PromptRequest struct {
	Prompt   json.RawMessage `json:"prompt"`
	ClientID string          `json:"client_id"`
	PromptID *string         `json:"prompt_id"` // optional; a canonical lowercase UUID
}

// PromptResponse is POST /prompt's 200 answer.
type PromptResponse struct {
	PromptID   string         `json:"prompt_id"`
	Number     int            `json:"number"`
	NodeErrors map[string]any `json:"node_errors"`
}

// PromptInfo is GET /prompt's answer.
type PromptInfo struct {
	ExecInfo struct {
		QueueRemaining int `json:"queue_remaining"`
	} `json:"exec_info"`
}

// QueueRequest is the body of POST /queue: delete pending prompts by id, or
// clear every pending prompt.
type QueueRequest struct {
	Delete []string `json:"delete"`
	Clear  bool     `json:"clear"`
}

// InterruptRequest is the body of POST /interrupt; no prompt_id interrupts
// whatever runs.
type InterruptRequest struct {
	PromptID string `json:"prompt_id"`
}

// Queue is GET /queue's answer: tuples made by QueueItem.
type Queue struct {
	Running []any `json:"queue_running"`
	Pending []any `json:"queue_pending"`
}

// QueueItem is a queue and history tuple [number, prompt_id, graph,
// extra_data, outputs_to_execute].
func QueueItem(number int, promptID string, graph json.RawMessage, extra map[string]any, outputs []string) []any {
	var g any
	_ = json.Unmarshal(graph, &g)
	return []any{number, promptID, g, extra, outputs}
}

// Error is one error in ComfyUI's shape.
type Error struct {
	Type      string         `json:"type"`
	Message   string         `json:"message"`
	Details   string         `json:"details"`
	ExtraInfo map[string]any `json:"extra_info"`
}

// NodeError is one entry of node_errors: the errors of one node.
type NodeError struct {
	Errors           []Error  `json:"errors"`
	DependentOutputs []string `json:"dependent_outputs"`
	ClassType        string   `json:"class_type"`
}

// WriteError answers 400 {"error": e, "node_errors": nodeErrors}, as
// POST /prompt does for a prompt it refuses.
func WriteError(w http.ResponseWriter, e Error, nodeErrors map[string]NodeError) {
	if e.ExtraInfo == nil {
		e.ExtraInfo = map[string]any{}
	}
	if nodeErrors == nil {
		nodeErrors = map[string]NodeError{}
	}
	for id, ne := range nodeErrors {
		for i := range ne.Errors {
			if ne.Errors[i].ExtraInfo == nil {
				ne.Errors[i].ExtraInfo = map[string]any{}
			}
		}
		nodeErrors[id] = ne
	}
	WriteJSON(w, http.StatusBadRequest, map[string]any{"error": e, "node_errors": nodeErrors})
}

// WritePromptIDExists answers 409 as current ComfyUI does for a prompt_id
// it already has, queued, running or in its history.
func WritePromptIDExists(w http.ResponseWriter) {
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(http.StatusConflict)
	_, _ = io.WriteString(w, `{"error": "prompt_id already exists"}`)
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// CanonicalUUID reports whether s is a UUID in canonical lowercase form,
// the only prompt_id newer ComfyUI accepts.
func CanonicalUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}

// IsOutputClass reports whether a node class makes an image output.
func IsOutputClass(classType string) bool {
	return classType == "SaveImage" || classType == "PreviewImage"
}

// SortNodeIDs sorts node ids as ComfyUI orders outputs: numbers first,
// numerically, then the rest by name.
func SortNodeIDs(ids []string) {
	slices.SortFunc(ids, func(a, b string) int {
		na, errA := strconv.Atoi(a)
		nb, errB := strconv.Atoi(b)
		switch {
		case errA == nil && errB == nil:
			return cmp.Compare(na, nb)
		case errA == nil:
			return -1
		case errB == nil:
			return 1
		}
		return strings.Compare(a, b)
	})
}

// ImageRef names an output image: what a history entry lists and GET /view
// is asked for.
type ImageRef struct {
	Filename  string `json:"filename"`
	Subfolder string `json:"subfolder"`
	Type      string `json:"type"`
}

// ParseView reads GET /view's query as ComfyUI does: status is 0 for a
// well-formed request, else the status ComfyUI answers (400 for a bad type
// or file name, 404 without a filename). A missing type is "output".
func ParseView(q url.Values) (ref ImageRef, status int) {
	ref = ImageRef{Filename: q.Get("filename"), Subfolder: q.Get("subfolder"), Type: q.Get("type")}
	if ref.Type == "" {
		ref.Type = "output"
	}
	switch {
	case ref.Type != "output" && ref.Type != "input" && ref.Type != "temp":
		return ref, http.StatusBadRequest
	case !q.Has("filename"):
		return ref, http.StatusNotFound
	case ref.Filename == "" || strings.HasPrefix(ref.Filename, "/") || strings.Contains(ref.Filename, ".."):
		return ref, http.StatusBadRequest
	}
	return ref, 0
}

// Message is one [kind, data] entry of a history entry's status messages.
func Message(kind, promptID string, timestamp int64, more map[string]any) []any {
	data := map[string]any{"prompt_id": promptID, "timestamp": timestamp}
	for k, v := range more {
		data[k] = v
	}
	return []any{kind, data}
}

// startMessages are the messages every run begins with.
func startMessages(promptID string, at int64) []any {
	return []any{
		Message("execution_start", promptID, at, nil),
		Message("execution_cached", promptID, at, map[string]any{"nodes": []any{}}),
	}
}

// SuccessEntry is the history entry of a prompt whose output nodes made
// the images given, started at start and finished at end (Unix ms).
func SuccessEntry(item []any, promptID string, images map[string][]ImageRef, start, end int64) map[string]any {
	outputs, meta := map[string]any{}, map[string]any{}
	for node, refs := range images {
		list := make([]any, len(refs))
		for i, r := range refs {
			list[i] = r
		}
		outputs[node] = map[string]any{"images": list}
		meta[node] = map[string]any{"node_id": node, "display_node": node, "parent_node": nil, "real_node_id": node}
	}
	return map[string]any{
		"prompt": item, "outputs": outputs, "meta": meta,
		"status": map[string]any{"status_str": "success", "completed": true,
			"messages": append(startMessages(promptID, start), Message("execution_success", promptID, end, nil))},
	}
}

// FailedNode is the node where a run stopped.
type FailedNode struct {
	ID, ClassType string
	Executed      []string // the nodes that ran before it
}

// ErrorEntry is the history entry of a prompt whose node raised an
// exception (status_str "error", an execution_error message).
func ErrorEntry(item []any, promptID string, at int64, node FailedNode, message string) map[string]any {
	return failedEntry(item, promptID, at, Message("execution_error", promptID, at, map[string]any{
		"node_id": node.ID, "node_type": node.ClassType, "executed": anyList(node.Executed),
		"exception_message": message, "exception_type": "RuntimeError",
		"traceback":      []any{"Traceback (most recent call last):\n", "  File \"execution.py\", line 496, in execute\n", "RuntimeError: " + message + "\n"},
		"current_inputs": map[string]any{}, "current_outputs": map[string]any{},
	}))
}

// InterruptedEntry is the history entry of a prompt interrupted while it
// ran (POST /interrupt): status_str "error", an execution_interrupted message.
func InterruptedEntry(item []any, promptID string, at int64, node FailedNode) map[string]any {
	return failedEntry(item, promptID, at, Message("execution_interrupted", promptID, at, map[string]any{
		"node_id": node.ID, "node_type": node.ClassType, "executed": anyList(node.Executed),
	}))
}

func failedEntry(item []any, promptID string, at int64, last []any) map[string]any {
	return map[string]any{
		"prompt": item, "outputs": map[string]any{}, "meta": map[string]any{},
		"status": map[string]any{"status_str": "error", "completed": false,
			"messages": append(startMessages(promptID, at), last)},
	}
}

func anyList(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// NodeClass is one node class of GET /object_info. Each input spec is
// [TYPE, {options}], a combo as [[choice…], {…}] (legacy) or
// ["COMBO", {"options": [choice…]}] (V3 nodes).
type NodeClass struct {
	Input        NodeInputs `json:"input"`
	Name         string     `json:"name"`
	DisplayName  string     `json:"display_name"`
	Category     string     `json:"category"`
	OutputNode   bool       `json:"output_node"`
	Output       []string   `json:"output"`
	OutputIsList []bool     `json:"output_is_list"`
	OutputName   []string   `json:"output_name"`
	PythonModule string     `json:"python_module"`
}

// NodeInputs are a node class's input specs by name.
type NodeInputs struct {
	Required map[string]any `json:"required"`
	Optional map[string]any `json:"optional"`
	Hidden   map[string]any `json:"hidden"`
}
