package cli

import (
	"errors"
	"flag"
	"io"
	"maps"
	"strings"
	"testing"
	"time"
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
