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

// directClient streams chat completions from the upstream itself, as Luna
// would, without Luna: the baseline.
type directClient struct {
	http    *http.Client
	baseURL string // the upstream's OpenAI-compatible base URL
	tokens  int    // expected tokens per reply
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
	body := `{"model":"` + upstreamModel + `","messages":[{"role":"user","content":"Benchmark message ` + strconv.Itoa(i) +
		`."}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":` + strconv.Itoa(c.tokens+100) + `}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+"/chat/completions", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	rec.start = time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("upstream answered %s", resp.Status)
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
	if finish != "stop" || usage != c.tokens {
		return fmt.Errorf("finish_reason %q, completion_tokens %d; want stop, %d", finish, usage, c.tokens)
	}
	return rec.check()
}
