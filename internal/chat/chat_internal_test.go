package chat

import (
	"fmt"
	"strings"
	"testing"

	"luna/internal/llm"
	"luna/internal/llm/llmtest"
	"luna/internal/models"
)

func TestResumeOffset(t *testing.T) {
	text := "héllo 🙂" // é is 2 bytes, 🙂 is 4
	tests := []struct {
		lastEventID string
		running     bool
		want        int
		ok          bool
	}{
		{"", false, 0, false},
		{"0", false, 0, true},
		{"1", false, 1, true},
		{"2", false, 0, false}, // inside é
		{"3", false, 3, true},
		{"8", false, 0, false}, // inside 🙂
		{"11", false, 11, true},
		{"12", false, 0, false}, // beyond a finished reply
		{"12", true, 12, true},  // beyond what is persisted of a running one
		{"-1", false, 0, false},
		{"x", true, 0, false},
	}
	for _, tt := range tests {
		got, ok := resumeOffset(tt.lastEventID, text, tt.running)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("resumeOffset(%q, running=%v) = %d, %v; want %d, %v", tt.lastEventID, tt.running, got, ok, tt.want, tt.ok)
		}
	}
}

func TestBuildPromptKeepsNewestThatFit(t *testing.T) {
	model := models.Model{ContextTokens: 400, MaxOutputTokens: 50, SystemPrompt: "Be brief."}
	var msgs []Message
	for i := range 10 {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		msgs = append(msgs, Message{Role: role, Content: strings.Repeat("x", 60) + string(rune('a'+i))})
	}
	prompt, tokens := buildPrompt(model, msgs, 0, estimatePrompt)
	if prompt[0].Role != "system" || prompt[0].Content != "Be brief." {
		t.Fatalf("first prompt message = %+v, want the system prompt", prompt[0])
	}
	if last := prompt[len(prompt)-1]; last.Content != msgs[9].Content {
		t.Fatalf("last prompt message = %q, want the newest", last.Content)
	}
	if tokens.Tokens > model.ContextTokens-model.MaxOutputTokens {
		t.Fatalf("prompt of %d tokens exceeds the budget of %d", tokens.Tokens, model.ContextTokens-model.MaxOutputTokens)
	}
	if len(prompt) >= len(msgs)+1 {
		t.Fatalf("all %d messages kept in a small context", len(msgs))
	}
	// Dropping more keeps fewer, but always the question.
	fewer, _ := buildPrompt(model, msgs, 2, estimatePrompt)
	if len(fewer) != len(prompt)-2 || fewer[len(fewer)-1].Content != msgs[9].Content {
		t.Fatalf("dropOldest=2: %d messages (from %d), last %q", len(fewer), len(prompt), fewer[len(fewer)-1].Content)
	}
	all, _ := buildPrompt(model, msgs, 100, estimatePrompt)
	if len(all) != 2 || all[1].Content != msgs[9].Content {
		t.Fatalf("dropping everything left %d messages", len(all))
	}
}

// TestBuildPromptWithTokenizer fits prompts with a tokenizer's count (the
// llmtest one: English ~4 bytes per token, digits, emoji and CJK 1 token
// per byte): the prompt is within the budget, and the next older message
// would not have fitted.
func TestBuildPromptWithTokenizer(t *testing.T) {
	t.Parallel()
	model := models.Model{ContextTokens: 2048, MaxOutputTokens: 64, SystemPrompt: "Be brief."}
	budget := model.ContextTokens - model.MaxOutputTokens
	texts := map[string]string{
		"english": strings.Repeat("word ", 120),
		"digits":  strings.Repeat("0123456789", 30),
		"emoji":   strings.Repeat("🙂", 70),
		"cjk":     strings.Repeat("日本語", 30),
		"mixed":   strings.Repeat("a1🙂 ", 40),
	}
	for name, text := range texts {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var msgs []Message
			for i := range 40 {
				msgs = append(msgs, Message{Role: []string{"user", "assistant"}[i%2], Content: fmt.Sprintf("%d %s", i, text)})
			}
			calls := 0
			count := func(p []llm.Message) llm.PromptCount {
				calls++
				return llm.PromptCount{Tokens: llmtest.PromptTokens(p), Source: llm.CountVLLM}
			}
			prompt, c := buildPrompt(model, msgs, 0, count)
			if got := llmtest.PromptTokens(prompt); c.Tokens != got {
				t.Fatalf("count %d, but the prompt has %d tokens", c.Tokens, got)
			}
			if c.Tokens > budget {
				t.Fatalf("prompt of %d tokens exceeds the budget of %d", c.Tokens, budget)
			}
			kept := len(prompt) - 1
			if kept < len(msgs) {
				older := append([]llm.Message{prompt[0], {Role: "user", Content: msgs[len(msgs)-kept-1].Content}}, prompt[1:]...)
				if n := llmtest.PromptTokens(older); n <= budget && c.Source != llm.CountEstimate {
					t.Errorf("kept %d messages (%d tokens), but %d would fit (%d tokens)", kept, c.Tokens, kept+1, n)
				}
			}
			if last := prompt[len(prompt)-1].Content; last != msgs[len(msgs)-1].Content {
				t.Fatalf("the question was dropped")
			}
			if calls > maxCountRounds {
				t.Errorf("%d tokenizer requests, want at most %d", calls, maxCountRounds)
			}
		})
	}
}

func TestTitles(t *testing.T) {
	tests := []struct{ in, want string }{
		{"  \"Weather in Lisbon\"  ", "Weather in Lisbon"},
		{"Title: **Rust lifetimes**\nmore text", "Rust lifetimes"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := cleanGeneratedTitle(tt.in); got != tt.want {
			t.Errorf("cleanGeneratedTitle(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := fallbackTitle("one two three four five six seven"); got != "one two three four five six" {
		t.Errorf("fallbackTitle = %q", got)
	}
	if got := fallbackTitle("   "); got != "New conversation" {
		t.Errorf("fallbackTitle(blank) = %q", got)
	}
}
