package chat

import (
	"context"

	"luna/internal/llm"
	"luna/internal/models"
)

const (
	// maxBytesPerToken bounds the history offered to the tokenizer: older
	// messages beyond the budget times this many bytes could not fit even
	// as English (about 4.5 bytes per token).
	maxBytesPerToken = 8
	// maxCountRounds bounds the tokenizer requests fitting one prompt
	// takes; after them the byte bound decides.
	maxCountRounds = 4
)

// promptCounter returns how prompts for model are counted: by the model
// server's tokenizer when the Streamer can ask it, else by the byte bound.
// continuing counts a prompt whose last message the model continues.
func (s *Service) promptCounter(ctx context.Context, model models.Model, continuing bool) func([]llm.Message) llm.PromptCount {
	pc, ok := s.streamer.(PromptCounter)
	if !ok {
		return estimatePrompt
	}
	return func(prompt []llm.Message) llm.PromptCount {
		return pc.CountPromptTokens(ctx, llm.Request{
			BaseURL: model.BaseURL, APIKey: model.APIKey, Model: model.ServedModelName,
			Messages: prompt, ConnectTimeout: model.ConnectTimeout, ContinueFinalMessage: continuing,
		})
	}
}

// estimatePrompt counts a prompt by the byte bound, which holds for any text.
func estimatePrompt(prompt []llm.Message) llm.PromptCount {
	return llm.PromptCount{Tokens: llm.EstimatePromptTokens(prompt), Source: llm.CountEstimate}
}

// buildPrompt returns the system prompt plus the newest messages that fit in
// the model's context minus its output budget, and their token count. count
// measures a whole prompt (the model server's tokenizer, or the byte bound);
// the same count then decides the context check and the credit hold.
// dropOldest removes that many more of the oldest messages (after a "context
// too long" answer). The last message (the new question) is always kept,
// even when it alone is over the budget: the caller refuses that.
func buildPrompt(model models.Model, msgs []Message, dropOldest int, count func([]llm.Message) llm.PromptCount) ([]llm.Message, llm.PromptCount) {
	if len(msgs) == 0 {
		return nil, count(nil)
	}
	budget := model.ContextTokens - model.MaxOutputTokens
	var system []llm.Message
	if model.SystemPrompt != "" {
		system = append(system, llm.Message{Role: "system", Content: model.SystemPrompt})
	}
	assemble := func(start int) []llm.Message {
		out := append([]llm.Message{}, system...)
		for _, m := range msgs[start:] {
			out = append(out, llm.Message{Role: m.Role, Content: m.Content})
		}
		return out
	}
	last := len(msgs) - 1

	// Offer the tokenizer only the newest messages that could fit at all.
	start, size := last, len(msgs[last].Content)
	for i := last - 1; i >= 0; i-- {
		size += len(msgs[i].Content)
		if size > budget*maxBytesPerToken {
			break
		}
		start = i
	}
	prompt := assemble(start)
	c := count(prompt)
	for round := 1; c.Tokens > budget && start < last; round++ {
		if round == maxCountRounds {
			// Still over after the rounds: fit by the bound, which never
			// undercounts.
			for start < last && llm.EstimatePromptTokens(assemble(start)) > budget {
				start++
			}
			prompt = assemble(start)
			c = estimatePrompt(prompt)
			break
		}
		// Drop the oldest messages, giving each a share of the measured
		// count in proportion to its bound, until the rest is within the
		// budget; at least one goes. Then measure again.
		ratio := float64(c.Tokens) / float64(llm.EstimatePromptTokens(prompt))
		over := float64(c.Tokens - budget)
		for dropped := false; start < last && (over > 0 || !dropped); dropped = true {
			over -= ratio * float64(llm.EstimateMessageTokens(llm.Message{Content: msgs[start].Content}))
			start++
		}
		prompt = assemble(start)
		c = count(prompt)
	}
	if dropOldest > 0 && start < last {
		start = min(start+dropOldest, last)
		prompt = assemble(start)
		c = count(prompt)
	}
	return prompt, c
}
