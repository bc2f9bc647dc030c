package imagegen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Timeouts and limits of single HTTP exchanges. The caller's ctx bounds the
// whole Run; these only stop one hung exchange from using all of it.
const (
	defaultPollInterval = 2 * time.Second
	apiTimeout          = 30 * time.Second
	downloadTimeout     = 2 * time.Minute
	abandonTimeout      = 5 * time.Second
	maxAPIBytes         = 32 << 20 // /queue lists whole graphs; Runpod /status can carry base64 images
	maxRetryAfter       = time.Minute
	maxBackoff          = 30 * time.Second
)

// upstream is the HTTP side shared by the backends: single exchanges bounded
// in time and size, and retries of transient failures with backoff.
type upstream struct {
	client  *http.Client
	headers map[string]string // sent on API requests, never on downloads from other hosts
	logger  *slog.Logger
	poll    time.Duration
}

// newUpstream applies the defaults shared by the backends' configs.
func newUpstream(client *http.Client, headers map[string]string, logger *slog.Logger, poll time.Duration) *upstream {
	if client == nil {
		client = &http.Client{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if poll <= 0 {
		poll = defaultPollInterval
	}
	h := make(map[string]string, len(headers))
	for k, v := range headers {
		h[k] = v
	}
	return &upstream{client: client, headers: h, logger: logger, poll: poll}
}

// exchange is one HTTP request to make.
type exchange struct {
	method, url string
	body        []byte // JSON, or nil
	api         bool   // send the configured headers (false: a download from a URL the upstream gave us)
	image       bool   // an image download: longer timeout, image size limit
}

// response is an HTTP answer with its whole body.
type response struct {
	status int
	header http.Header
	body   []byte
}

// statusError is an HTTP answer that is not 2xx.
type statusError struct {
	status int
	body   []byte
}

// Error formats the status and the start of the body.
func (e *statusError) Error() string {
	if len(e.body) == 0 {
		return fmt.Sprintf("HTTP %d", e.status)
	}
	return fmt.Sprintf("HTTP %d: %s", e.status, snippet(e.body))
}

// errTooLarge marks an answer above the size limit; retrying will not help.
var errTooLarge = errors.New("response too large")

// retryStatus reports whether an HTTP status is a transient failure.
func retryStatus(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// transient reports whether a failed exchange is worth retrying: transport
// failures (refused, reset, EOF, a hung exchange) and HTTP 429/5xx.
func transient(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return retryStatus(se.status)
	}
	return !errors.Is(err, errTooLarge)
}

// do performs one exchange.
func (u *upstream) do(ctx context.Context, x exchange) (response, error) {
	timeout, limit := apiTimeout, int64(maxAPIBytes)
	if x.image {
		timeout, limit = downloadTimeout, maxImageBytes
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if x.body != nil {
		body = bytes.NewReader(x.body)
	}
	req, err := http.NewRequestWithContext(ctx, x.method, x.url, body)
	if err != nil {
		return response{}, fmt.Errorf("build request: %w", err)
	}
	if x.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if x.api {
		req.Header.Set("Accept", "application/json")
		for k, v := range u.headers {
			req.Header.Set(k, v)
		}
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return response{}, redactURL(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return response{}, fmt.Errorf("read %s %s answer: %w", x.method, safeURL(x.url), err)
	}
	if int64(len(data)) > limit {
		return response{}, fmt.Errorf("%s %s: %w (over %d bytes)", x.method, safeURL(x.url), errTooLarge, limit)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// call performs x, retrying transient failures with backoff until an answer
// that is not a transient failure arrives or ctx ends. Answers with other
// non-2xx statuses are returned for the caller to judge.
func (u *upstream) call(ctx context.Context, op string, x exchange) (response, error) {
	b := u.newBackoff()
	for attempt := 1; ; attempt++ {
		resp, err := u.do(ctx, x)
		if err == nil && !retryStatus(resp.status) {
			return resp, nil
		}
		if err == nil {
			err = &statusError{status: resp.status, body: resp.body}
		} else if !transient(err) {
			return response{}, err
		}
		if ctx.Err() != nil {
			return response{}, err
		}
		if werr := b.wait(ctx, u.logger, op, attempt, err, resp.header); werr != nil {
			return response{}, err
		}
	}
}

// backoff spaces out retries: it starts at a quarter of the poll interval and
// doubles up to eight poll intervals (at most 30s), with ±20% jitter.
type backoff struct {
	next, max time.Duration
}

// newBackoff returns a backoff scaled to the poll interval.
func (u *upstream) newBackoff() *backoff {
	return &backoff{next: max(u.poll/4, time.Millisecond), max: min(8*u.poll, maxBackoff)}
}

// wait logs the failed attempt and sleeps before the next one, honouring a
// Retry-After header. It returns ctx.Err() if ctx ends first.
func (b *backoff) wait(ctx context.Context, logger *slog.Logger, op string, attempt int, cause error, header http.Header) error {
	d := b.next*4/5 + time.Duration(rand.Int64N(int64(b.next)*2/5+1)) // ±20%
	if ra := retryAfter(header); ra > d {
		d = ra
	}
	b.next = min(b.next*2, b.max)
	logger.WarnContext(ctx, "image backend request failed; retrying", "op", op, "attempt", attempt, "retry_in", d, "err", cause)
	return sleep(ctx, d)
}

// retryAfter reads a Retry-After header in seconds (capped), or 0.
func retryAfter(h http.Header) time.Duration {
	if h == nil {
		return 0
	}
	secs, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After")))
	if err != nil || secs <= 0 {
		return 0
	}
	return min(time.Duration(secs)*time.Second, maxRetryAfter)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// marshalJSON encodes v without escaping <, > and &, so that text reaches the
// upstream as written.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// parseBaseURL checks an http(s) base URL and returns it without a trailing slash.
func parseBaseURL(name, raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("%s %q: want an http:// or https:// URL", name, raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%s %q: must not have a query or fragment", name, raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// redactURL drops the query from the URL in a transport error, since
// presigned download URLs carry credentials there.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = safeURL(ue.URL)
	}
	return err
}

// safeURL returns raw without its query and user info, for logs.
func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery = ""
	u.User = nil
	return u.String()
}

// snippet returns the start of an upstream body as valid UTF-8, for logs.
func snippet(b []byte) string {
	const n = 300
	if len(b) > n {
		b = b[:n]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// jsonString returns raw as a string when it is a JSON string, or its
// compact JSON text otherwise ("" for null or absent).
func jsonString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return snippet(raw)
	}
	return buf.String()
}

// isJSONObject reports whether raw is a JSON object.
func isJSONObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}

// truncateBytes keeps at most n bytes of s, cut at a rune boundary.
func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
