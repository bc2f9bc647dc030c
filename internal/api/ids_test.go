package api_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"luna/internal/api"
	"luna/internal/app"
	"luna/internal/llm/llmtest"
	"luna/internal/store"
)

// hostileIDs are path segments (already percent-encoded) that no id can be:
// bytes PostgreSQL refuses (invalid UTF-8, NUL, overlong and surrogate
// encodings) and sizes no id has.
var hostileIDs = map[string]string{
	"invalid UTF-8":          "%FF",
	"NUL":                    "%00",
	"NUL in a UUID":          "019ad2c4-5c1e-7b3a-9f00-2d1c0b4e8a1%00",
	"overlong NUL":           "%C0%80",
	"surrogate":              "%ED%A0%80",
	"invalid UTF-8 in UUID":  "019ad2c4-5c1e-7b3a-9f00-2d1c0b4e8a%FF%FE",
	"encoded slash":          "a%2Fb",
	"not a UUID":             "nope",
	"very long":              strings.Repeat("a", 8000),
	"very long invalid":      strings.Repeat("%FF", 3000),
	"UUID with extra":        "019ad2c4-5c1e-7b3a-9f00-2d1c0b4e8a11x",
	"right-to-left override": "%E2%80%AE",
}

// hostileCursors are cursor query values no list produced.
func hostileCursors() map[string]string {
	enc := func(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }
	return map[string]string{
		"raw invalid UTF-8":     "%FF",
		"raw NUL":               "%00",
		"id invalid UTF-8":      enc("1767225600000|\xff"),
		"id NUL":                enc("1767225600000|\x00"),
		"id overlong NUL":       enc("1767225600000|\xc0\x80"),
		"id surrogate":          enc("1767225600000|\xed\xa0\x80"),
		"id NUL in a UUID":      enc("1767225600000|019ad2c4-5c1e-7b3a-9f00-2d1c0b4e8a1\x00"),
		"time invalid UTF-8":    enc("\xff|019ad2c4-5c1e-7b3a-9f00-2d1c0b4e8a11"),
		"very long":             enc("1767225600000|" + strings.Repeat("\xff", 6000)),
		"not base64":            "!!!",
		"id not a UUID":         enc("1767225600000|nope"),
		"time beyond int64":     enc("99999999999999999999|019ad2c4-5c1e-7b3a-9f00-2d1c0b4e8a11"),
		"percent-encoded bytes": "MTc2NzIyNTYwMDAwMHz%FF",
	}
}

// Every route with an id in its path answers 404 not_found in the error
// shape for ids that cannot exist, and every list answers 400
// invalid_request for cursors it never produced: on both databases, never
// a 500, whatever the bytes.
func TestHostileIDsAndCursors(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := llmtest.New(t)
		s := newTestServer(t, dialect, func(c *app.Config) { c.ModelsFile = modelsFile(t, fake.BaseURL(), testModelKeys) })
		token := s.signup("a@example.com")
		idRoutes := 0
		for _, rt := range api.Routes() {
			if !strings.Contains(rt.Path, "{id}") {
				continue
			}
			idRoutes++
			var body any
			switch rt.Method {
			case "POST":
				body = map[string]string{"content": "hello"}
			case "PATCH":
				body = map[string]string{"title": "hello"}
			}
			for name, id := range hostileIDs {
				path := strings.Replace(rt.Path, "{id}", id, 1)
				r := s.do(rt.Method, path, token, body)
				if r.status != http.StatusNotFound || r.errorCode(t) != "not_found" {
					t.Errorf("%s %s with id %s: %d %.200s, want 404 not_found", rt.Method, rt.Path, name, r.status, r.body)
				}
			}
		}
		if idRoutes < 8 {
			t.Fatalf("only %d routes with an id", idRoutes)
		}

		lists := []string{"/v1/conversations", "/v1/images", "/v1/credits/entries", "/v1/conversations/" + s.newConversation(token) + "/messages"}
		for _, list := range lists {
			for name, c := range hostileCursors() {
				r := s.do("GET", list+"?limit=5&cursor="+c, token, nil)
				if r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_request" {
					t.Errorf("GET %s with cursor %s: %d %.200s, want 400 invalid_request", list, name, r.status, r.body)
				}
			}
		}
	})
}

// A database failure on a lookup is a logged 500, never a 404 that would
// hide it.
func TestLookupDatabaseFailureIs500(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		s := newTestServer(t, dialect, nil)
		token := s.signup("a@example.com")
		const id = "019ad2c4-5c1e-7b3a-9f00-2d1c0b4e8a11"
		for _, c := range []struct{ table, path string }{
			{"conversations", "/v1/conversations/" + id},
			{"messages", "/v1/messages/" + id},
			{"messages", "/v1/messages/" + id + "/stream"},
			{"image_jobs", "/v1/images/" + id},
		} {
			t.Run(c.path, func(t *testing.T) {
				db := s.app.DB()
				if _, err := db.ExecContext(context.Background(), `ALTER TABLE `+c.table+` RENAME TO gone`); err != nil {
					t.Fatal(err)
				}
				defer func() {
					if _, err := db.ExecContext(context.Background(), `ALTER TABLE gone RENAME TO `+c.table); err != nil {
						t.Fatal(err)
					}
				}()
				r := s.do("GET", c.path, token, nil)
				if r.status != http.StatusInternalServerError || r.errorCode(t) != "internal" {
					t.Fatalf("GET %s with table %s gone: %d %s, want 500 internal", c.path, c.table, r.status, r.body)
				}
			})
		}
	})
}
