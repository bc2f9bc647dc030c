// Package models is Luna's registry of text models: the operator describes
// each model in a TOML file, Parse and LoadFile read and validate it, and Sync
// makes the models table match it at start-up. Conversations reference rows
// of that table, so a model dropped from the file is marked inactive, never
// deleted.
//
// # The models file
//
// Each model is one [[model]] table. Unknown keys are an error, so a typo
// never silently falls back to a default.
//
//	[[model]]
//	id = "llama-3.3-70b-abliterated"        # required; [a-z0-9][a-z0-9._-]{0,63}; used by the API
//	name = "Llama 3.3 70B Abliterated"      # required; shown to users
//	description = "..."                     # optional
//	base_url = "https://api.runpod.ai/v2/YOUR_ENDPOINT_ID/openai/v1" # required; OpenAI-compatible, http or https
//	api_key_env = "RUNPOD_API_KEY"          # read the key from this environment variable (must be set)...
//	# api_key = "..."                       # ...or give it inline; not both; neither means no key
//	served_model_name = "huihui-ai/Llama-3.3-70B-Instruct-abliterated" # required; the upstream `model` field
//	context_tokens = 32768                  # required; > 0
//	max_output_tokens = 2048                # required; > 0 and < context_tokens
//	credits_per_1k_tokens = 10              # prompt + completion; at most 3 decimals; default 10
//	system_prompt = """..."""               # optional
//	connect_timeout = "30s"                 # optional Go duration; 0 or absent = client default
//	first_token_timeout = "3m"              # optional Go duration; 0 or absent = client default
//	demo = false                            # optional; marks the demo model, labelled as such in the app
//	active = true                           # optional; default true
//
// Models are listed in the order of the file. config/models.example.toml is a
// complete example.
//
// # Prices
//
// A price is kept as millicredits per 1,000 tokens, so fractional prices such
// as 2.5 credits per 1,000 tokens are exact integers (2500), and Cost rounds
// up to whole credits in integer arithmetic.
package models

import (
	"math"
	"math/bits"
	"time"

	"luna"
)

// ErrNotFound is returned by Get when no model has the id.
var ErrNotFound = &luna.Error{Code: luna.CodeNotFound, Message: "Model not found."}

// Model is a text model users can chat with.
type Model struct {
	// ID is the stable id used by the API, e.g. "llama-3.3-70b-abliterated".
	ID          string
	DisplayName string
	Description string
	// BaseURL is the OpenAI-compatible base URL, without a trailing slash,
	// e.g. http://gpu1:8000/v1 or https://api.runpod.ai/v2/<endpoint>/openai/v1.
	BaseURL string
	// APIKey is the upstream secret. It never leaves the server.
	APIKey string
	// ServedModelName is the `model` field sent upstream.
	ServedModelName string
	ContextTokens   int
	MaxOutputTokens int
	// MillicreditsPer1K is the price of 1,000 tokens (prompt + completion)
	// in thousandths of a credit.
	MillicreditsPer1K int64
	SystemPrompt      string
	ConnectTimeout    time.Duration // 0 = client default
	FirstTokenTimeout time.Duration // 0 = client default
	// Demo marks the demo model, which the app labels as such everywhere.
	Demo   bool
	Active bool
	// SortOrder is the model's position in the file; lists are ordered by it.
	SortOrder int
}

// millicreditsPerCreditPer1K converts tokens × millicredits-per-1,000-tokens
// into credits: 1,000 tokens per price unit × 1,000 millicredits per credit.
const millicreditsPerCreditPer1K = 1_000_000

// CreditsPer1KTokens returns the price as a float for display (e.g. 10, 2.5).
func (m Model) CreditsPer1KTokens() float64 {
	return float64(m.MillicreditsPer1K) / 1000
}

// Cost returns what tokens tokens cost in whole credits, rounded up:
// ceil(tokens × price / 1000). It uses 128-bit intermediate arithmetic, so it
// is exact for any token count and price; results beyond math.MaxInt64 are
// clamped to it. Zero or negative tokens, or a zero or negative price, cost 0.
func (m Model) Cost(tokens int64) int64 {
	if tokens <= 0 || m.MillicreditsPer1K <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(tokens), uint64(m.MillicreditsPer1K))
	if hi >= millicreditsPerCreditPer1K {
		// The quotient would not fit in 64 bits.
		return math.MaxInt64
	}
	q, r := bits.Div64(hi, lo, millicreditsPerCreditPer1K)
	if r > 0 {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// TokensAffordable returns the largest token count whose Cost is <= credits:
// floor(credits × 1000 / price). A free model affords math.MaxInt64 tokens;
// zero or negative credits afford none of a priced model.
func (m Model) TokensAffordable(credits int64) int64 {
	if m.MillicreditsPer1K <= 0 {
		return math.MaxInt64
	}
	if credits <= 0 {
		return 0
	}
	// Cost(t) <= credits  ⇔  t × price <= credits × 1e6.
	hi, lo := bits.Mul64(uint64(credits), millicreditsPerCreditPer1K)
	price := uint64(m.MillicreditsPer1K)
	if hi >= price {
		// The quotient would not fit in 64 bits.
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, price)
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}
