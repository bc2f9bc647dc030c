package preflight

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"

	"luna/internal/api"
	"luna/internal/app"
	"luna/internal/blob"
	"luna/internal/clerk"
	"luna/internal/imagegen"
	"luna/internal/models"
)

// modelChecks returns one check per active model of the models file (a
// failing one when the file cannot be read), or the demo line.
func (c *checker) modelChecks() []func(context.Context) Result {
	if c.cfg.ModelsFile == "" {
		return []func(context.Context) Result{func(context.Context) Result {
			return Result{Name: "models", Status: Demo, Detail: "no --models-file: the built-in demo model answers"}
		}}
	}
	list, err := models.LoadFile(c.cfg.ModelsFile, c.cfg.Getenv)
	if err != nil {
		return []func(context.Context) Result{func(context.Context) Result {
			return Result{Name: "models", Status: Fail, Detail: err.Error()}
		}}
	}
	var checks []func(context.Context) Result
	for _, m := range list {
		if m.Active {
			checks = append(checks, func(ctx context.Context) Result { return c.model(ctx, m) })
		}
	}
	if len(checks) == 0 {
		checks = append(checks, func(context.Context) Result {
			return Result{Name: "models", Status: Fail, Detail: c.cfg.ModelsFile + " has no active model"}
		})
	}
	return checks
}

// model asks the model's server for its models (GET {base_url}/models, as
// vLLM, llama.cpp and Runpod's OpenAI route answer) and looks for the
// served name Luna sends.
func (c *checker) model(ctx context.Context, m models.Model) Result {
	r := Result{Name: "model " + m.ID, Status: Fail}
	headers := map[string]string{}
	if m.APIKey != "" {
		headers["Authorization"] = "Bearer " + m.APIKey
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := c.getJSON(ctx, m.BaseURL+"/models", headers, &list); err != nil {
		r.Detail = errText(err)
		return r
	}
	var served []string
	for _, d := range list.Data {
		served = append(served, d.ID)
	}
	if !slices.Contains(served, m.ServedModelName) {
		r.Detail = fmt.Sprintf("%s/models does not list %q (it serves %s)", m.BaseURL, m.ServedModelName, quoteList(served))
		return r
	}
	r.Status, r.Detail = OK, fmt.Sprintf("%s serves %s", m.BaseURL, m.ServedModelName)
	return r
}

// images checks the configured image backend.
func (c *checker) images(ctx context.Context) Result {
	ic := c.cfg.Images
	switch ic.Backend {
	case "":
		return Result{Name: "images", Status: Demo, Detail: "no --image-backend: the built-in demo endpoint draws placeholders"}
	case "comfyui":
		return c.comfyUI(ctx)
	case "runpod":
		return c.runpod(ctx)
	default:
		return Result{Name: "images", Status: Fail, Detail: fmt.Sprintf("--image-backend %q: want comfyui, runpod or empty", ic.Backend)}
	}
}

// workflowNode is a node of an API-format workflow.
type workflowNode struct {
	ClassType string         `json:"class_type"`
	Inputs    map[string]any `json:"inputs"`
}

// workflowNodes reads the workflow Luna submits: the file given, or the
// built-in FLUX schnell one.
func workflowNodes(ic app.ImageConfig) (map[string]workflowNode, error) {
	var data []byte
	if ic.WorkflowFile != "" {
		var err error
		if data, err = os.ReadFile(ic.WorkflowFile); err != nil {
			return nil, fmt.Errorf("workflow: %w", err)
		}
	} else {
		graph, err := imagegen.DefaultWorkflow().Fill(imagegen.Request{Prompt: "luna check", Width: 1024, Height: 1024})
		if err != nil {
			return nil, err
		}
		if data, err = json.Marshal(graph); err != nil {
			return nil, err
		}
	}
	var nodes map[string]workflowNode
	if err := json.Unmarshal(data, &nodes); err != nil {
		return nil, fmt.Errorf("workflow %s: not an API-format workflow: %w", ic.WorkflowFile, err)
	}
	for id, n := range nodes {
		if n.ClassType == "" {
			return nil, fmt.Errorf("workflow %s: node %s has no class_type", ic.WorkflowFile, id)
		}
	}
	return nodes, nil
}

// nodeInfo is what the check reads of one class in GET /object_info.
type nodeInfo struct {
	Input struct {
		Required map[string]json.RawMessage `json:"required"`
		Optional map[string]json.RawMessage `json:"optional"`
	} `json:"input"`
}

// comfyUI asks ComfyUI for its node classes (GET /object_info) and checks
// that it has every class of the workflow, and every file a workflow input
// names among a node's choices (checkpoints, VAEs, text encoders…).
func (c *checker) comfyUI(ctx context.Context) Result {
	ic := c.cfg.Images
	r := Result{Name: "images (comfyui)", Status: Fail}
	nodes, err := workflowNodes(ic)
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	base := strings.TrimRight(ic.ComfyUIURL, "/")
	if base == "" {
		r.Detail = "--comfyui-url is not set"
		return r
	}
	var info map[string]nodeInfo
	if err := c.getJSON(ctx, base+"/object_info", ic.Headers, &info); err != nil {
		r.Detail = errText(err)
		return r
	}
	var missing, absent []string
	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		n := nodes[id]
		ni, ok := info[n.ClassType]
		if !ok {
			missing = append(missing, n.ClassType)
			continue
		}
		for name, v := range n.Inputs {
			s, isString := v.(string)
			spec, hasSpec := ni.Input.Required[name]
			if !hasSpec {
				spec, hasSpec = ni.Input.Optional[name]
			}
			if !isString || !hasSpec {
				continue
			}
			if choices, ok := comboChoices(spec); ok && !slices.Contains(choices, s) {
				absent = append(absent, fmt.Sprintf("%s.%s %q", n.ClassType, name, s))
			}
		}
	}
	slices.Sort(missing)
	missing = slices.Compact(missing)
	switch {
	case len(missing) > 0:
		r.Detail = fmt.Sprintf("%s does not know the workflow's node classes %s", base, strings.Join(missing, ", "))
	case len(absent) > 0:
		r.Detail = fmt.Sprintf("%s lacks files the workflow names: %s", base, strings.Join(absent, ", "))
	default:
		r.Status, r.Detail = OK, fmt.Sprintf("%s knows all %d nodes of the workflow and their files", base, len(nodes))
	}
	return r
}

// comboChoices reads the choices of a combo input from its /object_info
// spec: legacy [[choice…], {…}] or newer ["COMBO", {"options": [choice…]}].
// ok is false for any other input type.
func comboChoices(spec json.RawMessage) (choices []string, ok bool) {
	var parts []json.RawMessage
	if json.Unmarshal(spec, &parts) != nil || len(parts) == 0 {
		return nil, false
	}
	if json.Unmarshal(parts[0], &choices) == nil {
		return choices, true
	}
	var typ string
	if json.Unmarshal(parts[0], &typ) != nil || typ != "COMBO" || len(parts) < 2 {
		return nil, false
	}
	var opts struct {
		Options []string `json:"options"`
	}
	if json.Unmarshal(parts[1], &opts) != nil || opts.Options == nil {
		return nil, false
	}
	return opts.Options, true
}

// runpod asks the Runpod endpoint for its health (GET {endpoint}/health).
func (c *checker) runpod(ctx context.Context) Result {
	ic := c.cfg.Images
	r := Result{Name: "images (runpod)", Status: Fail}
	base := strings.TrimRight(ic.RunpodEndpointURL, "/")
	if base == "" {
		r.Detail = "--runpod-endpoint-url is not set"
		return r
	}
	headers := map[string]string{}
	for k, v := range ic.Headers {
		headers[k] = v
	}
	if ic.RunpodAPIKey != "" {
		headers["Authorization"] = "Bearer " + ic.RunpodAPIKey
	}
	var health struct {
		Workers map[string]any `json:"workers"`
		Jobs    map[string]any `json:"jobs"`
	}
	if err := c.getJSON(ctx, base+"/health", headers, &health); err != nil {
		r.Detail = errText(err)
		return r
	}
	r.Status = OK
	r.Detail = fmt.Sprintf("%s answers: workers %s; jobs %s", base, counts(health.Workers), counts(health.Jobs))
	return r
}

// storage checks where images are kept: S3 by a probe object.
func (c *checker) storage(ctx context.Context) Result {
	ic := c.cfg.Images
	switch ic.Storage {
	case "", "local":
		return Result{Name: "storage (local)", Status: OK, Detail: "images are kept in " + filepath.Join(c.cfg.DataDir, "images")}
	case "s3":
		return c.s3(ctx)
	default:
		return Result{Name: "storage", Status: Fail, Detail: fmt.Sprintf("--storage %q: want local or s3", ic.Storage)}
	}
}

// s3 writes a small probe object, reads it back through a presigned URL
// (as a browser reads an image) and deletes it.
func (c *checker) s3(ctx context.Context) Result {
	r := Result{Name: "storage (s3)", Status: Fail}
	st, err := blob.NewS3(ctx, c.cfg.Images.S3)
	if err != nil {
		r.Detail = errText(err)
		return r
	}
	suffix := make([]byte, 8)
	rand.Read(suffix) // crypto/rand does not fail
	key := "luna-check/probe-" + hex.EncodeToString(suffix) + ".txt"
	data := []byte("luna check " + time.Now().UTC().Format(time.RFC3339))
	if err := st.Put(ctx, key, data, ""); err != nil {
		r.Detail = "write: " + errText(err)
		return r
	}
	readErr := c.readPresigned(ctx, st, key, data)
	// Luna never deletes images, so a bucket that refuses deletes works;
	// the line says where the probe was left.
	deleted := "deleted it"
	if err := st.Delete(context.WithoutCancel(ctx), key); err != nil {
		deleted = fmt.Sprintf("could not delete it (%s is left): %v", key, err)
	}
	if readErr != nil {
		r.Detail = fmt.Sprintf("bucket %s: wrote a probe object, but %v; %s", c.cfg.Images.S3.Bucket, readErr, deleted)
		return r
	}
	r.Status = OK
	r.Detail = fmt.Sprintf("bucket %s: wrote a probe object, read it through a presigned URL, %s", c.cfg.Images.S3.Bucket, deleted)
	return r
}

// readPresigned reads key through a presigned URL and compares it to want.
func (c *checker) readPresigned(ctx context.Context, st *blob.S3, key string, want []byte) error {
	signed, err := st.SignedURL(ctx, key, time.Minute)
	if err != nil {
		return fmt.Errorf("presigning failed: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, signed, nil)
	if err != nil {
		return fmt.Errorf("the presigned URL is invalid: %w", err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("reading through a presigned URL failed: %s", errText(err))
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case err != nil:
		return fmt.Errorf("reading through a presigned URL failed: %w", err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("a presigned URL answered %s: %s", resp.Status, snippet(got))
	case !bytes.Equal(got, want):
		return fmt.Errorf("a presigned URL answered %q, not the probe %q", snippet(got), want)
	}
	return nil
}

// auth checks Clerk's keys; built-in accounts need nothing.
func (c *checker) auth(ctx context.Context) Result {
	cfg := c.cfg
	switch cfg.Auth {
	case api.AuthLocal, "":
		return Result{Name: "auth (local)", Status: OK, Detail: "built-in accounts, sign-up " + cmp.Or(cfg.SignupMode, "open")}
	case api.AuthClerk:
	default:
		return Result{Name: "auth", Status: Fail, Detail: fmt.Sprintf("--auth %q: want local or clerk", cfg.Auth)}
	}
	r := Result{Name: "auth (clerk)", Status: Fail}
	switch {
	case cfg.ClerkIssuer == "":
		r.Detail = "--clerk-issuer is not set"
		return r
	case cfg.ClerkPublicKey != "" && cfg.ClerkJWKSURL == "":
		// A PEM key needs no network: NewVerifier only parses it.
		if _, err := clerk.NewVerifier(ctx, clerk.VerifierConfig{Issuer: cfg.ClerkIssuer, PublicKeyPEM: cfg.ClerkPublicKey}); err != nil {
			r.Detail = "--clerk-public-key: " + err.Error()
			return r
		}
		r.Status, r.Detail = OK, "PEM public key parses (no network needed)"
		return r
	case cfg.ClerkJWKSURL == "" || cfg.ClerkPublicKey != "":
		r.Detail = "set one of --clerk-jwks-url and --clerk-public-key"
		return r
	}
	var set jwkset.JWKSMarshal
	if err := c.getJSON(ctx, cfg.ClerkJWKSURL, nil, &set); err != nil {
		r.Detail = "JWKS: " + errText(err)
		return r
	}
	keys, err := set.JWKSlice()
	if err != nil {
		r.Detail = "JWKS " + cfg.ClerkJWKSURL + ": " + err.Error()
		return r
	}
	rsaKeys := 0
	for _, k := range keys {
		if _, ok := k.Key().(*rsa.PublicKey); ok {
			rsaKeys++
		}
	}
	if rsaKeys == 0 {
		r.Detail = fmt.Sprintf("JWKS %s has no RSA public key (Clerk signs sessions with RS256)", cfg.ClerkJWKSURL)
		return r
	}
	r.Status, r.Detail = OK, fmt.Sprintf("JWKS %s loads: RSA keys: %d", cfg.ClerkJWKSURL, rsaKeys)
	return r
}

// quoteList is `"a", "b"` or "nothing".
func quoteList(items []string) string {
	if len(items) == 0 {
		return "nothing"
	}
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// counts is "idle 1, running 0" in key order.
func counts(m map[string]any) string {
	if len(m) == 0 {
		return "none reported"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %v", k, m[k])
	}
	return strings.Join(parts, ", ")
}
