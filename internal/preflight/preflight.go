// Package preflight checks, before Luna serves, that the services a
// configuration points at answer as Luna needs: each text model lists its
// served name, the image backend knows the workflow's nodes (ComfyUI) or
// answers its health check (Runpod), the S3 bucket takes a write and serves
// it through a presigned URL, and Clerk's keys load. It changes nothing but
// a probe object in the bucket, which it deletes. `luna check` prints its
// results.
package preflight

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"luna/internal/app"
)

// Status is the outcome of one check.
type Status string

const (
	OK   Status = "ok"
	Fail Status = "FAIL"
	// Demo marks a part served by Luna's built-in demo (nothing to check).
	Demo Status = "demo"
)

// Result is one check's outcome: one line of `luna check`.
type Result struct {
	Name   string // what was checked, e.g. "model llama-3.3-70b"
	Status Status
	Detail string // what was found, or why it failed
}

func (r Result) String() string { return fmt.Sprintf("%-4s  %-28s %s", r.Status, r.Name, r.Detail) }

// Options tune the checks.
type Options struct {
	// Timeout bounds each check; default 15s.
	Timeout time.Duration
	// HTTPClient makes the requests; default a plain client.
	HTTPClient *http.Client
}

// Run runs every check that cfg calls for, at the same time, and returns
// their results in a fixed order: models, images, storage, authentication.
func Run(ctx context.Context, cfg app.Config, opts Options) []Result {
	c := &checker{cfg: cfg, timeout: cmp.Or(opts.Timeout, 15*time.Second), client: opts.HTTPClient}
	if c.client == nil {
		transport := http.DefaultTransport.(*http.Transport).Clone()
		defer transport.CloseIdleConnections()
		c.client = &http.Client{Transport: transport}
	}
	if c.cfg.Getenv == nil {
		c.cfg.Getenv = func(string) string { return "" }
	}
	var checks []func(context.Context) Result
	checks = append(checks, c.modelChecks()...)
	checks = append(checks, c.images, c.storage, c.auth)
	results := make([]Result, len(checks))
	var wg sync.WaitGroup
	for i, check := range checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			results[i] = check(ctx)
		})
	}
	wg.Wait()
	return results
}

// Failed reports whether any result is a failure.
func Failed(results []Result) bool {
	for _, r := range results {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

type checker struct {
	cfg     app.Config
	timeout time.Duration
	client  *http.Client
}

// getJSON sends GET url with headers and decodes a 200 answer into out.
func (c *checker) getJSON(ctx context.Context, url string, headers map[string]string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// ComfyUI's /object_info lists every installed node: megabytes.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, snippet(body))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: not the expected JSON: %w", url, err)
	}
	return nil
}

// snippet is the start of a body, for an error message.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return cmp.Or(s, "(empty body)")
}

// errText is an error's message, with the query cut from a failed
// request's URL (a presigned URL's signature is noise on the line).
func errText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		u, _, _ := strings.Cut(ue.URL, "?")
		return fmt.Sprintf("%s %s: %v", ue.Op, u, ue.Err)
	}
	return err.Error()
}
