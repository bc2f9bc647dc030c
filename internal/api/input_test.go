package api_test

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"

	"luna/internal/api"
	"luna/internal/app"
	"luna/internal/store"
)

// Every authenticated route refuses missing and bad tokens with 401 in the
// error shape.
func TestAuthenticatedRoutesRefuseBadTokens(t *testing.T) {
	s := newTestServer(t, store.SQLite, nil)
	valid := s.signup("a@example.com")
	authRoutes := 0
	for _, rt := range api.Routes() {
		if !rt.Auth {
			continue
		}
		authRoutes++
		path := strings.NewReplacer("{id}", "00000000-0000-0000-0000-000000000000").Replace(rt.Path)
		for _, header := range []string{"", "Bearer", "Bearer ", "Bearer garbage", "Bearer luna_garbage", "Basic YTpi", "Bearer " + valid + "x", valid} {
			var r response
			if header == "" {
				r = s.do(rt.Method, path, "", nil)
			} else {
				r = s.do(rt.Method, path, "", nil, "Authorization", header)
			}
			if r.status != http.StatusUnauthorized || r.errorCode(t) != "unauthorized" {
				t.Errorf("%s %s with Authorization %q: %d %s, want 401 unauthorized", rt.Method, path, header, r.status, r.body)
			}
		}
	}
	if authRoutes < 3 {
		t.Fatalf("only %d authenticated routes found", authRoutes)
	}
}

// JSON routes refuse malformed bodies, unknown fields, wrong types and
// oversized bodies with 4xx in the error shape.
func TestBadJSONBodies(t *testing.T) {
	s := newTestServer(t, store.SQLite, func(c *app.Config) { c.MaxBodyBytes = 4096 })
	token := s.signup("a@example.com")
	cases := []struct {
		name       string
		body       string
		status     int
		code       string
		contentTyp string
	}{
		{"malformed", `{"email": "a@example.com",`, 400, "invalid_request", ""},
		{"not an object", `[1,2,3]`, 400, "invalid_request", ""},
		{"unknown field", `{"email": "a@example.com", "password": "password123", "admin": true}`, 400, "invalid_request", ""},
		{"wrong type", `{"email": 42, "password": "password123"}`, 400, "invalid_request", ""},
		{"two objects", `{"email": "a@example.com"} {"email": "b@example.com"}`, 400, "invalid_request", ""},
		{"empty", ``, 400, "invalid_request", ""},
		{"null", `null`, 400, "invalid_request", ""},
		{"oversized", `{"email": "` + strings.Repeat("a", 5000) + `"}`, 413, "payload_too_large", ""},
		{"form content type", `email=a`, 415, "unsupported_media_type", "application/x-www-form-urlencoded"},
		{"NUL character", `{"email": "a@example.com", "password": "password123", "name": "a\u0000b"}`, 400, "invalid_request", ""},
		{"invalid utf-8", "{\"email\": \"\xff\xfe\", \"password\": \"password123\"}", 400, "invalid_request", ""},
	}
	for _, path := range []string{"/v1/auth/signup", "/v1/auth/login"} {
		for _, tc := range cases {
			headers := []string{}
			if tc.contentTyp != "" {
				headers = []string{"Content-Type", tc.contentTyp}
			}
			r := s.do("POST", path, token, tc.body, headers...)
			if r.status != tc.status || r.errorCode(t) != tc.code {
				t.Errorf("%s %s: %d %s, want %d %s", path, tc.name, r.status, r.body, tc.status, tc.code)
			}
		}
	}
	// Unknown routes and methods answer in the error shape too.
	if r := s.do("GET", "/v1/nothing-here", token, nil); r.status != 404 || r.errorCode(t) != "not_found" {
		t.Errorf("unknown route: %d %s", r.status, r.body)
	}
	if r := s.do("DELETE", "/v1/me", token, nil); r.status != 405 || r.errorCode(t) != "method_not_allowed" || r.header.Get("Allow") != "GET" {
		t.Errorf("wrong method: %d %v %s", r.status, r.header, r.body)
	}
}

// No route answers 500 to random input, authenticated or not.
func TestRandomInputNeverCauses500(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		s := newTestServer(t, dialect, nil)
		token := s.signup("a@example.com")
		rng := rand.New(rand.NewPCG(1, 2))
		fields := []string{"email", "password", "name", "inviteCode", "modelId", "content", "title", "x"}
		values := []any{"", "a@example.com", strings.Repeat("é", 300), 0, -1, 1e308, true, nil, []any{1}, map[string]any{"a": 1}, "\x00", "password123"}
		for _, rt := range api.Routes() {
			for i := range 40 {
				obj := map[string]any{}
				for range rng.IntN(4) {
					obj[fields[rng.IntN(len(fields))]] = values[rng.IntN(len(values))]
				}
				body, _ := json.Marshal(obj)
				if i%5 == 0 {
					body = body[:rng.IntN(len(body)+1)]
				}
				tok := token
				if i%3 == 0 {
					tok = ""
				}
				r := s.do(rt.Method, rt.Path, tok, string(body))
				if r.status >= 500 {
					t.Errorf("%s %s with %s: %d %s", rt.Method, rt.Path, body, r.status, r.body)
				}
			}
		}
	})
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	s := newTestServer(t, store.SQLite, nil)
	r := s.do("GET", "/openapi.json", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d", r.status)
	}
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi version %q, want 3.1.0", doc.OpenAPI)
	}
	registered := map[string]bool{}
	for _, rt := range api.Routes() {
		key := strings.ToLower(rt.Method) + " " + rt.Path
		registered[key] = true
		op, ok := doc.Paths[rt.Path][strings.ToLower(rt.Method)]
		if !ok {
			t.Errorf("route %s %s is not in openapi.json", rt.Method, rt.Path)
			continue
		}
		// Public routes say so with an empty security list (linters want it
		// explicit); authenticated ones name the bearer scheme.
		security, declared := op["security"].([]any)
		if !declared || rt.Auth != (len(security) > 0) {
			t.Errorf("route %s %s: auth %v but documented security %v", rt.Method, rt.Path, rt.Auth, op["security"])
		}
		if r, ok := op["responses"].(map[string]any)["429"].(map[string]any); ok {
			if _, ok := r["headers"].(map[string]any)["Retry-After"]; !ok {
				t.Errorf("route %s %s: 429 without a Retry-After header", rt.Method, rt.Path)
			}
		}
		if _, ok := op["responses"].(map[string]any)["401"]; rt.Auth && !ok {
			t.Errorf("route %s %s: 401 response not documented", rt.Method, rt.Path)
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if !registered[method+" "+path] {
				t.Errorf("openapi.json documents %s %s, which is not a route", strings.ToUpper(method), path)
			}
		}
	}
	// The embedded document is the file in the repository.
	onDisk, err := os.ReadFile("openapi.json")
	if err != nil || string(onDisk) != string(r.body) {
		t.Fatalf("served document differs from internal/api/openapi.json (%v)", err)
	}
}
