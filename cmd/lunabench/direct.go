package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// directClient streams chat completions from an OpenAI-compatible base
// URL: the upstream itself (the baseline, "direct"), the relay, or a peer
// proxy in front of the upstream.
type directClient struct {
	http    *http.Client
	baseURL string // OpenAI-compatible base URL
	tokens  int    // expected tokens per reply
	model   string // the request's model; default the upstream's
	headers map[string]string
	// optionalUsage accepts a stream without the usage chunk (a peer proxy
	// may drop it); the text must still be exact.
	optionalUsage bool
}

// chunk is the part of a streamed chat-completion chunk the client reads.
type chunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

// stream sends one streaming chat completion and records its tokens.
func (c *directClient) stream(ctx context.Context, i int, rec *streamRecord) error {
	model := upstreamModel
	if c.model != "" {
		model = c.model
	}
	quoted, _ := json.Marshal(model) // a string always encodes
	body := `{"model":` + string(quoted) + `,"messages":[{"role":"user","content":"Benchmark message ` + strconv.Itoa(i) +
		`."}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":` + strconv.Itoa(c.tokens+100) + `}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+"/chat/completions", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	rec.start = time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s answered %s: %s", c.baseURL, resp.Status, strings.TrimSpace(string(msg)))
	}
	sse := newSSEReader(resp.Body)
	finish, usage := "", -1
	for {
		ev, err := sse.next()
		at := time.Now()
		if errors.Is(err, io.EOF) {
			return errors.New("upstream stream ended without [DONE]")
		}
		if err != nil {
			return fmt.Errorf("read upstream stream: %w", err)
		}
		if string(ev.data) == "[DONE]" {
			rec.end = at
			break
		}
		var ch chunk
		if err := json.Unmarshal(ev.data, &ch); err != nil {
			return fmt.Errorf("decode chunk: %w", err)
		}
		for _, choice := range ch.Choices {
			rec.add(at, choice.Delta.Content)
			if choice.FinishReason != nil {
				finish = *choice.FinishReason
			}
		}
		if ch.Usage != nil {
			usage = ch.Usage.CompletionTokens
		}
	}
	if usage == -1 && c.optionalUsage {
		usage = c.tokens
	}
	if finish != "stop" || usage != c.tokens {
		return fmt.Errorf("finish_reason %q, completion_tokens %d; want stop, %d", finish, usage, c.tokens)
	}
	return rec.check()
}
