package llm_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"

	"luna/internal/llm"
)

// bodyTransport answers every request with a 200 event stream of body.
type bodyTransport struct {
	contentType string
	body        []byte
}

func (b bodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {b.contentType}},
		Body:       io.NopCloser(bytes.NewReader(b.body)),
		Request:    r,
	}, nil
}

// FuzzStreamResponse feeds arbitrary bytes to the response path (openai-go's
// SSE and chunk decoding, then this package's classification): it must never
// panic, must hand over exactly ContentChunks non-empty deltas, and must end
// in either a finished Result or a well-formed *llm.Error.
func FuzzStreamResponse(f *testing.F) {
	f.Add("text/event-stream; charset=utf-8", []byte(transcript))
	f.Add("text/event-stream", []byte(chunk(`{"content":"a"}`, "null")+"data: [DONE]\n\n"))
	f.Add("text/event-stream", []byte("data: {\"error\": {\"message\": \"x\", \"code\": 500}}\n\ndata: [DONE]\n\n"))
	f.Add("text/event-stream", []byte(": keep-alive\n\nevent: x\nid: 1\nretry: 5\ndata: {\"choices\":[]}\n\n"))
	f.Add("text/event-stream", []byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xe6\x97\"}}]}\n\n"))
	f.Add("application/json", []byte(`{"error":"Unauthorized"}`))
	f.Add("", []byte("data: not json\n\n"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		client := llm.NewClientWithRoundTripper(bodyTransport{contentType: contentType, body: body})
		req := request("http://model.test/v1")
		deltas := 0
		res, err := client.Stream(t.Context(), req, func(text string) {
			if text == "" {
				t.Fatal("empty delta")
			}
			deltas++
		})
		if deltas != res.ContentChunks {
			t.Fatalf("%d deltas, ContentChunks %d", deltas, res.ContentChunks)
		}
		if err == nil {
			if res.FinishReason == "" {
				t.Fatal("success without finish_reason")
			}
			return
		}
		var e *llm.Error
		if !errors.As(err, &e) {
			t.Fatalf("err = %T %v", err, err)
		}
		switch e.Kind {
		case llm.KindTruncated, llm.KindMalformed, llm.KindUpstream, llm.KindContextLength, llm.KindRateLimited:
		default:
			t.Fatalf("Kind = %q (%v)", e.Kind, err)
		}
		if e.Message == "" || e.BeforeFirstToken != (res.ContentChunks == 0) {
			t.Fatalf("bad error %+v", e)
		}
	})
}
