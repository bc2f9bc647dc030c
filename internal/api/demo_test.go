package api_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"luna/internal/app"
	"luna/internal/imagegen/imagegentest"
	"luna/internal/llm/llmtest"
	"luna/internal/store"
)

// formerDemoPaths are where the demo endpoints used to be mounted on the
// public server; the demo image endpoint listed every user's prompts and
// served their pictures there.
var formerDemoPaths = []struct{ method, path, body string }{
	{"GET", "/demo/v1/models", ""},
	{"POST", "/demo/v1/chat/completions", `{"model":"luna-demo","messages":[{"role":"user","content":"hi"}]}`},
	{"GET", "/demo/comfyui/history", ""},
	{"GET", "/demo/comfyui/history?max_items=50", ""},
	{"GET", "/demo/comfyui/api/history", ""},
	{"GET", "/demo/comfyui/queue", ""},
	{"GET", "/demo/comfyui/view?filename=LunaDemo_00001_.png&type=output", ""},
	{"GET", "/demo/comfyui/system_stats", ""},
	{"POST", "/demo/comfyui/prompt", `{"prompt":{"9":{"class_type":"SaveImage","inputs":{}},"6":{"class_type":"CLIPTextEncode","inputs":{"text":"x"}},"27":{"class_type":"EmptySD3LatentImage","inputs":{"width":2048,"height":2048}}}}`},
}

// The demo endpoints serve Luna's own clients in-process only: the public
// server answers 404 on every path they used to have, whatever the mode.
func TestDemoEndpointsAreNotPublic(t *testing.T) {
	modes := map[string]func(t *testing.T) func(*app.Config){
		"demo mode": func(t *testing.T) func(*app.Config) { return func(c *app.Config) { c.Demo = true } },
		"real models, no image backend": func(t *testing.T) func(*app.Config) {
			fake := llmtest.New(t)
			return func(c *app.Config) { c.ModelsFile = modelsFile(t, fake.BaseURL(), testModelKeys) }
		},
		"real models and image backend": func(t *testing.T) func(*app.Config) {
			fake, comfy := llmtest.New(t), imagegentest.NewComfyUI(t)
			return func(c *app.Config) {
				c.ModelsFile = modelsFile(t, fake.BaseURL(), testModelKeys)
				c.Images.Backend, c.Images.ComfyUIURL = "comfyui", comfy.URL
			}
		},
	}
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		for name, mode := range modes {
			t.Run(name, func(t *testing.T) {
				s := newTestServer(t, dialect, mode(t))
				token := s.signup("demo@example.com")
				for _, p := range formerDemoPaths {
					for _, tok := range []string{"", token} {
						var body any
						if p.body != "" {
							body = p.body
						}
						r := s.do(p.method, p.path, tok, body)
						if r.status != http.StatusNotFound {
							t.Errorf("%s %s (token %v): %d %.200s, want 404", p.method, p.path, tok != "", r.status, r.body)
							continue
						}
						if code := r.errorCode(t); code != "not_found" {
							t.Errorf("%s %s: code %q", p.method, p.path, code)
						}
					}
				}
			})
		}
	})
}

// Demo mode works end to end through the real clients: the model client
// streams a reply from the in-process demo model, and the ComfyUI client
// has the in-process demo endpoint draw a picture.
func TestDemoModeEndToEnd(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		s := newTestServer(t, dialect, func(c *app.Config) {
			c.Demo = true
			c.Chat = fastChat
			fastImages(c)
			// The demo endpoint really draws the picture: give it time on a
			// busy machine under the race detector.
			c.Images.Jobs.Timeout = time.Minute
		})
		token := s.signup("demo@example.com")

		r := s.do("POST", "/v1/conversations", token, map[string]string{"modelId": app.DemoModelID})
		if r.status != http.StatusCreated {
			t.Fatalf("create conversation: %d %s", r.status, r.body)
		}
		conv := r.json(t)["id"].(string)
		m := s.waitFinal(token, s.send(token, conv, "Hello, demo"))
		if m["status"] != "complete" || !strings.Contains(m["content"].(string), "demo") {
			t.Fatalf("demo reply: %v", m)
		}

		r = s.createImage(token, map[string]any{"prompt": "a lighthouse at dusk", "resolution": 512})
		if r.status != http.StatusAccepted {
			t.Fatalf("create image: %d %s", r.status, r.body)
		}
		job := s.waitImage(token, r.json(t)["id"].(string))
		if job["status"] != "completed" {
			t.Fatalf("demo image: %v", job)
		}
		img := job["image"].(map[string]any)
		status, data := s.fetch(img["url"].(string))
		if status != http.StatusOK || !bytes.HasPrefix(data, []byte("\x89PNG")) || img["width"] != 512.0 {
			t.Fatalf("demo picture: %d, %d bytes, %v", status, len(data), img)
		}
	})
}
