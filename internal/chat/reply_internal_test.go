package chat

import (
	"errors"
	"testing"

	"luna/internal/credits"
	"luna/internal/models"
)

func TestContinuable(t *testing.T) {
	tests := []struct {
		m    Message
		want bool
	}{
		{Message{Role: "assistant", Content: "x", Status: StatusCancelled}, true},
		{Message{Role: "assistant", Content: "x", Status: StatusInterrupted}, true},
		{Message{Role: "assistant", Content: "x", Status: StatusError}, true},
		{Message{Role: "assistant", Content: "x", Status: StatusComplete, FinishReason: "length"}, true},
		{Message{Role: "assistant", Content: "x", Status: StatusComplete, FinishReason: "stop"}, false},
		{Message{Role: "assistant", Content: "", Status: StatusCancelled}, false}, // nothing to continue
		{Message{Role: "assistant", Content: "x", Status: StatusStreaming}, false},
		{Message{Role: "assistant", Content: "x", Status: StatusPending}, false},
		{Message{Role: "user", Content: "x", Status: StatusComplete, FinishReason: "length"}, false},
	}
	for _, tt := range tests {
		if got := Continuable(tt.m); got != tt.want {
			t.Errorf("Continuable(%s %s %q) = %v, want %v", tt.m.Role, tt.m.Status, tt.m.FinishReason, got, tt.want)
		}
	}
}

// budget is the one cap-to-balance rule of sending and of the estimate.
func TestBudget(t *testing.T) {
	s := &Service{cfg: Config{MinReplyTokens: 32}}
	paid := models.Model{MillicreditsPer1K: 1_000_000} // 1 credit per token
	free := models.Model{}
	plan := func(m models.Model, prompt, maxTokens int) replyPlan {
		p := replyPlan{model: m, maxTokens: maxTokens}
		p.count.Tokens = prompt
		return p
	}
	tests := []struct {
		name       string
		p          replyPlan
		available  int64
		wantTokens int
		wantHold   int64
		wantNeed   int64 // > 0: refused with this need
	}{
		{"enough for all", plan(paid, 100, 256), 1000, 256, 356, 0},
		{"capped to the balance", plan(paid, 100, 256), 200, 100, 200, 0},
		{"just a short reply", plan(paid, 100, 256), 132, 32, 132, 0},
		{"not even a short reply", plan(paid, 100, 256), 131, 0, 0, 132},
		{"nothing available", plan(paid, 100, 256), 0, 0, 0, 132},
		{"free model", plan(free, 100, 256), 0, 256, 0, 0},
	}
	for _, tt := range tests {
		tokens, hold, err := s.budget(tt.p, tt.available)
		var short *credits.InsufficientError
		switch {
		case tt.wantNeed > 0:
			if !errors.As(err, &short) || short.Needed != tt.wantNeed || short.Available != tt.available || !errors.Is(err, credits.ErrInsufficientCredits) {
				t.Errorf("%s: err %v, want a need of %d with %d available", tt.name, err, tt.wantNeed, tt.available)
			}
		case err != nil || tokens != tt.wantTokens || hold != tt.wantHold:
			t.Errorf("%s: %d tokens, hold %d, err %v; want %d, %d", tt.name, tokens, hold, err, tt.wantTokens, tt.wantHold)
		}
	}
}
