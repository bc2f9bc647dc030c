package app

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"luna/internal/blob"
	"luna/internal/imagegen"
	imagedemo "luna/internal/imagegen/demo"
	"luna/internal/images"
	"luna/internal/inprocess"
)

// ImageConfig chooses the image backend and where images are kept.
type ImageConfig struct {
	// Backend is "comfyui", "runpod", or "" for the built-in demo
	// endpoint (which speaks the ComfyUI API).
	Backend           string
	ComfyUIURL        string
	RunpodEndpointURL string // https://api.runpod.ai/v2/<endpoint id>
	RunpodAPIKey      string
	Headers           map[string]string // extra headers for the backend (auth behind a proxy)
	WorkflowFile      string            // API-format workflow; empty = the built-in FLUX schnell workflow
	WorkflowMapping   string            // with WorkflowFile: "prompt=6.text,width=27.width,height=27.height,seed=31.seed,steps=31.steps"
	PollInterval      time.Duration     // how often the backend is asked about a job; default 2s

	Storage   string // "local" (default) or "s3"
	S3        blob.S3Config
	PublicURL string // absolute base URL clients reach Luna at, to make local image URLs absolute; empty = relative URLs
	Jobs      images.Config
}

// filesPrefix is where locally stored images are served (signed URLs).
const filesPrefix = "/files"

// prefixedStore makes a local store's relative URLs absolute.
type prefixedStore struct {
	images.Store
	prefix string
}

func (p prefixedStore) SignedURL(ctx context.Context, key string, ttl time.Duration) (string, error) {
	u, err := p.Store.SignedURL(ctx, key, ttl)
	return p.prefix + u, err
}

func parseMapping(s string) (imagegen.Mapping, error) {
	var m imagegen.Mapping
	refs := map[string]*imagegen.InputRef{"prompt": &m.Prompt, "width": &m.Width, "height": &m.Height, "seed": &m.Seed, "steps": &m.Steps}
	for _, part := range strings.Split(s, ",") {
		name, target, ok := strings.Cut(strings.TrimSpace(part), "=")
		node, input, ok2 := strings.Cut(target, ".")
		ref := refs[name]
		if !ok || !ok2 || ref == nil || node == "" || input == "" {
			return m, fmt.Errorf("workflow mapping %q: want name=node.input with names prompt, width, height, seed, steps", part)
		}
		*ref = imagegen.InputRef{Node: node, Input: input}
	}
	if m.Prompt.Node == "" {
		return m, fmt.Errorf("workflow mapping: prompt is required")
	}
	return m, nil
}

// newImageParts builds the image backend and the image store.
func (a *App) newImageParts(ctx context.Context) (images.Backend, images.Store, *blob.Local, error) {
	cfg := a.cfg.Images
	workflow := imagegen.DefaultWorkflow()
	if cfg.WorkflowFile != "" {
		mapping, err := parseMapping(cfg.WorkflowMapping)
		if err != nil {
			return nil, nil, nil, err
		}
		if workflow, err = imagegen.LoadWorkflow(cfg.WorkflowFile, mapping); err != nil {
			return nil, nil, nil, err
		}
	}
	var backend images.Backend
	switch cfg.Backend {
	case "":
		srv := inprocess.Start(imagedemo.NewHandler(imagedemo.Options{Logger: a.logger, MaxSide: slices.Max(images.Resolutions)}), a.logger)
		a.demos = append(a.demos, srv)
		b, err := imagegen.NewComfyUI(imagegen.ComfyUIConfig{BaseURL: "http://" + demoImagesHost, ClientID: "luna",
			HTTPClient: &http.Client{Transport: srv.Transport()}, Workflow: imagegen.DefaultWorkflow(),
			PollInterval: cfg.PollInterval, Logger: a.logger})
		if err != nil {
			return nil, nil, nil, err
		}
		backend = b
		a.logger.Info("DEMO MODE: no image backend given; drawing placeholder images with the built-in demo endpoint")
	case "comfyui":
		b, err := imagegen.NewComfyUI(imagegen.ComfyUIConfig{BaseURL: cfg.ComfyUIURL, Headers: cfg.Headers, Workflow: workflow,
			ClientID: "luna", PollInterval: cfg.PollInterval, Logger: a.logger})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("comfyui: %w", err)
		}
		backend = b
	case "runpod":
		b, err := imagegen.NewRunpod(imagegen.RunpodConfig{EndpointURL: cfg.RunpodEndpointURL, APIKey: cfg.RunpodAPIKey,
			Headers: cfg.Headers, Workflow: workflow, PollInterval: cfg.PollInterval, Logger: a.logger})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("runpod: %w", err)
		}
		backend = b
	default:
		return nil, nil, nil, fmt.Errorf("image backend %q: want comfyui, runpod or empty for the demo", cfg.Backend)
	}

	switch cfg.Storage {
	case "", "local":
		secret, err := blob.LoadOrCreateSecret(filepath.Join(a.cfg.DataDir, "url-signing.key"))
		if err != nil {
			return nil, nil, nil, err
		}
		local, err := blob.NewLocal(blob.LocalConfig{Dir: filepath.Join(a.cfg.DataDir, "images"), Secret: secret,
			BasePath: filesPrefix, Logger: a.logger})
		if err != nil {
			return nil, nil, nil, err
		}
		var st images.Store = local
		if cfg.PublicURL != "" {
			st = prefixedStore{Store: local, prefix: strings.TrimRight(cfg.PublicURL, "/")}
		}
		return backend, st, local, nil
	case "s3":
		s3, err := blob.NewS3(ctx, cfg.S3)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("s3 storage: %w", err)
		}
		return backend, s3, nil, nil
	default:
		return nil, nil, nil, fmt.Errorf("storage %q: want local or s3", cfg.Storage)
	}
}

// plainHTTPImageOrigins returns the object storage origin when browsers
// reach it over plain http, for the web app's Content-Security-Policy.
func plainHTTPImageOrigins(cfg ImageConfig) []string {
	if cfg.Storage != "s3" {
		return nil
	}
	endpoint := cmp.Or(cfg.S3.PublicEndpoint, cfg.S3.Endpoint)
	switch {
	case strings.HasPrefix(endpoint, "http://"):
		return []string{strings.TrimRight(endpoint, "/")}
	case !strings.Contains(endpoint, "://") && !cfg.S3.UseSSL:
		return []string{"http://" + endpoint}
	}
	return nil
}
