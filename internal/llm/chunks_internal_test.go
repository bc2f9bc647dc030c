package llm

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/ssestream"
)

// decoded is what a decoder made of a stream: the chunks, then how it ended.
type decoded struct {
	chunks []chunk
	end    string // "" (no error), "event: <data>" (an error event), "error" (anything else)
}

// decodeWithOpenAI reads body as Stream did before chunkDecoder: openai-go's
// SSE decoder and chunk type. It is the oracle.
func decodeWithOpenAI(body io.Reader) decoded {
	res := &http.Response{
		Header: http.Header{"Content-Type": {"text/event-stream"}},
		Body:   io.NopCloser(body),
	}
	stream := ssestream.NewStream[openai.ChatCompletionChunk](ssestream.NewDecoder(res), nil)
	var d decoded
	for stream.Next() {
		c := stream.Current()
		var got chunk
		if c.JSON.Usage.Valid() {
			got.hasUsage = true
			got.usage = Usage{PromptTokens: int(c.Usage.PromptTokens), CompletionTokens: int(c.Usage.CompletionTokens)}
		}
		for _, choice := range c.Choices {
			if choice.Index == 0 {
				got.choices = append(got.choices, choiceDelta{content: choice.Delta.Content, finishReason: choice.FinishReason})
			}
		}
		d.chunks = append(d.chunks, got)
	}
	d.end = endOf(stream.Err())
	return d
}

func decodeWithChunkDecoder(body io.Reader) decoded {
	dec := newChunkDecoder(body)
	defer dec.release()
	var d decoded
	for dec.Next() {
		c := *dec.Chunk()
		c.choices = append([]choiceDelta(nil), c.choices...)
		d.chunks = append(d.chunks, c)
	}
	d.end = endOf(dec.Err())
	return d
}

func endOf(err error) string {
	var eventErr *ssestream.StreamError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &eventErr):
		return "event: " + string(eventErr.Event.Data)
	default:
		return "error"
	}
}

// normalize makes an empty choices slice and a nil one equal.
func (d decoded) normalize() decoded {
	for i := range d.chunks {
		if len(d.chunks[i].choices) == 0 {
			d.chunks[i].choices = nil
		}
	}
	return d
}

// FuzzChunkDecoder feeds the same bytes (through the llama.cpp error-line
// rewriter, as Stream does) to chunkDecoder and to openai-go, optionally
// ending in a read error, and demands the same chunks and the same end.
// Seeds: testdata/fuzz/FuzzChunkDecoder and the cases below.
func FuzzChunkDecoder(f *testing.F) {
	f.Add([]byte(`data: {"choices":[{"index":0,"delta":{"content":"Hi \"there\"\n\u00e9\ud83d\ude00"},"finish_reason":null}]}`+"\n\n"), false)
	f.Add([]byte(`data: {"choices":[{"index":1,"delta":{"content":"x"}},{"index":0,"delta":{"content":"y"},"finish_reason":"length"}]}`+"\n\n"), false)
	f.Add([]byte(`data: {"choices":[],"usage":{"prompt_tokens":36,"completion_tokens":3,"total_tokens":39}}`+"\n\ndata: [DONE]\n\n"), false)
	f.Add([]byte(`data: {"choices":[{"index":0,"delta":{"content":5}}],"usage":{"prompt_tokens":"7"}}`+"\n\n"), false)
	f.Add([]byte(`data: {"choices":[{"index":0.0,"delta":{"content":"a","content":"b"}}],"usage":null,"usage":{"prompt_tokens":1e2}}`+"\n\n"), false)
	f.Add([]byte(`data: {"\u0063hoices":[{"index":0,"delta":{"Content":"a"}}],"Usage":{}}`+"\n\n"), false)
	f.Add([]byte("error: {\"code\":500,\"message\":\"boom\",\"type\":\"server_error\"}\n\ndata: [DONE]\n\n"), false)
	f.Add([]byte("error: not json\n\n"), false)
	f.Add([]byte("data: {\"error\": {\"message\": \"x\", \"code\": 500}}\n\n"), false)
	f.Add([]byte("event: thread.run\ndata: {\"choices\":[{\"delta\":{\"content\":\"no\"}}]}\n\nevent: thread.x\ndata: nope\n\n"), false)
	f.Add([]byte(": keep-alive\n\nevent: x\nid: 1\nretry: 5\ndata\ndata: {\"choices\":\n data: []}\n\n"), false)
	f.Add([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xe6\x97\"}}]}\r\n\r\n"), false)
	f.Add([]byte("data: [1,2]\n\ndata: null\n\ndata: \"s\"\n\ndata: {\"choices\":{}}\n\n"), false)
	f.Add([]byte(`data: {"choices":[{"index":0,"delta":{"content":"cut"}}]}`+"\n\ndata: {\"cho"), true)
	f.Fuzz(func(t *testing.T, body []byte, readErr bool) {
		reader := func() io.Reader {
			var r io.Reader = bytes.NewReader(body)
			if readErr {
				r = io.MultiReader(r, iotest.ErrReader(errors.New("connection reset")))
			}
			return newErrorLineReader(r)
		}
		want := decodeWithOpenAI(reader()).normalize()
		got := decodeWithChunkDecoder(reader()).normalize()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("body %q:\nchunkDecoder %+v\nopenai-go    %+v", body, got, want)
		}
	})
}

// BenchmarkChunkDecoder compares the two decoders on a vLLM reply of 200
// content chunks.
func BenchmarkChunkDecoder(b *testing.B) {
	var body bytes.Buffer
	for range 200 {
		body.WriteString(`data: {"id":"chatcmpl-5d1f","object":"chat.completion.chunk","created":1755000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,"finish_reason":null,"token_ids":null}]}` + "\n\n")
	}
	body.WriteString("data: [DONE]\n\n")
	for _, bc := range []struct {
		name   string
		decode func(io.Reader) decoded
	}{{"chunkDecoder", decodeWithChunkDecoder}, {"openai-go", decodeWithOpenAI}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := bc.decode(bytes.NewReader(body.Bytes())); len(d.chunks) != 200 {
					b.Fatal(len(d.chunks))
				}
			}
		})
	}
}
