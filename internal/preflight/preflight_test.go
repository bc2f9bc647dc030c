package preflight_test

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"luna/internal/api"
	"luna/internal/app"
	"luna/internal/blob"
	"luna/internal/clerk/clerktest"
	"luna/internal/imagegen/comfywire"
	"luna/internal/imagegen/imagegentest"
	"luna/internal/llm/llmtest"
	"luna/internal/preflight"
)

// comfyUI is the ComfyUI fake, its GET /object_info (the built-in
// workflow's node classes) changed by edit when it is not nil.
func comfyUI(t *testing.T, edit func(map[string]comfywire.NodeClass)) *imagegentest.ComfyUIFake {
	t.Helper()
	f := imagegentest.NewComfyUI(t)
	if edit != nil {
		f.EditObjectInfo(edit)
	}
	return f
}

// modelsFile writes a models file with one model at baseURL.
func modelsFile(t *testing.T, baseURL, served string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "models.toml")
	data := fmt.Sprintf(`[[model]]
id = "m1"
name = "Model one"
base_url = %q
api_key = "sk-test"
served_model_name = %q
context_tokens = 8192
max_output_tokens = 512
`, baseURL, served)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// s3Config is the throwaway S3 server of scripts/test.sh, or ok=false.
func s3Config(t *testing.T) (blob.S3Config, bool) {
	endpoint := os.Getenv("LUNA_TEST_S3_ENDPOINT")
	if endpoint == "" {
		if os.Getenv("LUNA_TEST_REQUIRE_S3") == "1" {
			t.Fatal("LUNA_TEST_REQUIRE_S3=1 but LUNA_TEST_S3_ENDPOINT is not set")
		}
		return blob.S3Config{}, false
	}
	return blob.S3Config{
		Endpoint: endpoint, Bucket: cmp.Or(os.Getenv("LUNA_TEST_S3_BUCKET"), "luna-test"),
		AccessKey: os.Getenv("LUNA_TEST_S3_ACCESS_KEY"), SecretKey: os.Getenv("LUNA_TEST_S3_SECRET_KEY"),
		PathStyle: true, Prefix: "preflight-test", CreateBucket: true,
	}, true
}

// Every part answers in the base configuration; each case breaks one part
// and exactly that check fails, with a reason.
func TestRun(t *testing.T) {
	t.Parallel()
	llm := llmtest.New(t)
	comfy := comfyUI(t, nil)
	noKSampler := comfyUI(t, func(info map[string]comfywire.NodeClass) { delete(info, "KSampler") })
	noCheckpoint := comfyUI(t, func(info map[string]comfywire.NodeClass) {
		info["CheckpointLoaderSimple"].Input.Required["ckpt_name"] = []any{[]string{"flux1-dev.safetensors"}, map[string]any{}}
	})
	runpod := imagegentest.NewRunpod(t)
	clerkFake := clerktest.New(t)
	emptyJWKS := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"keys":[]}`)) // test server
	}))
	t.Cleanup(emptyJWKS.Close)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // nothing listens there any more
	s3, haveS3 := s3Config(t)

	base := func() app.Config {
		cfg := app.Config{
			DataDir: t.TempDir(), ModelsFile: modelsFile(t, llm.BaseURL(), llmtest.ModelName),
			Auth: api.AuthClerk, ClerkIssuer: clerkFake.Issuer(), ClerkJWKSURL: clerkFake.JWKSURL(),
		}
		cfg.Images.Backend, cfg.Images.ComfyUIURL = "comfyui", comfy.URL
		if haveS3 {
			cfg.Images.Storage, cfg.Images.S3 = "s3", s3
		}
		return cfg
	}
	for _, c := range []struct {
		name     string
		needS3   bool
		change   func(*app.Config)
		fail     string // the one failing check; "" for none
		reason   string
		demoOnly bool
	}{
		{name: "everything answers", change: func(*app.Config) {}},
		{name: "demo", change: func(cfg *app.Config) {
			*cfg = app.Config{DataDir: cfg.DataDir}
		}, demoOnly: true},
		{name: "model not served", change: func(cfg *app.Config) {
			cfg.ModelsFile = modelsFile(t, llm.BaseURL(), "some-other-model")
		}, fail: "model m1", reason: `does not list "some-other-model" (it serves "llmtest-model")`},
		{name: "model server down", change: func(cfg *app.Config) {
			cfg.ModelsFile = modelsFile(t, down.URL+"/v1", llmtest.ModelName)
		}, fail: "model m1", reason: "connection refused"},
		{name: "models file invalid", change: func(cfg *app.Config) {
			cfg.ModelsFile = filepath.Join(t.TempDir(), "missing.toml")
		}, fail: "models", reason: "missing.toml"},
		{name: "ComfyUI lacks a node class", change: func(cfg *app.Config) {
			cfg.Images.ComfyUIURL = noKSampler.URL
		}, fail: "images (comfyui)", reason: "does not know the workflow's node classes KSampler"},
		{name: "ComfyUI lacks the checkpoint", change: func(cfg *app.Config) {
			cfg.Images.ComfyUIURL = noCheckpoint.URL
		}, fail: "images (comfyui)", reason: `CheckpointLoaderSimple.ckpt_name "flux1-schnell-fp8.safetensors"`},
		{name: "ComfyUI down", change: func(cfg *app.Config) {
			cfg.Images.ComfyUIURL = down.URL
		}, fail: "images (comfyui)", reason: "connection refused"},
		{name: "Runpod answers", change: func(cfg *app.Config) {
			cfg.Images.Backend, cfg.Images.RunpodEndpointURL, cfg.Images.RunpodAPIKey = "runpod", runpod.EndpointURL, runpod.APIKey
		}},
		{name: "Runpod refuses the key", change: func(cfg *app.Config) {
			cfg.Images.Backend, cfg.Images.RunpodEndpointURL, cfg.Images.RunpodAPIKey = "runpod", runpod.EndpointURL, "wrong"
		}, fail: "images (runpod)", reason: "401"},
		{name: "S3 refuses the secret", needS3: true, change: func(cfg *app.Config) {
			cfg.Images.S3.SecretKey = "wrong-secret"
		}, fail: "storage (s3)", reason: "check S3 bucket luna-test"},
		{name: "S3 bucket missing", needS3: true, change: func(cfg *app.Config) {
			cfg.Images.S3.Bucket, cfg.Images.S3.CreateBucket = "luna-no-such-bucket", false
		}, fail: "storage (s3)", reason: "does not exist"},
		{name: "S3 presigned URLs name an unreachable host", needS3: true, change: func(cfg *app.Config) {
			cfg.Images.S3.PublicEndpoint = down.URL
		}, fail: "storage (s3)", reason: "reading through a presigned URL failed"},
		{name: "Clerk JWKS missing", change: func(cfg *app.Config) {
			cfg.ClerkJWKSURL = clerkFake.Issuer() + "/no-such-jwks.json"
		}, fail: "auth (clerk)", reason: "404"},
		{name: "Clerk JWKS without keys", change: func(cfg *app.Config) {
			cfg.ClerkJWKSURL = emptyJWKS.URL
		}, fail: "auth (clerk)", reason: "no RSA public key"},
		{name: "Clerk PEM key", change: func(cfg *app.Config) {
			cfg.ClerkJWKSURL, cfg.ClerkPublicKey = "", clerkFake.PublicKeyPEM()
		}},
		{name: "Clerk PEM key invalid", change: func(cfg *app.Config) {
			cfg.ClerkJWKSURL, cfg.ClerkPublicKey = "", "not a key"
		}, fail: "auth (clerk)", reason: "--clerk-public-key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.needS3 && !haveS3 {
				t.Skip("needs the S3 server of scripts/test.sh (LUNA_TEST_S3_*)")
			}
			cfg := base()
			// A prefix of its own: the S3 server keeps objects as files,
			// and one case's probe deleting its folder must not race
			// another case's probe being written into it.
			cfg.Images.S3.Prefix = "preflight-" + strings.NewReplacer(" ", "-", "/", "-").Replace(c.name)
			c.change(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			results := preflight.Run(ctx, cfg, preflight.Options{Timeout: 10 * time.Second})
			var lines []string
			for _, r := range results {
				lines = append(lines, r.String())
			}
			report := strings.Join(lines, "\n")
			var failed []preflight.Result
			demo := 0
			for _, r := range results {
				switch r.Status {
				case preflight.Fail:
					failed = append(failed, r)
				case preflight.Demo:
					demo++
				}
			}
			if got, want := preflight.Failed(results), c.fail != ""; got != want {
				t.Errorf("Failed = %v, want %v\n%s", got, want, report)
			}
			switch {
			case c.fail == "" && len(failed) > 0:
				t.Errorf("failures, want none:\n%s", report)
			case c.fail != "" && (len(failed) != 1 || failed[0].Name != c.fail || !strings.Contains(failed[0].Detail, c.reason)):
				t.Errorf("want only %q to fail, with %q:\n%s", c.fail, c.reason, report)
			}
			if c.demoOnly && demo != 2 {
				t.Errorf("%d demo lines, want 2 (models, images):\n%s", demo, report)
			}
			if !c.demoOnly && demo != 0 {
				t.Errorf("demo lines for a configured Luna:\n%s", report)
			}
			if testing.Verbose() {
				t.Logf("\n%s", report)
			}
		})
	}
}
