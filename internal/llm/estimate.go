package llm

// Token bounds for when the model server's tokenizer cannot be asked (see
// Client.CountPromptTokens). They must never undercount: the context check
// and the credit hold rely on them. Bytes per token vary from ~4.5 for
// English down to 1 for digits, emoji and CJK (reference section 5 and
// "Token facts that break byte-based estimates"), so the only bound that
// holds for any text is one token per UTF-8 byte: a byte-level BPE token
// (Llama 3, Mistral tekken, GPT-style) is at least one byte, and a
// SentencePiece vocabulary with byte fallback adds at most one token (its
// "▁" dummy prefix) per text.
const (
	// Llama-3 chat template: BOS, then the always-present system header block
	// with "Cutting Knowledge Date…" (~25 tokens with no system text) …
	promptStartTokens = 1 + 25
	// … tokens around each message: 5 in Llama 3 and ChatML (header ids,
	// role, "\n\n", end of turn), plus SentencePiece's dummy prefix, plus
	// slack for templates that spend a little more …
	perMessageTokens = 8
	// … and the generation header for the assistant's reply.
	replyHeaderTokens = 4
)

// EstimateTokens is an upper bound of the tokens of text: its length in
// bytes.
func EstimateTokens(text string) int {
	return len(text)
}

// EstimateMessageTokens is an upper bound of the tokens one message adds to
// a chat prompt: its content's bytes plus the template's tokens around it.
func EstimateMessageTokens(m Message) int {
	return perMessageTokens + EstimateTokens(m.Content)
}

// EstimatePromptTokens is an upper bound of the prompt tokens of a chat
// request: 1 + 25 + Σ(8 + bytes(content)) + 4. It is 3–5 times the real
// count for English, and right for digits, emoji and CJK.
func EstimatePromptTokens(msgs []Message) int {
	n := promptStartTokens + replyHeaderTokens
	for _, m := range msgs {
		n += EstimateMessageTokens(m)
	}
	return n
}
