package cli

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// flagSet is a flag.FlagSet whose flags also read LUNA_* environment
// variables: --data-dir ↔ LUNA_DATA_DIR. A flag on the command line wins over
// the environment, which wins over the default.
type flagSet struct {
	*flag.FlagSet
	getenv  func(string) string
	envErrs []error
}

func newFlagSet(name string, getenv func(string) string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return &flagSet{FlagSet: fs, getenv: getenv}
}

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return "LUNA_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (fs *flagSet) env(name string) (string, bool) {
	v := fs.getenv(envName(name))
	return v, v != ""
}

func (fs *flagSet) usage(name, usage string) string {
	return usage + " (env " + envName(name) + ")"
}

func (fs *flagSet) String(p *string, name, def, usage string) {
	if v, ok := fs.env(name); ok {
		def = v
	}
	fs.StringVar(p, name, def, fs.usage(name, usage))
}

func (fs *flagSet) Int64(p *int64, name string, def int64, usage string) {
	if v, ok := fs.env(name); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			fs.envErrs = append(fs.envErrs, fmt.Errorf("%s=%q: not an integer", envName(name), v))
		} else {
			def = n
		}
	}
	fs.Int64Var(p, name, def, fs.usage(name, usage))
}

func (fs *flagSet) Int(p *int, name string, def int, usage string) {
	if v, ok := fs.env(name); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			fs.envErrs = append(fs.envErrs, fmt.Errorf("%s=%q: not an integer", envName(name), v))
		} else {
			def = n
		}
	}
	fs.IntVar(p, name, def, fs.usage(name, usage))
}

func (fs *flagSet) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	if v, ok := fs.env(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			fs.envErrs = append(fs.envErrs, fmt.Errorf("%s=%q: not a duration (like 30s, 15m, 720h)", envName(name), v))
		} else {
			def = d
		}
	}
	fs.DurationVar(p, name, def, fs.usage(name, usage))
}

// parse parses args and reports bad environment values too.
func (fs *flagSet) parse(args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(fs.envErrs) > 0 {
		return fs.envErrs[0]
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func (fs *flagSet) Bool(p *bool, name string, def bool, usage string) {
	if v, ok := fs.env(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			fs.envErrs = append(fs.envErrs, fmt.Errorf("%s=%q: not a boolean (true or false)", envName(name), v))
		} else {
			def = b
		}
	}
	fs.BoolVar(p, name, def, fs.usage(name, usage))
}

// parseHeaders reads "Name: value; Other: value" into a map.
func parseHeaders(s string) (map[string]string, error) {
	headers := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		name, value, ok := strings.Cut(part, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("header %q: want Name: value", strings.TrimSpace(part))
		}
		headers[strings.TrimSpace(name)] = strings.TrimSpace(value)
	}
	return headers, nil
}
