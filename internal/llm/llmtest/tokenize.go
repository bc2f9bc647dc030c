package llmtest

import (
	"encoding/json"
	"io"
	"net/http"
	"unicode"
	"unicode/utf8"

	"luna/internal/llm"
	"luna/internal/llm/vllmwire"
)

// Tokenizer says what the fake's POST /tokenize speaks.
type Tokenizer int

// Tokenizers.
const (
	// TokenizerVLLM (the default) answers vLLM's forms (reference "vLLM
	// extras", section 3): {"model","messages","add_generation_prompt"} and
	// {"model","prompt"} → {"count","max_model_len","tokens","token_strs"}.
	TokenizerVLLM Tokenizer = iota
	// TokenizerLlamaCpp answers like llama-server: {"content"} →
	// {"tokens":[…]}; a body without "content" gets {"tokens":[]}.
	TokenizerLlamaCpp
	// TokenizerNone has no /tokenize route (Runpod serverless, a proxy):
	// 404 {"detail":"Not Found"}, FastAPI's answer for an unknown path.
	TokenizerNone
)

// CountTokens is the fake's tokenizer, built to break byte-based estimates
// the way real tokenizers do (reference "Token facts"): a run of ASCII
// letters is one token per 4 letters, while every digit, every other ASCII
// character and every byte of a non-ASCII character (emoji, CJK: byte
// fallback) is a token of its own. It never exceeds the text's byte length.
func CountTokens(text string) int {
	n, letters := 0, 0
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		i += size
		if r < utf8.RuneSelf && unicode.IsLetter(r) {
			letters++
			continue
		}
		n += (letters+3)/4 + size
		letters = 0
	}
	return n + (letters+3)/4
}

// PromptTokens is the prompt length of a chat on the fake, with Llama 3's
// chat template (reference section 5): BOS, the 25-token system header
// block, 5 tokens around each message and 4 for the reply header. It is the
// fake's usage.prompt_tokens, its /tokenize count and what its context check
// measures.
func PromptTokens(msgs []llm.Message) int {
	n := 1 + 25 + 4
	for _, m := range msgs {
		n += 5 + CountTokens(m.Content)
	}
	return n
}

// SetTokenizer sets what POST /tokenize speaks (default TokenizerVLLM).
func (f *Fake) SetTokenizer(t Tokenizer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenizer = t
}

// SetMaxModelLen sets the context length (default MaxModelLen): a chat
// request whose prompt (PromptTokens) plus max_tokens exceeds it gets vLLM's
// 400 (or, with Script.LlamaCppErrors, llama-server's error: line), and
// /tokenize reports it as max_model_len.
func (f *Fake) SetMaxModelLen(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maxModelLen = n
}

// TokenizeRequests is how many POST /tokenize requests the fake received.
func (f *Fake) TokenizeRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokenizeRequests
}

func (f *Fake) tokenize(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.tokenizeRequests++
	kind, maxLen := f.tokenizer, f.maxModelLen
	f.mu.Unlock()
	if kind == TokenizerNone {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"detail":"Not Found"}`)
		return
	}
	var in struct {
		Content  *string `json:"content"`
		Prompt   *string `json:"prompt"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<20))
	if err == nil {
		err = json.Unmarshal(body, &in)
	}
	if err != nil {
		vllmwire.WriteError(w, http.StatusBadRequest, vllmwire.ShapeNested, vllmwire.APIError{Message: "invalid request body", Type: "Bad Request", Code: 400})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if kind == TokenizerLlamaCpp {
		n := 0
		if in.Content != nil {
			n = CountTokens(*in.Content)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"tokens": tokenIDs(n)})
		return
	}
	var n int
	switch {
	case in.Messages != nil:
		msgs := make([]llm.Message, len(in.Messages))
		for i, m := range in.Messages {
			msgs[i] = llm.Message{Role: m.Role, Content: contentText(m.Content)}
		}
		n = PromptTokens(msgs)
	case in.Prompt != nil:
		n = 1 + CountTokens(*in.Prompt) // BOS
	default:
		vllmwire.WriteError(w, http.StatusBadRequest, vllmwire.ShapeNested, vllmwire.APIError{
			Message: "Field required: prompt or messages", Type: "Bad Request", Param: "prompt", Code: 400})
		return
	}
	_ = json.NewEncoder(w).Encode(struct {
		Count       int   `json:"count"`
		MaxModelLen int   `json:"max_model_len"`
		Tokens      []int `json:"tokens"`
		TokenStrs   []any `json:"token_strs"`
	}{n, maxLen, tokenIDs(n), nil})
}

// tokenIDs returns n made-up token ids.
func tokenIDs(n int) []int {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 1000 + i%30000
	}
	return ids
}
