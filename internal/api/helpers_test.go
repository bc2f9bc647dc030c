package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"luna/internal/app"
	"luna/internal/credits"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// testServer is a whole Luna (app.New) served as production serves it
// (Listen + Serve: background work, demo endpoints, graceful shutdown) on
// loopback.
type testServer struct {
	t     *testing.T
	app   *app.App
	url   string
	dbURL string
}

// newTestServer starts Luna on a fresh database of the given dialect.
// configure may change the defaults (built-in accounts, open sign-up).
// The test's cleanup stops Serve the way SIGTERM does and waits for it to
// return; a failing shutdown fails the test.
func newTestServer(t *testing.T, dialect store.Dialect, configure func(*app.Config)) *testServer {
	t.Helper()
	cfg := app.Config{
		DatabaseURL: storetest.URL(t, dialect), DataDir: t.TempDir(),
		Addr: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second,
		Auth: "local", SignupMode: "open", InitialCredits: 1000, AuthRateLimit: 1000,
	}
	if configure != nil {
		configure(&cfg)
	}
	a, err := app.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start luna: %v", err)
	}
	ln, err := a.Listen()
	if err != nil {
		a.Close()
		t.Fatalf("listen: %v", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		a.Close()
	})
	return &testServer{t: t, app: a, url: "http://" + ln.Addr().String(), dbURL: cfg.DatabaseURL}
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("response %d is not a JSON object: %v: %s", r.status, err, r.body)
	}
	return v
}

// errorCode returns error.code of an error response, failing the test
// when the body is not in the error shape.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	var v struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil || v.Error.Code == "" || v.Error.Message == "" {
		t.Fatalf("status %d body is not in the error shape: %s", r.status, r.body)
	}
	return v.Error.Code
}

// do sends a request. body may be nil, a string/[]byte (sent as is) or a
// value encoded as JSON. JSON bodies get Content-Type application/json.
func (s *testServer) do(method, path, token string, body any, headers ...string) response {
	s.t.Helper()
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = strings.NewReader(b)
	case []byte:
		reader = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			s.t.Fatalf("encode body: %v", err)
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.url+path, reader)
	if err != nil {
		s.t.Fatalf("new request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("read body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// signup creates a user and returns its token.
func (s *testServer) signup(email string) string {
	s.t.Helper()
	r := s.do("POST", "/v1/auth/signup", "", map[string]string{"email": email, "password": "password123"})
	if r.status != http.StatusCreated {
		s.t.Fatalf("signup %s: %d %s", email, r.status, r.body)
	}
	return r.json(s.t)["token"].(string)
}

// credits returns /v1/me's credits.
func (s *testServer) credits(token string) map[string]any {
	s.t.Helper()
	r := s.do("GET", "/v1/me", token, nil)
	if r.status != http.StatusOK {
		s.t.Fatalf("GET /v1/me: %d %s", r.status, r.body)
	}
	return r.json(s.t)["credits"].(map[string]any)
}

func forEachDialect(t *testing.T, fn func(t *testing.T, dialect store.Dialect)) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			fn(t, d)
		})
	}
}

// ledger is the server's credit ledger (its changes reach /v1/events), for
// setting up and auditing balances behind the API's back.
func (s *testServer) ledger() *credits.Ledger { return s.app.Ledger() }
