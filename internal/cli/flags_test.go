package cli

import (
	"errors"
	"flag"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"luna/internal/accounts"
	"luna/internal/api"
	"luna/internal/chat"
	"luna/internal/images"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	for flagName, want := range map[string]string{
		"addr":                     "LUNA_ADDR",
		"data-dir":                 "LUNA_DATA_DIR",
		"clerk-authorized-parties": "LUNA_CLERK_AUTHORIZED_PARTIES",
	} {
		if got := envName(flagName); got != want {
			t.Errorf("envName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

// TestFlagPrecedence: a flag on the command line wins over the environment,
// which wins over the default, for every kind of flag.
func TestFlagPrecedence(t *testing.T) {
	t.Parallel()
	type values struct {
		s string
		i int
		n int64
		d time.Duration
		b bool
	}
	defaults := values{s: "def", i: 1, n: 2, d: time.Second, b: false}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want values
	}{
		{"defaults", nil, nil, defaults},
		{"environment",
			map[string]string{"LUNA_S": "env", "LUNA_I": "10", "LUNA_N": "20", "LUNA_D": "1m", "LUNA_B": "true"},
			nil,
			values{s: "env", i: 10, n: 20, d: time.Minute, b: true}},
		{"flags win over the environment",
			map[string]string{"LUNA_S": "env", "LUNA_I": "10", "LUNA_N": "20", "LUNA_D": "1m", "LUNA_B": "true"},
			[]string{"--s", "flag", "--i", "100", "--n", "200", "--d", "1h", "--b=false"},
			values{s: "flag", i: 100, n: 200, d: time.Hour, b: false}},
		{"flags without environment", nil,
			[]string{"-s=flag", "-i=3"},
			values{s: "flag", i: 3, n: 2, d: time.Second}},
		{"an empty variable is unset", map[string]string{"LUNA_S": "", "LUNA_I": ""}, nil, defaults},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := newFlagSet("test", envOf(tt.env))
			fs.SetOutput(io.Discard)
			var got values
			fs.String(&got.s, "s", defaults.s, "")
			fs.Int(&got.i, "i", defaults.i, "")
			fs.Int64(&got.n, "n", defaults.n, "")
			fs.Duration(&got.d, "d", defaults.d, "")
			fs.Bool(&got.b, "b", defaults.b, "")
			if err := fs.parse(tt.args); err != nil {
				t.Fatalf("parse: %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestFlagEnvErrors: a malformed environment value is an error that names
// the variable, even when the command line sets the flag too.
func TestFlagEnvErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"LUNA_I": "ten"}, nil, `LUNA_I="ten": not an integer`},
		{map[string]string{"LUNA_N": "1.5"}, nil, `LUNA_N="1.5": not an integer`},
		{map[string]string{"LUNA_D": "30"}, nil, `LUNA_D="30": not a duration`},
		{map[string]string{"LUNA_B": "yes please"}, nil, `LUNA_B="yes please": not a boolean`},
		{map[string]string{"LUNA_I": "ten"}, []string{"--i", "3"}, `LUNA_I="ten": not an integer`},
		{nil, []string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		fs := newFlagSet("test", envOf(tt.env))
		fs.SetOutput(io.Discard)
		var (
			i int
			n int64
			d time.Duration
			b bool
		)
		fs.Int(&i, "i", 0, "")
		fs.Int64(&n, "n", 0, "")
		fs.Duration(&d, "d", 0, "")
		fs.Bool(&b, "b", false, "")
		err := fs.parse(tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("env %v args %v: err = %v, want it to contain %q", tt.env, tt.args, err, tt.want)
		}
	}
}

func TestFlagUsageNamesVariable(t *testing.T) {
	t.Parallel()
	fs := newFlagSet("test", envOf(nil))
	var s string
	fs.String(&s, "data-dir", "", "where the data lives")
	if got, want := fs.Lookup("data-dir").Usage, "where the data lives (env LUNA_DATA_DIR)"; got != want {
		t.Fatalf("usage = %q, want %q", got, want)
	}
}

func TestParseFlagsHelp(t *testing.T) {
	t.Parallel()
	fs := newFlagSet("test", envOf(nil))
	var out strings.Builder
	if err := parseFlags(fs, []string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: err = %v, want flag.ErrHelp", err)
	}
	fs = newFlagSet("test", envOf(nil))
	if err := parseFlags(fs, []string{"--nope"}, &out); !errors.Is(err, ErrUsage) {
		t.Fatalf("unknown flag: err = %v, want ErrUsage", err)
	}
}

func TestParseHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    map[string]string
		wantErr string
	}{
		{"", map[string]string{}, ""},
		{"  ;  ; ", map[string]string{}, ""},
		{"X-Api-Key: abc", map[string]string{"X-Api-Key": "abc"}, ""},
		{" A : 1 ;B:2;", map[string]string{"A": "1", "B": "2"}, ""},
		{"Authorization: Bearer a:b:c", map[string]string{"Authorization": "Bearer a:b:c"}, ""},
		{"Empty:", map[string]string{"Empty": ""}, ""},
		{"A: 1; A: 2", map[string]string{"A": "2"}, ""},
		{"NoColon", nil, `header "NoColon": want Name: value`},
		{"A: 1; : value", nil, `header ": value": want Name: value`},
	}
	for _, tt := range tests {
		got, err := parseHeaders(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("parseHeaders(%q): err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseHeaders(%q): %v", tt.in, err)
			continue
		}
		if !maps.Equal(got, tt.want) {
			t.Errorf("parseHeaders(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestSplitList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , ,", nil},
		{"https://a.example", []string{"https://a.example"}},
		{" https://a.example , https://b.example,", []string{"https://a.example", "https://b.example"}},
	}
	for _, tt := range tests {
		got := splitList(tt.in)
		if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
			t.Errorf("splitList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	tests := []struct {
		level, format string
		wantErr       string
	}{
		{"info", "text", ""},
		{"debug", "json", ""},
		{"WARN", "text", ""},
		{"loud", "text", `log level "loud": want debug, info, warn or error`},
		{"info", "xml", `log format "xml": want text or json`},
	}
	for _, tt := range tests {
		_, err := newLogger(io.Discard, tt.level, tt.format)
		if got := errString(err); got != tt.wantErr {
			t.Errorf("newLogger(%q, %q): err = %q, want %q", tt.level, tt.format, got, tt.wantErr)
		}
	}
}

// TestServeFlagsConfig: the serve flags, read from the environment and the
// command line, become the app configuration.
func TestServeFlagsConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"LUNA_DATA_DIR":                 "/var/lib/luna",
		"LUNA_IMAGE_COST":               "70",
		"LUNA_CLERK_AUTHORIZED_PARTIES": "https://a.example, https://b.example",
		"LUNA_IMAGE_BACKEND_HEADERS":    "X-Key: k",
	}
	fs := newFlagSet("serve", envOf(env))
	var sf serveFlags
	sf.register(fs)
	if err := parseFlags(fs, []string{"--models-file", "models.toml", "--image-cost", "80"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	cfg, err := sf.config(Env{Getenv: envOf(env), Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/var/lib/luna" || cfg.Images.Jobs.Cost != 80 || cfg.Demo ||
		len(cfg.ClerkAuthorizedParties) != 2 || cfg.Images.Headers["X-Key"] != "k" || cfg.Logger == nil {
		t.Fatalf("config = %+v", cfg)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestServeRejectsNonsenseLimits: a zero or negative count, size or
// duration is an error at start-up naming the flag, not silently the
// default; environment variables are checked the same way.
func TestServeRejectsNonsenseLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--image-cost", "-1"}, nil, "--image-cost -1: must be at least 1"},
		{[]string{"--image-cost", "0"}, nil, "--image-cost 0: must be at least 1"},
		{[]string{"--max-body-bytes", "0"}, nil, "--max-body-bytes 0: must be at least 1"},
		{[]string{"--database-connections", "0"}, nil, "--database-connections 0: must be at least 1"},
		{[]string{"--initial-credits", "-5"}, nil, "--initial-credits -5: must be at least 0"},
		{[]string{"--auth-rate-limit", "0"}, nil, "--auth-rate-limit 0: must be at least 1"},
		{[]string{"--user-rate-limit", "-1"}, nil, "--user-rate-limit -1: must be at least 1"},
		{[]string{"--max-replies-per-user", "0"}, nil, "--max-replies-per-user 0: must be at least 1"},
		{[]string{"--max-requests-per-model", "0"}, nil, "--max-requests-per-model 0: must be at least 1"},
		{[]string{"--image-queue-per-user", "0"}, nil, "--image-queue-per-user 0: must be at least 1"},
		{[]string{"--session-ttl", "0"}, nil, "--session-ttl 0s: must be longer than zero"},
		{[]string{"--session-ttl", "-1h"}, nil, "--session-ttl -1h0m0s: must be longer than zero"},
		{[]string{"--shutdown-timeout", "0s"}, nil, "--shutdown-timeout 0s: must be longer than zero"},
		{[]string{"--sweep-interval", "-1s"}, nil, "--sweep-interval -1s: must be longer than zero"},
		{[]string{"--generation-lease", "0s"}, nil, "--generation-lease 0s: must be longer than zero"},
		{[]string{"--max-reply-duration", "0s"}, nil, "--max-reply-duration 0s: must be longer than zero"},
		{[]string{"--reply-idle-timeout", "-5s"}, nil, "--reply-idle-timeout -5s: must be longer than zero"},
		{[]string{"--image-timeout", "0s"}, nil, "--image-timeout 0s: must be longer than zero"},
		{[]string{"--image-url-ttl", "0s"}, nil, "--image-url-ttl 0s: must be longer than zero"},
		{[]string{"--image-lease", "0s"}, nil, "--image-lease 0s: must be longer than zero"},
		{nil, map[string]string{"LUNA_IMAGE_COST": "-1"}, "--image-cost -1: must be at least 1"},
		{nil, map[string]string{"LUNA_SESSION_TTL": "0s"}, "--session-ttl 0s: must be longer than zero"},
	}
	for _, tt := range tests {
		fs := newFlagSet("serve", envOf(tt.env))
		var sf serveFlags
		sf.register(fs)
		if err := parseFlags(fs, tt.args, io.Discard); err != nil {
			t.Fatalf("serve %v: %v", tt.args, err)
		}
		_, err := sf.config(Env{Getenv: envOf(tt.env), Stderr: io.Discard})
		if got := errString(err); got != tt.want {
			t.Errorf("serve %v env %v: err = %q, want %q", tt.args, tt.env, got, tt.want)
		}
	}
	if t.Failed() {
		return // without the check, serve would start a server
	}
	// runServe prints the reason and exits with a usage error.
	var stderr strings.Builder
	err := Run(t.Context(), Env{Args: []string{"serve", "--image-cost", "-1"}, Getenv: envOf(nil), Stdout: io.Discard, Stderr: &stderr})
	if !errors.Is(err, ErrUsage) || !strings.Contains(stderr.String(), "luna serve: --image-cost -1: must be at least 1") {
		t.Errorf("serve --image-cost -1: err = %v, stderr %q", err, stderr.String())
	}
}

// TestServeDefaults: the flags' defaults are the packages' own defaults
// (written once, there) and pass the start-up check.
func TestServeDefaults(t *testing.T) {
	t.Parallel()
	fs := newFlagSet("serve", envOf(nil))
	var sf serveFlags
	sf.register(fs)
	if err := parseFlags(fs, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	cfg, err := sf.config(Env{Getenv: envOf(nil), Stderr: io.Discard})
	if err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	if got, want := cfg.Images.Jobs.Cost, images.DefaultConfig().Cost; got != want {
		t.Errorf("image cost %d, want images' default %d", got, want)
	}
	if got, want := cfg.MaxBodyBytes, api.DefaultConfig().MaxBodyBytes; got != want {
		t.Errorf("max body bytes %d, want the API's default %d", got, want)
	}
	if got, want := cfg.Chat.LeaseTTL, chat.DefaultConfig().LeaseTTL; got != want {
		t.Errorf("generation lease %s, want chat's default %s", got, want)
	}
	if got, want := cfg.SessionTTL, accounts.DefaultConfig().SessionTTL; got != want {
		t.Errorf("session TTL %s, want accounts' default %s", got, want)
	}
}
