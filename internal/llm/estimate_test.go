package llm_test

import (
	"strings"
	"testing"

	"luna/internal/llm"
	"luna/internal/llm/llmtest"
)

func TestEstimateTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text string
		want int
	}{
		{"", 0},
		{"a", 1},
		{"Hello", 5},
		{"日本語", 9},
		{"🙂", 4},
	}
	for _, tt := range tests {
		if got := llm.EstimateTokens(tt.text); got != tt.want {
			t.Errorf("EstimateTokens(%q) = %d, want %d", tt.text, got, tt.want)
		}
	}
}

func TestEstimatePromptTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msgs []llm.Message
		want int
	}{
		{"none", nil, 1 + 25 + 4},
		// Reference section 5: a lone "Hello" is 36 real tokens (1 + 25 + 6 + 4).
		{"lone hello", []llm.Message{{Role: "user", Content: "Hello"}}, 1 + 25 + 8 + 5 + 4},
		{"system and user", []llm.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}}, 1 + 25 + (8 + 9) + (8 + 2) + 4},
	}
	for _, tt := range tests {
		if got := llm.EstimatePromptTokens(tt.msgs); got != tt.want {
			t.Errorf("%s: EstimatePromptTokens = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestEstimateIsABound: the estimate is never below a tokenizer's count,
// for the texts that break byte-per-token guesses (reference "Token facts":
// 5,005 bytes of digits are 5,006 SentencePiece tokens, 4,800 bytes of emoji
// 4,801), measured with llmtest's tokenizer, which counts them the same way.
func TestEstimateIsABound(t *testing.T) {
	t.Parallel()
	texts := map[string]string{
		"digits":  strings.Repeat("0123456789", 500),
		"emoji":   strings.Repeat("🙂", 1200),
		"CJK":     strings.Repeat("日本語の文章", 300),
		"English": strings.Repeat("The quick brown fox jumps over the lazy dog. ", 100),
		"mixed":   strings.Repeat("a1 🙂日,", 400),
		"invalid": "\xff\xfe\xfd",
	}
	for name, text := range texts {
		msgs := []llm.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: text}}
		if got, real := llm.EstimatePromptTokens(msgs), llmtest.PromptTokens(msgs); got < real {
			t.Errorf("%s: estimate %d < %d real tokens", name, got, real)
		}
	}
	if got, want := llmtest.CountTokens(strings.Repeat("7", 5005)), 5005; got != want {
		t.Errorf("llmtest counts %d tokens for 5,005 digits, want %d", got, want)
	}
}
