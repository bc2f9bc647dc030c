package llm

// Token estimates for budgeting before a request, and for charging when a
// stream carried no usage chunk. They deliberately err high (reference
// section 5): English runs at 4–4.7 bytes per token on Llama 3 and Mistral
// tokenizers, code and European text nearer 3–4, so 3 bytes per token covers
// almost everything.
const (
	bytesPerToken = 3
	// Llama-3 chat template: BOS, then the always-present system header block
	// with "Cutting Knowledge Date…" (~25 tokens with no system text) …
	promptStartTokens = 1 + 25
	// … 5 tokens around each message (header ids, role, "\n\n", eot) …
	perMessageTokens = 5
	// … and the generation header for the assistant's reply.
	replyHeaderTokens = 4
)

// EstimateTokens is a conservative (high) estimate of the tokens in text:
// ceil(bytes / 3).
func EstimateTokens(text string) int {
	return (len(text) + bytesPerToken - 1) / bytesPerToken
}

// EstimatePromptTokens is a conservative estimate of the prompt tokens of a
// chat request: 1 + 25 + Σ(5 + EstimateTokens(content)) + 4, the Llama-3
// template overhead, which also covers Mistral's smaller one.
func EstimatePromptTokens(msgs []Message) int {
	n := promptStartTokens + replyHeaderTokens
	for _, m := range msgs {
		n += perMessageTokens + EstimateTokens(m.Content)
	}
	return n
}
