package imagegen_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"luna/internal/imagegen"
)

func TestDefaultWorkflow(t *testing.T) {
	t.Parallel()
	w := imagegen.DefaultWorkflow()
	if got, want := w.Mapping(), imagegen.DefaultMapping(); got != want {
		t.Errorf("mapping = %+v, want %+v", got, want)
	}
	if got, want := w.Steps(), 4; got != want {
		t.Errorf("steps = %d, want %d", got, want)
	}
	want := imagegen.Mapping{
		Prompt: imagegen.InputRef{Node: "6", Input: "text"},
		Width:  imagegen.InputRef{Node: "27", Input: "width"},
		Height: imagegen.InputRef{Node: "27", Input: "height"},
		Seed:   imagegen.InputRef{Node: "31", Input: "seed"},
		Steps:  imagegen.InputRef{Node: "31", Input: "steps"},
	}
	if got := imagegen.DefaultMapping(); got != want {
		t.Errorf("DefaultMapping = %+v, want %+v", got, want)
	}
}

func TestFillSetsOnlyMappedInputs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  imagegen.Request
	}{
		{"512", imagegen.Request{Prompt: "p", Width: 512, Height: 512, Seed: 0}},
		{"768x1024", imagegen.Request{Prompt: "a \"cat\" \\ {x} \\n\n日本 🙂", Width: 768, Height: 1024, Seed: 1<<63 - 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := imagegen.DefaultWorkflow().Fill(tt.req)
			if err != nil {
				t.Fatalf("Fill: %v", err)
			}
			raw, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			filled := decodeJSON(t, raw).(map[string]any)
			want := decodeJSON(t, readTestFile(t, "workflows/flux-schnell-api.json")).(map[string]any)
			setInput(want, "6", "text", tt.req.Prompt)
			setInput(want, "27", "width", json.Number(strconv.Itoa(tt.req.Width)))
			setInput(want, "27", "height", json.Number(strconv.Itoa(tt.req.Height)))
			setInput(want, "31", "seed", json.Number(strconv.FormatInt(tt.req.Seed, 10)))
			if !reflect.DeepEqual(filled, want) {
				t.Errorf("Fill = %s, want the template with only the mapped inputs set", raw)
			}
		})
	}
}

func TestFillDoesNotMutateTemplate(t *testing.T) {
	t.Parallel()
	w := imagegen.DefaultWorkflow()
	first, err := w.Fill(imagegen.Request{Prompt: "first", Width: 512, Height: 512, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Scribble over everything the first copy shares structure with.
	for _, n := range first {
		node := n.(map[string]any)
		node["class_type"] = "Scribbled"
		for k, v := range node["inputs"].(map[string]any) {
			if link, ok := v.([]any); ok {
				link[0] = "scribbled"
			}
			node["inputs"].(map[string]any)[k] = "scribbled"
		}
	}
	second, err := w.Fill(imagegen.Request{Prompt: "second", Width: 1024, Height: 1024, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(second)
	if err != nil {
		t.Fatal(err)
	}
	want := decodeJSON(t, readTestFile(t, "workflows/flux-schnell-api.json")).(map[string]any)
	setInput(want, "6", "text", "second")
	setInput(want, "27", "width", json.Number("1024"))
	setInput(want, "27", "height", json.Number("1024"))
	setInput(want, "31", "seed", json.Number("2"))
	if got := decodeJSON(t, raw); !reflect.DeepEqual(got, any(want)) {
		t.Errorf("second Fill = %s, want the untouched template with the second request", raw)
	}
}

func TestFillRejectsInvalidRequests(t *testing.T) {
	t.Parallel()
	valid := imagegen.Request{Prompt: "p", Width: 512, Height: 512, Seed: 1}
	tests := []struct {
		name string
		edit func(r *imagegen.Request)
	}{
		{"empty prompt", func(r *imagegen.Request) { r.Prompt = " \n\t" }},
		{"invalid UTF-8", func(r *imagegen.Request) { r.Prompt = "bad \xff byte" }},
		{"width 500", func(r *imagegen.Request) { r.Width = 500 }},
		{"height 2048", func(r *imagegen.Request) { r.Height = 2048 }},
		{"zero size", func(r *imagegen.Request) { r.Width, r.Height = 0, 0 }},
		{"negative seed", func(r *imagegen.Request) { r.Seed = -5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := valid
			tt.edit(&req)
			_, err := imagegen.DefaultWorkflow().Fill(req)
			wantKind(t, err, imagegen.KindValidation)
		})
	}
}

func TestLoadWorkflow(t *testing.T) {
	t.Parallel()
	custom := `{
  "3": {"class_type": "KSampler", "inputs": {"noise_seed": 1, "model": ["4", 0]}},
  "4": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-schnell.safetensors"}},
  "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
  "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
  "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["3", 0]}}
}`
	customMapping := imagegen.Mapping{
		Prompt: imagegen.InputRef{Node: "7", Input: "text"},
		Width:  imagegen.InputRef{Node: "5", Input: "width"},
		Height: imagegen.InputRef{Node: "5", Input: "height"},
		Seed:   imagegen.InputRef{Node: "3", Input: "noise_seed"},
	}
	withPrompt := func(ref imagegen.InputRef) imagegen.Mapping {
		m := customMapping
		m.Prompt = ref
		return m
	}
	tests := []struct {
		name    string
		file    string
		mapping imagegen.Mapping
		wantErr string
	}{
		{name: "valid", file: custom, mapping: customMapping},
		{name: "reference workflow", file: string(readTestFile(t, "workflows/flux-schnell-api.json")), mapping: imagegen.DefaultMapping()},
		{name: "missing node", file: custom, mapping: withPrompt(imagegen.InputRef{Node: "6", Input: "text"}), wantErr: `node "6" does not exist`},
		{name: "missing input", file: custom, mapping: withPrompt(imagegen.InputRef{Node: "7", Input: "prompt"}), wantErr: `node "7" has no input "prompt"`},
		{name: "link instead of value", file: custom, mapping: withPrompt(imagegen.InputRef{Node: "7", Input: "clip"}), wantErr: "is a link"},
		{name: "number for the prompt", file: custom, mapping: withPrompt(imagegen.InputRef{Node: "5", Input: "batch_size"}), wantErr: "want a string"},
		{name: "no seed mapping", file: custom, mapping: imagegen.Mapping{Prompt: customMapping.Prompt, Width: customMapping.Width, Height: customMapping.Height}, wantErr: "mapping for seed"},
		{name: "steps half set", file: custom, mapping: func() imagegen.Mapping {
			m := customMapping
			m.Steps = imagegen.InputRef{Node: "3"}
			return m
		}(), wantErr: "mapping for steps"},
		{name: "UI format", file: `{"last_node_id": 9, "nodes": [{"id": 6, "type": "CLIPTextEncode"}], "links": []}`, mapping: customMapping, wantErr: "UI-format"},
		{name: "not JSON", file: `{"6": `, mapping: customMapping, wantErr: "parse workflow JSON"},
		{name: "node without class_type", file: `{"7": {"inputs": {"text": ""}}}`, mapping: customMapping, wantErr: "no class_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "workflow.json")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			w, err := imagegen.LoadWorkflow(path, tt.mapping)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadWorkflow error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadWorkflow: %v", err)
			}
			filled, err := w.Fill(imagegen.Request{Prompt: "hello", Width: 768, Height: 512, Seed: 7})
			if err != nil {
				t.Fatalf("Fill: %v", err)
			}
			m := w.Mapping()
			if got, want := input(filled, m.Prompt.Node, m.Prompt.Input), any("hello"); got != want {
				t.Errorf("prompt input = %v, want %v", got, want)
			}
			if got, want := input(filled, m.Seed.Node, m.Seed.Input), any(int64(7)); got != want {
				t.Errorf("seed input = %v (%T), want %v", got, got, want)
			}
		})
	}
}

func TestLoadWorkflowMissingFile(t *testing.T) {
	t.Parallel()
	if _, err := imagegen.LoadWorkflow(filepath.Join(t.TempDir(), "absent.json"), imagegen.DefaultMapping()); err == nil {
		t.Fatal("LoadWorkflow of a missing file succeeded")
	}
}

func TestWithSteps(t *testing.T) {
	t.Parallel()
	w := imagegen.DefaultWorkflow()
	w8, err := w.WithSteps(8)
	if err != nil {
		t.Fatal(err)
	}
	filled, err := w8.Fill(imagegen.Request{Prompt: "p", Width: 512, Height: 512})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := input(filled, "31", "steps"), any(8); got != want {
		t.Errorf("steps = %v, want %v", got, want)
	}
	if got, want := w.Steps(), 4; got != want {
		t.Errorf("original steps = %d, want %d", got, want)
	}
	for _, bad := range []int{0, -1, 10001} {
		if _, err := w.WithSteps(bad); err == nil {
			t.Errorf("WithSteps(%d) succeeded", bad)
		}
	}
}

func FuzzParseWorkflow(f *testing.F) {
	f.Add(readTestFile(f, "workflows/flux-schnell-api.json"))
	f.Add([]byte(`{"6": {"class_type": "CLIPTextEncode", "inputs": {"text": ["1", 0]}}}`))
	f.Add([]byte(`{"nodes": []}`))
	f.Add([]byte(`{"6": {"class_type": "X", "inputs": null}, "27": 5}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := imagegen.ParseWorkflow(data, imagegen.DefaultMapping())
		if err != nil {
			return
		}
		filled, err := w.Fill(imagegen.Request{Prompt: "fuzz", Width: 512, Height: 512, Seed: 3})
		if err != nil {
			t.Fatalf("Fill of a parsed workflow: %v", err)
		}
		if got, want := input(filled, "6", "text"), any("fuzz"); got != want {
			t.Errorf("prompt input = %v, want %v", got, want)
		}
	})
}

func FuzzFillPrompt(f *testing.F) {
	f.Add("a \"cat\" \\ {x} \\n\n日本 🙂")
	f.Add(`"}, "9": {"class_type": "Evil"}, "x": {"`)
	f.Add("<script>&amp;\u2028\u0000")
	w := imagegen.DefaultWorkflow()
	f.Fuzz(func(t *testing.T, prompt string) {
		filled, err := w.Fill(imagegen.Request{Prompt: prompt, Width: 512, Height: 512})
		if err != nil {
			if got, want := imagegen.KindOf(err), imagegen.KindValidation; got != want {
				t.Fatalf("Fill error kind = %q, want %q", got, want)
			}
			return
		}
		raw, err := json.Marshal(filled)
		if err != nil {
			t.Fatal(err)
		}
		var back map[string]any
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		if got := input(back, "6", "text"); got != any(prompt) {
			t.Errorf("prompt after a JSON round trip = %q, want %q", got, prompt)
		}
		if got, want := len(back), 7; got != want {
			t.Errorf("%d nodes after filling, want %d", got, want)
		}
	})
}
