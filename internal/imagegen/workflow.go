package imagegen

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// fluxSchnellAPI is the FLUX.1 schnell checkpoint workflow in ComfyUI's API
// format, as embedded in ComfyUI_examples' flux_schnell_checkpoint_example.png.
//
//go:embed workflows/flux-schnell-api.json
var fluxSchnellAPI []byte

// defaultSteps is the sampler step count for FLUX.1 schnell (distilled for 4 steps).
const defaultSteps = 4

// InputRef names one input of one workflow node, e.g. {Node: "6", Input: "text"}.
type InputRef struct {
	Node, Input string
}

// IsZero reports whether r names nothing.
func (r InputRef) IsZero() bool { return r.Node == "" && r.Input == "" }

// String formats r as node.inputs.input, for messages.
func (r InputRef) String() string { return r.Node + ".inputs." + r.Input }

// Mapping says which node inputs receive a Request's values. Prompt, Width,
// Height and Seed are required; Steps is optional (zero: the template's own
// value is kept).
type Mapping struct {
	Prompt, Width, Height, Seed, Steps InputRef
}

// DefaultMapping is the mapping of DefaultWorkflow: prompt → 6.inputs.text,
// width/height → 27 (EmptySD3LatentImage), seed and steps → 31 (KSampler).
func DefaultMapping() Mapping {
	return Mapping{
		Prompt: InputRef{Node: "6", Input: "text"},
		Width:  InputRef{Node: "27", Input: "width"},
		Height: InputRef{Node: "27", Input: "height"},
		Seed:   InputRef{Node: "31", Input: "seed"},
		Steps:  InputRef{Node: "31", Input: "steps"},
	}
}

// Workflow is a parsed ComfyUI API-format workflow (node id → node) with the
// Mapping that says where a Request's values go. It is immutable and safe for
// concurrent use.
type Workflow struct {
	nodes   map[string]any // decoded with json.Number, so numbers keep their spelling
	mapping Mapping
	steps   int // 0: keep the template's steps
}

// DefaultWorkflow returns the built-in FLUX.1 schnell workflow (checkpoint
// flux1-schnell-fp8.safetensors, 4 steps) with DefaultMapping.
func DefaultWorkflow() *Workflow {
	w, err := ParseWorkflow(fluxSchnellAPI, DefaultMapping())
	if err != nil {
		panic("imagegen: embedded workflow is invalid: " + err.Error()) // a build defect, caught by the tests
	}
	w.steps = defaultSteps
	return w
}

// LoadWorkflow reads an operator's API-format workflow file (ComfyUI's
// "Export (API)") and checks that every mapped node and input exists.
func LoadWorkflow(path string, mapping Mapping) (*Workflow, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read workflow: %w", err)
	}
	w, err := ParseWorkflow(data, mapping)
	if err != nil {
		return nil, fmt.Errorf("workflow %s: %w", path, err)
	}
	return w, nil
}

// ParseWorkflow parses an API-format workflow and checks that every mapped
// node and input exists and holds a value of the right type (not a link).
func ParseWorkflow(data []byte, mapping Mapping) (*Workflow, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("parse workflow JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("parse workflow JSON: trailing data after the object")
	}
	if _, ok := raw["nodes"].([]any); ok {
		return nil, errors.New("this is a UI-format workflow; export it from ComfyUI in API format")
	}
	if len(raw) == 0 {
		return nil, errors.New("workflow has no nodes")
	}
	for id, n := range raw {
		node, ok := n.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("node %q is not an object", id)
		}
		if ct, ok := node["class_type"].(string); !ok || ct == "" {
			return nil, fmt.Errorf("node %q has no class_type", id)
		}
	}
	w := &Workflow{nodes: raw, mapping: mapping}
	checks := []struct {
		name     string
		ref      InputRef
		required bool
		isString bool
	}{
		{"prompt", mapping.Prompt, true, true},
		{"width", mapping.Width, true, false},
		{"height", mapping.Height, true, false},
		{"seed", mapping.Seed, true, false},
		{"steps", mapping.Steps, false, false},
	}
	for _, c := range checks {
		if c.ref.IsZero() && !c.required {
			continue
		}
		if c.ref.Node == "" || c.ref.Input == "" {
			return nil, fmt.Errorf("mapping for %s needs both a node and an input", c.name)
		}
		v, err := w.input(c.ref)
		if err != nil {
			return nil, fmt.Errorf("mapping for %s: %w", c.name, err)
		}
		switch v.(type) {
		case string:
			if !c.isString {
				return nil, fmt.Errorf("mapping for %s: %s holds a string, want a number", c.name, c.ref)
			}
		case json.Number:
			if c.isString {
				return nil, fmt.Errorf("mapping for %s: %s holds a number, want a string", c.name, c.ref)
			}
		case []any:
			return nil, fmt.Errorf("mapping for %s: %s is a link to another node, not a value", c.name, c.ref)
		default:
			return nil, fmt.Errorf("mapping for %s: %s holds %T, want a value", c.name, c.ref, v)
		}
	}
	return w, nil
}

// input returns the current value of ref.
func (w *Workflow) input(ref InputRef) (any, error) {
	n, ok := w.nodes[ref.Node]
	if !ok {
		return nil, fmt.Errorf("node %q does not exist", ref.Node)
	}
	inputs, ok := n.(map[string]any)["inputs"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("node %q has no inputs object", ref.Node)
	}
	v, ok := inputs[ref.Input]
	if !ok {
		return nil, fmt.Errorf("node %q has no input %q", ref.Node, ref.Input)
	}
	return v, nil
}

// Mapping returns where the workflow's Request values go.
func (w *Workflow) Mapping() Mapping { return w.mapping }

// Steps returns the step count Fill sets, or 0 when it keeps the template's.
func (w *Workflow) Steps() int { return w.steps }

// WithSteps returns a copy of w whose Fill sets the mapped steps input to steps.
func (w *Workflow) WithSteps(steps int) (*Workflow, error) {
	if w.mapping.Steps.IsZero() {
		return nil, errors.New("workflow mapping has no steps input")
	}
	if steps < 1 || steps > 10000 {
		return nil, fmt.Errorf("steps %d out of range 1…10000", steps)
	}
	c := *w
	c.steps = steps
	return &c, nil
}

// Fill validates req and returns a deep copy of the workflow with the mapped
// inputs set to req's values (and the steps, when set); nothing else changes
// and the template is never modified. The values are JSON values, so the
// prompt reaches ComfyUI exactly as given. An invalid req gives a
// KindValidation *Error.
func (w *Workflow) Fill(req Request) (map[string]any, error) {
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	out := deepCopy(w.nodes).(map[string]any)
	set := func(ref InputRef, v any) {
		out[ref.Node].(map[string]any)["inputs"].(map[string]any)[ref.Input] = v
	}
	set(w.mapping.Prompt, req.Prompt)
	set(w.mapping.Width, req.Width)
	set(w.mapping.Height, req.Height)
	set(w.mapping.Seed, req.Seed)
	if w.steps > 0 && !w.mapping.Steps.IsZero() {
		set(w.mapping.Steps, w.steps)
	}
	return out, nil
}

// validateRequest checks the parts of req every backend needs.
func validateRequest(req Request) error {
	switch {
	case strings.TrimSpace(req.Prompt) == "":
		return newError(KindValidation, "The prompt is empty.", errors.New("empty prompt"))
	case !utf8.ValidString(req.Prompt):
		return newError(KindValidation, "The prompt is not valid UTF-8 text.", errors.New("prompt is not valid UTF-8"))
	case !validSide(req.Width) || !validSide(req.Height):
		return newError(KindValidation, "The image width and height must each be 512, 768 or 1024 pixels.",
			fmt.Errorf("unsupported size %dx%d", req.Width, req.Height))
	case req.Seed < 0:
		return newError(KindValidation, "The seed must not be negative.", fmt.Errorf("seed %d", req.Seed))
	}
	return nil
}

// validSide reports whether n is a supported image side.
func validSide(n int) bool { return n == 512 || n == 768 || n == 1024 }

// deepCopy copies the maps and slices of a decoded JSON value.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = deepCopy(e)
		}
		return s
	default:
		return v
	}
}
