package llm_test

import (
	"testing"

	"luna/internal/llm"
)

func TestEstimateTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text string
		want int
	}{
		{"", 0},
		{"a", 1},
		{"abc", 1},
		{"abcd", 2},
		{"Hello", 2},
		{"日本語", 3}, // 9 bytes
		{"🙂", 2},   // 4 bytes
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
		// Reference section 5: a lone "Hello" is 36 real tokens (1 + 25 + 6 + 4);
		// the estimate counts "Hello" as 2, so 37.
		{"lone hello", []llm.Message{{Role: "user", Content: "Hello"}}, 37},
		{"system and user", []llm.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}}, 1 + 25 + (5 + 3) + (5 + 1) + 4},
	}
	for _, tt := range tests {
		if got := llm.EstimatePromptTokens(tt.msgs); got != tt.want {
			t.Errorf("%s: EstimatePromptTokens = %d, want %d", tt.name, got, tt.want)
		}
	}
}
