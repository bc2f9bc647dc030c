package models_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"luna"
	"luna/internal/models"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// validModel is a complete, valid [[model]] table; invalid-file cases edit it.
const validModel = `
[[model]]
id = "llama-3.3-70b-abliterated"
name = "Llama 3.3 70B Abliterated"
description = "Big model."
base_url = "https://api.runpod.ai/v2/abc123/openai/v1/"
api_key_env = "RUNPOD_API_KEY"
served_model_name = "huihui-ai/Llama-3.3-70B-Instruct-abliterated"
context_tokens = 32768
max_output_tokens = 2048
credits_per_1k_tokens = 10
system_prompt = """
Be concise.
"""
connect_timeout = "30s"
first_token_timeout = "3m"
`

func fakeEnv(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func TestParse(t *testing.T) {
	t.Parallel()
	data := validModel + `
[[model]]
id = "small"
name = "Small"
base_url = "http://127.0.0.1:8000/v1"
api_key = "inline-key"
served_model_name = "small-model"
context_tokens = 8192
max_output_tokens = 1024
credits_per_1k_tokens = 2.5
active = false
demo = true
`
	got, err := models.Parse([]byte(data), fakeEnv(map[string]string{"RUNPOD_API_KEY": "rp-secret"}))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := []models.Model{
		{
			ID:                "llama-3.3-70b-abliterated",
			DisplayName:       "Llama 3.3 70B Abliterated",
			Description:       "Big model.",
			BaseURL:           "https://api.runpod.ai/v2/abc123/openai/v1",
			APIKey:            "rp-secret",
			ServedModelName:   "huihui-ai/Llama-3.3-70B-Instruct-abliterated",
			ContextTokens:     32768,
			MaxOutputTokens:   2048,
			MillicreditsPer1K: 10_000,
			SystemPrompt:      "Be concise.",
			ConnectTimeout:    30 * time.Second,
			FirstTokenTimeout: 3 * time.Minute,
			Active:            true,
			SortOrder:         0,
		},
		{
			ID:                "small",
			DisplayName:       "Small",
			BaseURL:           "http://127.0.0.1:8000/v1",
			APIKey:            "inline-key",
			ServedModelName:   "small-model",
			ContextTokens:     8192,
			MaxOutputTokens:   1024,
			MillicreditsPer1K: 2500,
			Demo:              true,
			Active:            false,
			SortOrder:         1,
		},
	}
	if got, want := len(got), len(want); got != want {
		t.Fatalf("len = %d, want %d", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("model %d =\n%+v\nwant\n%+v", i, got[i], want[i])
		}
	}
	if got, want := got[1].CreditsPer1KTokens(), 2.5; got != want {
		t.Errorf("CreditsPer1KTokens = %v, want %v", got, want)
	}
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	data := `
[[model]]
id = "m"
name = "M"
base_url = "http://gpu1:8000/v1"
served_model_name = "m"
context_tokens = 4096
max_output_tokens = 512
`
	got, err := models.Parse([]byte(data), nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	m := got[0]
	if got, want := m.MillicreditsPer1K, int64(models.DefaultMillicreditsPer1K); got != want {
		t.Errorf("MillicreditsPer1K = %d, want %d", got, want)
	}
	if got, want := m.Active, true; got != want {
		t.Errorf("Active = %v, want %v", got, want)
	}
	if got, want := m.APIKey, ""; got != want {
		t.Errorf("APIKey = %q, want %q", got, want)
	}
	if got, want := m.ConnectTimeout, time.Duration(0); got != want {
		t.Errorf("ConnectTimeout = %v, want %v", got, want)
	}
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	env := fakeEnv(map[string]string{"RUNPOD_API_KEY": "rp-secret"})
	tests := []struct {
		name string
		data string
		want []string // substrings of the error
	}{
		{"missing id", strings.Replace(validModel, `id = "llama-3.3-70b-abliterated"`, ``, 1), []string{"model #1", "id: is required"}},
		{"bad id", strings.Replace(validModel, `id = "llama-3.3-70b-abliterated"`, `id = "Llama 3"`, 1), []string{`model #1 ("Llama 3")`, "id:", "lowercase"}},
		{"id starting with a dash", strings.Replace(validModel, `id = "llama-3.3-70b-abliterated"`, `id = "-x"`, 1), []string{"id:", "must start"}},
		{"id too long", strings.Replace(validModel, `id = "llama-3.3-70b-abliterated"`, `id = "`+strings.Repeat("a", 65)+`"`, 1), []string{"id:", "longer than 64"}},
		{"missing name", strings.Replace(validModel, `name = "Llama 3.3 70B Abliterated"`, ``, 1), []string{"llama-3.3-70b-abliterated", "name: is required"}},
		{"bad URL scheme", strings.Replace(validModel, `base_url = "https://api.runpod.ai/v2/abc123/openai/v1/"`, `base_url = "ftp://gpu1/v1"`, 1), []string{"llama-3.3-70b-abliterated", "base_url:", "http"}},
		{"relative URL", strings.Replace(validModel, `base_url = "https://api.runpod.ai/v2/abc123/openai/v1/"`, `base_url = "gpu1:8000/v1"`, 1), []string{"base_url:"}},
		{"URL without host", strings.Replace(validModel, `base_url = "https://api.runpod.ai/v2/abc123/openai/v1/"`, `base_url = "http:///v1"`, 1), []string{"base_url:", "no host"}},
		{"missing URL", strings.Replace(validModel, `base_url = "https://api.runpod.ai/v2/abc123/openai/v1/"`, ``, 1), []string{"base_url: is required"}},
		{"missing served model name", strings.Replace(validModel, `served_model_name = "huihui-ai/Llama-3.3-70B-Instruct-abliterated"`, ``, 1), []string{"served_model_name: is required"}},
		{"zero context", strings.Replace(validModel, `context_tokens = 32768`, `context_tokens = 0`, 1), []string{"context_tokens:", "greater than 0"}},
		{"max output equals context", strings.Replace(validModel, `max_output_tokens = 2048`, `max_output_tokens = 32768`, 1), []string{"llama-3.3-70b-abliterated", "max_output_tokens:", "less than context_tokens"}},
		{"max output above context", strings.Replace(validModel, `max_output_tokens = 2048`, `max_output_tokens = 40000`, 1), []string{"max_output_tokens:", "less than context_tokens"}},
		{"zero max output", strings.Replace(validModel, `max_output_tokens = 2048`, `max_output_tokens = 0`, 1), []string{"max_output_tokens:", "greater than 0"}},
		{"negative price", strings.Replace(validModel, `credits_per_1k_tokens = 10`, `credits_per_1k_tokens = -1`, 1), []string{"llama-3.3-70b-abliterated", "credits_per_1k_tokens:", "negative"}},
		{"price with 4 decimals", strings.Replace(validModel, `credits_per_1k_tokens = 10`, `credits_per_1k_tokens = 2.5001`, 1), []string{"credits_per_1k_tokens:", "at most 3 decimals"}},
		{"huge price", strings.Replace(validModel, `credits_per_1k_tokens = 10`, `credits_per_1k_tokens = 1e7`, 1), []string{"credits_per_1k_tokens:", "at most"}},
		{"price not a number", strings.Replace(validModel, `credits_per_1k_tokens = 10`, `credits_per_1k_tokens = "10"`, 1), []string{"credits_per_1k_tokens"}},
		{"bad timeout", strings.Replace(validModel, `connect_timeout = "30s"`, `connect_timeout = "30 seconds"`, 1), []string{"connect_timeout:", "duration"}},
		{"negative timeout", strings.Replace(validModel, `first_token_timeout = "3m"`, `first_token_timeout = "-3m"`, 1), []string{"first_token_timeout:", "negative"}},
		{"duplicate id", validModel + validModel, []string{`model #2 ("llama-3.3-70b-abliterated")`, "duplicate id", "model #1"}},
		{"unknown key", validModel + "temperature = 0.7\n", []string{"unknown key", "model.temperature"}},
		{"unknown top-level key", "models_dir = \"x\"\n" + validModel, []string{"unknown key", "models_dir"}},
		{"api_key and api_key_env", strings.Replace(validModel, `api_key_env = "RUNPOD_API_KEY"`, `api_key_env = "RUNPOD_API_KEY"`+"\n"+`api_key = "k"`, 1), []string{"llama-3.3-70b-abliterated", "api_key", "mutually exclusive"}},
		{"empty env var", strings.Replace(validModel, `api_key_env = "RUNPOD_API_KEY"`, `api_key_env = "UNSET_KEY"`, 1), []string{"llama-3.3-70b-abliterated", "api_key_env:", "UNSET_KEY", "empty or not set"}},
		{"no models", "", []string{"no [[model]]"}},
		{"not TOML", "[[model]\n", []string{"parse models file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := models.Parse([]byte(tt.data), env)
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want an error", got)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	t.Parallel()
	data := strings.Replace(validModel, `context_tokens = 32768`, `context_tokens = 0`, 1)
	data = strings.Replace(data, `credits_per_1k_tokens = 10`, `credits_per_1k_tokens = -1`, 1)
	_, err := models.Parse([]byte(data), fakeEnv(nil))
	if err == nil {
		t.Fatal("Parse succeeded, want an error")
	}
	for _, want := range []string{"context_tokens:", "credits_per_1k_tokens:", "api_key_env:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestLoadFileExample(t *testing.T) {
	t.Parallel()
	got, err := models.LoadFile("../../config/models.example.toml", fakeEnv(map[string]string{"RUNPOD_API_KEY": "rp-secret"}))
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	wantIDs := []string{"llama-3.3-70b-abliterated", "mistral-small-3.1-24b-abliterated", "llama-3.1-8b-abliterated"}
	if got, want := len(got), len(wantIDs); got != want {
		t.Fatalf("%d models, want %d", got, want)
	}
	for i, m := range got {
		if got, want := m.ID, wantIDs[i]; got != want {
			t.Errorf("model %d id = %q, want %q", i, got, want)
		}
		if !m.Active {
			t.Errorf("model %q is inactive", m.ID)
		}
		if m.SystemPrompt == "" {
			t.Errorf("model %q has no system prompt", m.ID)
		}
	}
	if got, want := got[0].APIKey, "rp-secret"; got != want {
		t.Errorf("Runpod model APIKey = %q, want %q", got, want)
	}
	if got, want := got[2].MillicreditsPer1K < got[0].MillicreditsPer1K, true; got != want {
		t.Errorf("test model cheaper than the flagship = %v, want %v", got, want)
	}
}

func TestLoadFileMissing(t *testing.T) {
	t.Parallel()
	if _, err := models.LoadFile(t.TempDir()+"/nope.toml", nil); err == nil {
		t.Fatal("LoadFile of a missing file succeeded")
	}
}

func TestCost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		price  int64 // millicredits per 1,000 tokens
		tokens int64
		want   int64
	}{
		{10_000, 0, 0},
		{10_000, 1, 1},
		{10_000, 100, 1},
		{10_000, 101, 2},
		{10_000, 1000, 10},
		{10_000, -5, 0},
		{2500, 400, 1},
		{2500, 401, 2},
		{2500, 1000, 3},
		{1, 1, 1},
		{1, 1_000_000, 1},
		{1, 1_000_001, 2},
		{0, 1000, 0},
		{models.MaxMillicreditsPer1K, 1_000_000_000, 1_000_000_000_000},
		{1 << 62, 1 << 62, 1<<63 - 1}, // clamped, not wrapped
	}
	for _, tt := range tests {
		m := models.Model{MillicreditsPer1K: tt.price}
		if got, want := m.Cost(tt.tokens), tt.want; got != want {
			t.Errorf("price %d: Cost(%d) = %d, want %d", tt.price, tt.tokens, got, want)
		}
	}
}

func TestTokensAffordable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		price   int64
		credits int64
		want    int64
	}{
		{10_000, 0, 0},
		{10_000, 1, 100},
		{10_000, 10, 1000},
		{10_000, -1, 0},
		{2500, 1, 400},
		{2500, 3, 1200},
		{3, 1, 333_333},
		{0, 5, 1<<63 - 1},
	}
	for _, tt := range tests {
		m := models.Model{MillicreditsPer1K: tt.price}
		if got, want := m.TokensAffordable(tt.credits), tt.want; got != want {
			t.Errorf("price %d: TokensAffordable(%d) = %d, want %d", tt.price, tt.credits, got, want)
		}
	}

	// TokensAffordable is the exact inverse of Cost.
	for _, price := range []int64{1, 3, 999, 1000, 2500, 3333, 10_000, 123_457, models.MaxMillicreditsPer1K} {
		m := models.Model{MillicreditsPer1K: price}
		for credits := int64(0); credits <= 3000; credits++ {
			tokens := m.TokensAffordable(credits)
			if got := m.Cost(tokens); got > credits {
				t.Fatalf("price %d: Cost(TokensAffordable(%d) = %d) = %d, more than the credits", price, credits, tokens, got)
			}
			if got := m.Cost(tokens + 1); got <= credits {
				t.Fatalf("price %d: Cost(TokensAffordable(%d) + 1 = %d) = %d, still affordable", price, credits, tokens+1, got)
			}
		}
	}
}

func testModels() []models.Model {
	return []models.Model{
		{
			ID: "b-big", DisplayName: "Big", Description: "big one", BaseURL: "https://api.runpod.ai/v2/x/openai/v1",
			APIKey: "secret", ServedModelName: "org/big", ContextTokens: 32768, MaxOutputTokens: 2048,
			MillicreditsPer1K: 10_000, SystemPrompt: "Be concise.", ConnectTimeout: 30 * time.Second,
			FirstTokenTimeout: 3 * time.Minute, Active: true, SortOrder: 0,
		},
		{
			ID: "a-small", DisplayName: "Small", BaseURL: "http://127.0.0.1:8000/v1", ServedModelName: "org/small",
			ContextTokens: 8192, MaxOutputTokens: 1024, MillicreditsPer1K: 2500, Demo: true, Active: true, SortOrder: 1,
		},
		{
			ID: "c-tie", DisplayName: "Tie", BaseURL: "http://127.0.0.1:8001/v1", ServedModelName: "org/tie",
			ContextTokens: 8192, MaxOutputTokens: 1024, MillicreditsPer1K: 0, Active: true, SortOrder: 1,
		},
	}
}

func wantModels(t *testing.T, got, want []models.Model) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d models %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("model %d =\n%+v\nwant\n%+v", i, got[i], want[i])
		}
	}
}

func updatedAt(t *testing.T, db *store.DB, id string) time.Time {
	t.Helper()
	var ms int64
	if err := db.QueryRowContext(context.Background(), `SELECT updated_at FROM models WHERE id = $1`, id).Scan(&ms); err != nil {
		t.Fatalf("updated_at of %q: %v", id, err)
	}
	return store.Time(ms)
}

func TestSync(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		t0 := time.UnixMilli(1_700_000_000_000).UTC()
		list := testModels()

		// Insert.
		if err := models.Sync(ctx, db, list, t0); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		active, err := models.ListActive(ctx, db)
		if err != nil {
			t.Fatalf("ListActive: %v", err)
		}
		// Ordered by sort order, then id.
		wantModels(t, active, []models.Model{list[0], list[1], list[2]})

		// An unchanged Sync changes nothing, not even updated_at.
		t1 := t0.Add(time.Minute)
		if err := models.Sync(ctx, db, list, t1); err != nil {
			t.Fatalf("Sync unchanged: %v", err)
		}
		if got, want := updatedAt(t, db, "b-big"), t0; !got.Equal(want) {
			t.Errorf("updated_at after unchanged sync = %v, want %v", got, want)
		}

		// Update fields.
		list[0].MillicreditsPer1K = 12_500
		list[0].SystemPrompt = "New prompt."
		list[0].FirstTokenTimeout = 90 * time.Second
		list[1].SortOrder = 5
		t2 := t1.Add(time.Minute)
		if err := models.Sync(ctx, db, list, t2); err != nil {
			t.Fatalf("Sync update: %v", err)
		}
		got, err := models.Get(ctx, db, "b-big")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got != list[0] {
			t.Errorf("after update Get =\n%+v\nwant\n%+v", got, list[0])
		}
		if got, want := updatedAt(t, db, "b-big"), t2; !got.Equal(want) {
			t.Errorf("updated_at after update = %v, want %v", got, want)
		}
		active, err = models.ListActive(ctx, db)
		if err != nil {
			t.Fatalf("ListActive: %v", err)
		}
		wantModels(t, active, []models.Model{list[0], list[2], list[1]})

		// Removal marks inactive; Get still finds it.
		removed := list[0]
		list = list[1:]
		if err := models.Sync(ctx, db, list, t2.Add(time.Minute)); err != nil {
			t.Fatalf("Sync removal: %v", err)
		}
		active, err = models.ListActive(ctx, db)
		if err != nil {
			t.Fatalf("ListActive: %v", err)
		}
		wantModels(t, active, []models.Model{list[1], list[0]})
		got, err = models.Get(ctx, db, removed.ID)
		if err != nil {
			t.Fatalf("Get inactive: %v", err)
		}
		removed.Active = false
		if got != removed {
			t.Errorf("inactive Get =\n%+v\nwant\n%+v", got, removed)
		}

		// Coming back reactivates it.
		removed.Active = true
		if err := models.Sync(ctx, db, append(list, removed), t2.Add(2*time.Minute)); err != nil {
			t.Fatalf("Sync re-add: %v", err)
		}
		got, err = models.Get(ctx, db, removed.ID)
		if err != nil {
			t.Fatalf("Get re-added: %v", err)
		}
		if got, want := got.Active, true; got != want {
			t.Errorf("re-added Active = %v, want %v", got, want)
		}

		// An empty list deactivates everything.
		if err := models.Sync(ctx, db, nil, t2.Add(3*time.Minute)); err != nil {
			t.Fatalf("Sync empty: %v", err)
		}
		active, err = models.ListActive(ctx, db)
		if err != nil {
			t.Fatalf("ListActive: %v", err)
		}
		if got, want := len(active), 0; got != want {
			t.Errorf("active models after empty sync = %d, want %d", got, want)
		}
	})
}

func TestGetNotFound(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		_, err := models.Get(ctx, db, "nope")
		if !errors.Is(err, models.ErrNotFound) {
			t.Fatalf("Get of a missing model: err = %v, want ErrNotFound", err)
		}
		if got, want := luna.ErrorCode(err), luna.CodeNotFound; got != want {
			t.Errorf("error code = %q, want %q", got, want)
		}
	})
}

func TestGetInTx(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		list := testModels()
		if err := models.Sync(ctx, db, list, time.Now()); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		defer tx.Rollback() // read-only
		got, err := models.Get(ctx, tx, "a-small")
		if err != nil {
			t.Fatalf("Get in tx: %v", err)
		}
		if got != list[1] {
			t.Errorf("Get in tx =\n%+v\nwant\n%+v", got, list[1])
		}
	})
}

func TestConcurrentSync(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		// Instances disagree (a rolling deploy): each keeps a different model
		// and deactivates the others, which must neither fail nor deadlock.
		base := testModels()
		var wg sync.WaitGroup
		errs := make(chan error, 5)
		for i := range 5 {
			list := base
			if i%2 == 1 {
				list = []models.Model{base[i%len(base)]}
			}
			wg.Go(func() {
				for range 5 {
					if err := models.Sync(ctx, db, list, time.Now()); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent Sync: %v", err)
		}

		// The last word wins cleanly: a final Sync leaves exactly its list.
		if err := models.Sync(ctx, db, base, time.Now()); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		active, err := models.ListActive(ctx, db)
		if err != nil {
			t.Fatalf("ListActive: %v", err)
		}
		wantModels(t, active, base)
	})
}
