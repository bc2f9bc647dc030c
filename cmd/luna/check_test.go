package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"luna/internal/clerk/clerktest"
)

// `luna check` reads the serve flags and environment, prints one line per
// part and exits 1 when one fails; it creates nothing (internal/preflight
// tests each check against the fakes).
func TestCheck(t *testing.T) {
	bin := buildLuna(t)
	clerkFake := clerktest.New(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	for _, c := range []struct {
		name  string
		env   []string
		args  []string
		code  int
		lines []string
	}{
		{"demo", []string{"LUNA_DATA_DIR=" + dataDir}, nil, 0, []string{
			"ok    database (sqlite)            no database at " + filepath.Join(dataDir, "luna.db") + " yet",
			"demo  models ", "demo  images ", "ok    storage (local) ", "ok    auth (local) ",
		}},
		{"Clerk from the environment", []string{"LUNA_DATA_DIR=" + dataDir, "LUNA_AUTH=clerk",
			"LUNA_CLERK_ISSUER=" + clerkFake.Issuer(), "LUNA_CLERK_JWKS_URL=" + clerkFake.JWKSURL()}, nil, 0,
			[]string{"ok    auth (clerk)                 JWKS " + clerkFake.JWKSURL() + " loads"}},
		{"Clerk JWKS missing, by flag", []string{"LUNA_DATA_DIR=" + dataDir, "LUNA_AUTH=clerk", "LUNA_CLERK_ISSUER=" + clerkFake.Issuer()},
			[]string{"--clerk-jwks-url", clerkFake.Issuer() + "/missing.json"}, 1,
			[]string{"FAIL  auth (clerk)                 JWKS: GET " + clerkFake.Issuer() + "/missing.json: 404", "ok    database (sqlite)"}},
		{"database unreachable", []string{"LUNA_DATABASE_URL=postgres://luna@127.0.0.1:1/luna?connect_timeout=2"}, nil, 1,
			[]string{"FAIL  database (postgres)", "demo  models "}},
		{"bad flag", nil, []string{"--image-backend-headers", "no colon"}, 2, []string{"--image-backend-headers"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, code := runLuna(t, bin, c.env, append([]string{"check"}, c.args...)...)
			if code != c.code {
				t.Errorf("exit %d, want %d\n%s", code, c.code, out)
			}
			for _, line := range c.lines {
				if !strings.Contains(out, line) {
					t.Errorf("no line with %q in\n%s", line, out)
				}
			}
		})
	}
	if _, err := os.Stat(dataDir); err == nil {
		t.Errorf("luna check created the data dir %s", dataDir)
	}
}
