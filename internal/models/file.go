package models

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Defaults and limits of the models file.
const (
	// DefaultMillicreditsPer1K is the price when a model sets none: 10
	// credits per 1,000 tokens, i.e. 1 credit per 100 tokens.
	DefaultMillicreditsPer1K = 10_000
	// MaxMillicreditsPer1K caps the price at 1,000,000 credits per 1,000
	// tokens, far above any sane price.
	MaxMillicreditsPer1K = 1_000_000_000
	maxIDLength          = 64
	// maxTokens is the largest token count the models table's INTEGER
	// columns hold on PostgreSQL.
	maxTokens = math.MaxInt32
)

// fileModels is the shape of the models file.
type fileModels struct {
	Models []fileModel `toml:"model"`
}

// fileModel is one [[model]] table. Pointers tell a missing key from a zero
// value where the difference matters.
type fileModel struct {
	ID                 string   `toml:"id"`
	Name               string   `toml:"name"`
	Description        string   `toml:"description"`
	BaseURL            string   `toml:"base_url"`
	APIKey             *string  `toml:"api_key"`
	APIKeyEnv          *string  `toml:"api_key_env"`
	ServedModelName    string   `toml:"served_model_name"`
	ContextTokens      int64    `toml:"context_tokens"`
	MaxOutputTokens    int64    `toml:"max_output_tokens"`
	CreditsPer1KTokens *float64 `toml:"credits_per_1k_tokens"`
	SystemPrompt       string   `toml:"system_prompt"`
	ConnectTimeout     string   `toml:"connect_timeout"`
	FirstTokenTimeout  string   `toml:"first_token_timeout"`
	Demo               bool     `toml:"demo"`
	Active             *bool    `toml:"active"`
}

// LoadFile reads the TOML models file at path and validates every model
// (see the package documentation for the format). getenv looks up the
// environment variables named by api_key_env.
func LoadFile(path string, getenv func(string) string) ([]Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read models file: %w", err)
	}
	models, err := Parse(data, getenv)
	if err != nil {
		return nil, fmt.Errorf("models file %s: %w", path, err)
	}
	return models, nil
}

// Parse decodes and validates a TOML models file. It reports every invalid
// model, each error naming the model and the field; duplicate ids and
// unknown keys are errors. getenv looks up the environment variables named by
// api_key_env; a nil getenv sees an empty environment.
func Parse(data []byte, getenv func(string) string) ([]Model, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	var file fileModels
	meta, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&file)
	if err != nil {
		return nil, fmt.Errorf("parse models file: %w", err)
	}
	if undecoded := meta.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = strconv.Quote(k.String())
		}
		return nil, fmt.Errorf("parse models file: unknown key(s) %s", strings.Join(keys, ", "))
	}
	if len(file.Models) == 0 {
		return nil, errors.New("parse models file: no [[model]] tables")
	}

	var problems []error
	models := make([]Model, 0, len(file.Models))
	firstIndex := make(map[string]int, len(file.Models))
	for i, fm := range file.Models {
		m, err := fm.model(i, getenv)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		if first, ok := firstIndex[m.ID]; ok {
			problems = append(problems, fmt.Errorf("%s: id: duplicate id, already used by model #%d", label(i, m.ID), first+1))
			continue
		}
		firstIndex[m.ID] = i
		models = append(models, m)
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return models, nil
}

// label names the index-th model (0-based) in error messages.
func label(index int, id string) string {
	if id == "" {
		return fmt.Sprintf("model #%d", index+1)
	}
	return fmt.Sprintf("model #%d (%q)", index+1, id)
}

// model validates fm, the index-th model of the file, and converts it.
func (fm fileModel) model(index int, getenv func(string) string) (Model, error) {
	m := Model{
		ID:              fm.ID,
		DisplayName:     strings.TrimSpace(fm.Name),
		Description:     strings.TrimSpace(fm.Description),
		ServedModelName: strings.TrimSpace(fm.ServedModelName),
		SystemPrompt:    strings.TrimSpace(fm.SystemPrompt),
		Demo:            fm.Demo,
		Active:          true,
		SortOrder:       index,
	}
	var problems []error
	fail := func(field, format string, args ...any) {
		problems = append(problems, fmt.Errorf("%s: %s: %s", label(index, fm.ID), field, fmt.Sprintf(format, args...)))
	}

	if err := validateID(fm.ID); err != nil {
		fail("id", "%v", err)
	}
	if m.DisplayName == "" {
		fail("name", "is required")
	}
	baseURL, err := validateBaseURL(fm.BaseURL)
	if err != nil {
		fail("base_url", "%v", err)
	}
	m.BaseURL = baseURL

	switch {
	case fm.APIKey != nil && fm.APIKeyEnv != nil:
		fail("api_key", "api_key and api_key_env are mutually exclusive")
	case fm.APIKey != nil:
		m.APIKey = *fm.APIKey
	case fm.APIKeyEnv != nil:
		name := strings.TrimSpace(*fm.APIKeyEnv)
		if name == "" {
			fail("api_key_env", "names no environment variable")
		} else if m.APIKey = getenv(name); m.APIKey == "" {
			fail("api_key_env", "environment variable %s is empty or not set", name)
		}
	}

	if m.ServedModelName == "" {
		fail("served_model_name", "is required")
	}
	switch {
	case fm.ContextTokens <= 0:
		fail("context_tokens", "must be greater than 0 (got %d)", fm.ContextTokens)
	case fm.ContextTokens > maxTokens:
		fail("context_tokens", "must be at most %d (got %d)", maxTokens, fm.ContextTokens)
	}
	switch {
	case fm.MaxOutputTokens <= 0:
		fail("max_output_tokens", "must be greater than 0 (got %d)", fm.MaxOutputTokens)
	case fm.ContextTokens > 0 && fm.MaxOutputTokens >= fm.ContextTokens:
		fail("max_output_tokens", "must be less than context_tokens (%d >= %d)", fm.MaxOutputTokens, fm.ContextTokens)
	}
	m.ContextTokens = int(fm.ContextTokens)
	m.MaxOutputTokens = int(fm.MaxOutputTokens)

	m.MillicreditsPer1K = DefaultMillicreditsPer1K
	if fm.CreditsPer1KTokens != nil {
		price, err := millicredits(*fm.CreditsPer1KTokens)
		if err != nil {
			fail("credits_per_1k_tokens", "%v", err)
		}
		m.MillicreditsPer1K = price
	}

	if m.ConnectTimeout, err = parseTimeout(fm.ConnectTimeout); err != nil {
		fail("connect_timeout", "%v", err)
	}
	if m.FirstTokenTimeout, err = parseTimeout(fm.FirstTokenTimeout); err != nil {
		fail("first_token_timeout", "%v", err)
	}
	if fm.Active != nil {
		m.Active = *fm.Active
	}

	if len(problems) > 0 {
		return Model{}, errors.Join(problems...)
	}
	return m, nil
}

// validateID checks id against [a-z0-9][a-z0-9._-]{0,63}.
func validateID(id string) error {
	if id == "" {
		return errors.New("is required")
	}
	if len(id) > maxIDLength {
		return fmt.Errorf("%q is longer than %d characters", id, maxIDLength)
	}
	for i, c := range []byte(id) {
		lowerOrDigit := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if i == 0 && !lowerOrDigit {
			return fmt.Errorf("%q must start with a lowercase letter or digit", id)
		}
		if !lowerOrDigit && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("%q may contain only lowercase letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

// validateBaseURL checks that raw is an absolute http(s) URL without query
// or fragment (clients append paths such as /chat/completions to it) and
// returns it without a trailing slash.
func validateBaseURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%q is not a valid URL", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%q must be an absolute http:// or https:// URL", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q has no host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q must not have a query or fragment", raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

// millicredits converts a price in credits per 1,000 tokens, with at most
// three decimals, to millicredits exactly. It works on the shortest decimal
// form of the float, which is what the operator wrote.
func millicredits(credits float64) (int64, error) {
	if math.IsNaN(credits) || math.IsInf(credits, 0) {
		return 0, fmt.Errorf("must be a finite number (got %v)", credits)
	}
	if credits < 0 {
		return 0, fmt.Errorf("must not be negative (got %v)", credits)
	}
	if credits > MaxMillicreditsPer1K/1000 {
		return 0, fmt.Errorf("must be at most %d (got %v)", MaxMillicreditsPer1K/1000, credits)
	}
	whole, frac, _ := strings.Cut(strconv.FormatFloat(credits, 'f', -1, 64), ".")
	if len(frac) > 3 {
		return 0, fmt.Errorf("may have at most 3 decimals (got %s.%s)", whole, frac)
	}
	n, err := strconv.ParseInt(whole+frac+strings.Repeat("0", 3-len(frac)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid price %v: %w", credits, err)
	}
	return n, nil
}

// parseTimeout parses an optional, non-negative Go duration; "" means 0.
func parseTimeout(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as \"30s\" or \"3m\"", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("must not be negative (got %s)", s)
	}
	return d, nil
}
