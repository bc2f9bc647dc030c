package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

const (
	// tokenizeTimeout bounds one tokenizer request: counting must not hold
	// up a send for long; the bound is used instead.
	tokenizeTimeout = 3 * time.Second
	// Servers that have no tokenizer (404, 405, 501, an answer without a
	// count) are not asked again for a while; servers that failed otherwise
	// (timeout, 5xx, refused) for a shorter while.
	unsupportedRetry = 10 * time.Minute
	failedRetry      = time.Minute
)

// How a prompt count was made.
const (
	CountVLLM     = "vllm"      // vLLM's POST /tokenize with the chat template: exact
	CountLlamaCpp = "llama.cpp" // llama.cpp's POST /tokenize of the contents, plus the template bound
	CountEstimate = "estimate"  // no tokenizer answered: EstimatePromptTokens
)

// PromptCount is the number of tokens a chat prompt takes on its model
// server.
type PromptCount struct {
	Tokens int
	Source string // CountVLLM, CountLlamaCpp or CountEstimate
}

// tokenizerKind is what a server's POST /tokenize was found to speak.
type tokenizerKind int

const (
	tokenizerUnknown  tokenizerKind = iota
	tokenizerVLLM                   // chat form: {"model","messages","add_generation_prompt"} → {"count"}
	tokenizerLlamaCpp               // {"content"} → {"tokens"}
)

// tokenizerState is what the Client remembers about one server's tokenizer.
type tokenizerState struct {
	kind      tokenizerKind
	skipUntil time.Time // do not ask before this (no tokenizer, or it failed)
}

// tokenizers remembers, per server root URL, which tokenizer form it speaks
// and which servers not to ask.
type tokenizers struct {
	mu     sync.Mutex
	states map[string]tokenizerState
}

func (t *tokenizers) get(root string) tokenizerState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.states[root]
}

func (t *tokenizers) set(root string, s tokenizerState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.states == nil {
		t.states = map[string]tokenizerState{}
	}
	t.states[root] = s
}

// tokenizeRoot is the server root of an OpenAI-compatible base URL, where
// vLLM and llama.cpp serve /tokenize: the base URL without its final "/v1".
func tokenizeRoot(baseURL string) string {
	root := strings.TrimRight(baseURL, "/")
	return strings.TrimSuffix(root, "/v1")
}

// errNoTokenizer marks an answer saying the server has no usable tokenizer.
var errNoTokenizer = errors.New("no tokenizer")

// CountPromptTokens returns the number of tokens req.Messages take as a
// prompt on req's server (the chat template included), for fitting the
// conversation into the context and for the credit hold. It asks the
// server's tokenizer, with a short timeout:
//   - vLLM: POST {root}/tokenize {"model","messages","add_generation_prompt":true}
//     renders the chat template exactly as a chat request would; its
//     "count" is the prompt_tokens the reply will report;
//   - llama.cpp (which answers that form with no tokens): POST {root}/tokenize
//     {"content"} with the contents, plus the template bound per message.
//
// A server that answers neither (Runpod serverless, a proxy), or does not
// answer in time, gets EstimatePromptTokens, an upper bound for any text,
// and is not asked again for a while. It never fails.
func (c *Client) CountPromptTokens(ctx context.Context, req Request) PromptCount {
	estimate := PromptCount{Tokens: EstimatePromptTokens(req.Messages), Source: CountEstimate}
	if len(req.Messages) == 0 {
		return estimate
	}
	root := tokenizeRoot(req.BaseURL)
	state := c.tokenizers.get(root)
	if time.Now().Before(state.skipUntil) {
		return estimate
	}
	ctx, cancel := context.WithTimeout(ctx, tokenizeTimeout)
	defer cancel()
	ctx = withConnectTimeout(ctx, min(req.withDefaults().ConnectTimeout, tokenizeTimeout))

	count, kind, err := c.tokenize(ctx, root, req, state.kind)
	if err != nil {
		retry := failedRetry
		if errors.Is(err, errNoTokenizer) {
			retry = unsupportedRetry
		}
		c.tokenizers.set(root, tokenizerState{kind: state.kind, skipUntil: time.Now().Add(retry)})
		c.logger.InfoContext(ctx, "model server tokenizer not used; prompt tokens are bounded by their bytes",
			"base_url", req.BaseURL, "retry_in", retry, "err", err)
		return estimate
	}
	if kind != state.kind {
		c.tokenizers.set(root, tokenizerState{kind: kind})
	}
	return count
}

// tokenize asks the server's tokenizer, trying vLLM's chat form first unless
// the server is known to speak llama.cpp's.
func (c *Client) tokenize(ctx context.Context, root string, req Request, kind tokenizerKind) (PromptCount, tokenizerKind, error) {
	if kind != tokenizerLlamaCpp {
		msgs := make([]map[string]string, len(req.Messages))
		for i, m := range req.Messages {
			msgs[i] = map[string]string{"role": m.Role, "content": m.Content}
		}
		var ans struct {
			Count  *int              `json:"count"`
			Tokens []json.RawMessage `json:"tokens"`
		}
		body := map[string]any{"model": req.Model, "messages": msgs, "add_generation_prompt": !req.ContinueFinalMessage}
		if req.ContinueFinalMessage {
			body["continue_final_message"] = true
		}
		if err := c.postTokenize(ctx, root, req.APIKey, body, &ans); err != nil {
			return PromptCount{}, kind, err
		}
		switch {
		case ans.Count != nil && *ans.Count > 0:
			return PromptCount{Tokens: *ans.Count, Source: CountVLLM}, tokenizerVLLM, nil
		case ans.Count == nil && ans.Tokens != nil && len(ans.Tokens) == 0:
			// llama.cpp: it reads only "content" and answered {"tokens":[]}.
		default:
			return PromptCount{}, kind, fmt.Errorf("%w: POST /tokenize answered without a count", errNoTokenizer)
		}
	}
	// llama.cpp tokenizes text, not chats: count the contents (one request,
	// newline-separated) and add the template bound of each message.
	contents := make([]string, len(req.Messages))
	for i, m := range req.Messages {
		contents[i] = m.Content
	}
	var ans struct {
		Tokens []json.RawMessage `json:"tokens"`
	}
	body := map[string]any{"content": strings.Join(contents, "\n")}
	if err := c.postTokenize(ctx, root, req.APIKey, body, &ans); err != nil {
		return PromptCount{}, tokenizerLlamaCpp, err
	}
	if ans.Tokens == nil {
		return PromptCount{}, tokenizerLlamaCpp, fmt.Errorf("%w: POST /tokenize {content} answered without tokens", errNoTokenizer)
	}
	n := len(ans.Tokens) + promptStartTokens + replyHeaderTokens + len(req.Messages)*perMessageTokens
	return PromptCount{Tokens: n, Source: CountLlamaCpp}, tokenizerLlamaCpp, nil
}

// postTokenize POSTs body as JSON to {root}/tokenize and decodes a 200
// answer into out.
func (c *Client) postTokenize(ctx context.Context, root, apiKey string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode tokenize request: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, root+"/tokenize", bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%w: %w", errNoTokenizer, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	if apiKey != "" {
		hreq.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := c.httpClient.Do(hreq)
	if err != nil {
		return fmt.Errorf("POST /tokenize: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenizeAnswer))
	if err != nil {
		return fmt.Errorf("POST /tokenize: read answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented:
		return fmt.Errorf("POST /tokenize: HTTP %d: %s", resp.StatusCode, rawSnippet(data))
	default: // 404 (no such route, or model), 405, 501, 400, 401, …
		return fmt.Errorf("%w: POST /tokenize: HTTP %d: %s", errNoTokenizer, resp.StatusCode, rawSnippet(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%w: POST /tokenize: decode answer: %w", errNoTokenizer, err)
	}
	return nil
}

// maxTokenizeAnswer bounds a tokenize answer: it lists every token id of a
// prompt that may be a whole context long.
const maxTokenizeAnswer = 64 << 20
