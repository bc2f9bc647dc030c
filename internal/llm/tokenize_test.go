package llm_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"luna/internal/llm"
	"luna/internal/llm/llmtest"
)

func TestCountPromptTokens(t *testing.T) {
	t.Parallel()
	msgs := []llm.Message{
		{Role: "system", Content: "Be brief."},
		{Role: "user", Content: "Sum " + strings.Repeat("1234567890", 40) + " 🙂🙂 日本語 please."},
	}
	exact := llmtest.PromptTokens(msgs)
	bound := llm.EstimatePromptTokens(msgs)
	tests := []struct {
		name      string
		tokenizer llmtest.Tokenizer
		// want is the count; 0 means any count in [exact, bound].
		want       int
		wantSource string
		// tokenize requests after the first count, and after a second one.
		wantFirst, wantSecond int
	}{
		{"vLLM chat form is exact", llmtest.TokenizerVLLM, exact, llm.CountVLLM, 1, 2},
		{"llama.cpp content form", llmtest.TokenizerLlamaCpp, 0, llm.CountLlamaCpp, 2, 3},
		{"no tokenizer: the bound, not asked again", llmtest.TokenizerNone, bound, llm.CountEstimate, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := llmtest.New(t)
			fake.SetTokenizer(tt.tokenizer)
			client := newClient(t)
			req := request(fake.BaseURL())
			req.Messages = msgs
			for i, wantRequests := range []int{tt.wantFirst, tt.wantSecond} {
				got := client.CountPromptTokens(t.Context(), req)
				if got.Source != tt.wantSource {
					t.Errorf("count %d: source %q, want %q", i+1, got.Source, tt.wantSource)
				}
				if tt.want != 0 && got.Tokens != tt.want {
					t.Errorf("count %d: %d tokens, want %d", i+1, got.Tokens, tt.want)
				}
				if got.Tokens < exact || got.Tokens > bound {
					t.Errorf("count %d: %d tokens, want within [%d real, %d bound]", i+1, got.Tokens, exact, bound)
				}
				if n := fake.TokenizeRequests(); n != wantRequests {
					t.Errorf("after count %d: %d tokenize requests, want %d", i+1, n, wantRequests)
				}
			}
		})
	}
}

// TestCountPromptTokensUnreachable: a server that does not answer gets the
// bound, within the tokenizer timeout.
func TestCountPromptTokensUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	req := request("http://" + addr + "/v1")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got := newClient(t).CountPromptTokens(ctx, req)
	if want := llm.EstimatePromptTokens(req.Messages); got.Tokens != want || got.Source != llm.CountEstimate {
		t.Fatalf("count = %+v, want the bound %d", got, want)
	}
}
