package chat

import (
	"strings"
	"testing"

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
	model := models.Model{ContextTokens: 200, MaxOutputTokens: 50, SystemPrompt: "Be brief."}
	var msgs []Message
	for i := range 10 {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		msgs = append(msgs, Message{Role: role, Content: strings.Repeat("x", 60) + string(rune('a'+i))})
	}
	prompt, tokens := buildPrompt(model, msgs, 0)
	if prompt[0].Role != "system" || prompt[0].Content != "Be brief." {
		t.Fatalf("first prompt message = %+v, want the system prompt", prompt[0])
	}
	if last := prompt[len(prompt)-1]; last.Content != msgs[9].Content {
		t.Fatalf("last prompt message = %q, want the newest", last.Content)
	}
	if tokens > model.ContextTokens-model.MaxOutputTokens {
		t.Fatalf("prompt of %d tokens exceeds the budget of %d", tokens, model.ContextTokens-model.MaxOutputTokens)
	}
	if len(prompt) >= len(msgs)+1 {
		t.Fatalf("all %d messages kept in a small context", len(msgs))
	}
	// Dropping more keeps fewer, but always the question.
	fewer, _ := buildPrompt(model, msgs, 2)
	if len(fewer) != len(prompt)-2 || fewer[len(fewer)-1].Content != msgs[9].Content {
		t.Fatalf("dropOldest=2: %d messages (from %d), last %q", len(fewer), len(prompt), fewer[len(fewer)-1].Content)
	}
	all, _ := buildPrompt(model, msgs, 100)
	if len(all) != 2 || all[1].Content != msgs[9].Content {
		t.Fatalf("dropping everything left %d messages", len(all))
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
