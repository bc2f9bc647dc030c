package llm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/tidwall/gjson"
)

// maxEventLine is the longest line of an event stream that is read, as in
// openai-go's decoder (bufio.MaxScanTokenSize<<9, 32 MiB); a longer one ends
// the stream as malformed.
const maxEventLine = bufio.MaxScanTokenSize << 9

// lineBuffers holds the first read buffer of each stream's line scanner,
// held while the stream runs: 1 KiB fits a chunk of a few tokens (vLLM's
// are about 250 bytes); a longer line makes the scanner grow its own.
var lineBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<10); return &b }}

// choiceDelta is what Luna reads of one choices[] entry with index 0.
type choiceDelta struct {
	content      string
	finishReason string
}

// chunk is what Luna reads of one chat.completion.chunk: the deltas of
// choice 0 (normally one; the array may repeat an index) and the usage.
type chunk struct {
	choices  []choiceDelta
	hasUsage bool // a non-null usage object arrived (openai-go's JSON.Usage.Valid())
	usage    Usage
}

// chunkDecoder reads a chat completion event stream and decodes the fields
// Luna uses from each chunk, without reflection. It frames events exactly
// as openai-go's ssestream decoder does, and ends the same way: on
// data: [DONE] with no error, on an event with an "error" field with an
// *ssestream.StreamError, on bytes that are not JSON with a decoding error.
// Chunks of an unusual shape (a field of an unexpected JSON type, numbers
// that are not plain integers, a key spelt with an escape, …) are decoded by
// openai-go itself, so the result is always openai-go's; FuzzChunkDecoder
// holds it to that.
type chunkDecoder struct {
	scn  *bufio.Scanner
	buf  *[]byte // the scanner's pooled first buffer
	data []byte  // the current event's data, reused
	cur  chunk
	err  error
	done bool
}

func newChunkDecoder(r io.Reader) *chunkDecoder {
	buf := lineBuffers.Get().(*[]byte)
	scn := bufio.NewScanner(r)
	scn.Buffer(*buf, maxEventLine)
	return &chunkDecoder{scn: scn, buf: buf}
}

// release returns the pooled buffer; the decoder is unusable afterwards.
func (d *chunkDecoder) release() {
	if d.buf != nil {
		lineBuffers.Put(d.buf)
		d.buf, d.scn, d.done = nil, nil, true
	}
}

// Chunk returns the chunk read by the last successful Next; its slices are
// reused by the following Next.
func (d *chunkDecoder) Chunk() *chunk { return &d.cur }

// Err returns why the stream ended: nil after [DONE] or at the end of the
// body.
func (d *chunkDecoder) Err() error { return d.err }

// Next reads the next chunk; false at the end of the stream or on error.
func (d *chunkDecoder) Next() bool {
	if !d.done {
		thread, ok := d.nextEvent()
		if !ok {
			d.done = true
			return false
		}
		if bytes.HasPrefix(d.data, []byte("[DONE]")) {
			d.done = true
			return false
		}
		text := string(d.data) // one copy: the deltas are substrings of it
		if ep := gjson.Get(text, "error"); ep.Exists() {
			d.err = &ssestream.StreamError{
				Message: fmt.Sprintf("received error while streaming: %s", ep.String()),
				Event:   ssestream.Event{Data: []byte(text)},
			}
			d.done = true
			return false
		}
		if thread {
			// openai-go wraps thread.* events (an Assistants API shape) in
			// {"event":…,"data":…}: a chunk with no fields, unless the data
			// is not JSON.
			d.cur.choices, d.cur.hasUsage, d.cur.usage = d.cur.choices[:0], false, Usage{}
			if _, err := json.Marshal(json.RawMessage(d.data)); err != nil {
				d.err = err
				d.done = true
				return false
			}
			return true
		}
		if err := d.decode(text); err != nil {
			d.err = err
			d.done = true
			return false
		}
		return true
	}
	return false
}

// nextEvent reads lines up to the next dispatched event (a blank line after
// data), as openai-go's eventStreamDecoder does; thread reports an event
// type starting with "thread.".
func (d *chunkDecoder) nextEvent() (thread, ok bool) {
	d.data = d.data[:0]
	for d.scn.Scan() {
		line := d.scn.Bytes()
		if len(line) == 0 {
			if len(d.data) == 0 {
				thread = false
				continue
			}
			return thread, true
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(name) {
		case "event":
			thread = bytes.HasPrefix(value, []byte("thread."))
		case "data":
			d.data = append(d.data, value...)
			d.data = append(d.data, '\n')
		}
	}
	d.err = d.scn.Err()
	return false, false
}

// decode reads one chunk's JSON into d.cur, by the fast path when the
// chunk has the usual shape, else with openai-go.
func (d *chunkDecoder) decode(text string) error {
	d.cur.choices = d.cur.choices[:0]
	d.cur.hasUsage, d.cur.usage = false, Usage{}
	if json.Valid(d.data) && d.fast(text) {
		return nil
	}
	d.cur.choices = d.cur.choices[:0]
	d.cur.hasUsage, d.cur.usage = false, Usage{}
	return decodeChunkOpenAI(d.data, &d.cur)
}

// decodeChunkOpenAI decodes a chunk with openai-go, the reference for what
// every shape means.
func decodeChunkOpenAI(data []byte, into *chunk) error {
	var c openai.ChatCompletionChunk
	if err := json.Unmarshal(data, &c); err != nil {
		return err
	}
	if c.JSON.Usage.Valid() {
		into.hasUsage = true
		into.usage = Usage{PromptTokens: int(c.Usage.PromptTokens), CompletionTokens: int(c.Usage.CompletionTokens)}
	}
	for _, choice := range c.Choices {
		if choice.Index == 0 {
			into.choices = append(into.choices, choiceDelta{content: choice.Delta.Content, finishReason: choice.FinishReason})
		}
	}
	return nil
}

// fast decodes valid JSON of the usual shape: an object whose "choices" is
// null or an array of objects with an integer "index", a "delta" that is
// null or an object with a string or null "content", a string or null
// "finish_reason"; whose "usage" is null or an object with integer token
// counts. Keys are matched as openai-go matches them (unescaped, exactly,
// the last of duplicates winning). It reports false for anything else.
func (d *chunkDecoder) fast(text string) bool {
	root := gjson.Parse(text)
	if !root.IsObject() {
		return false
	}
	var f [2]gjson.Result
	if !fields(root, f[:], "choices", "usage") {
		return false
	}
	choices, usage := f[0], f[1]
	ok := true
	switch {
	case !choices.Exists() || choices.Type == gjson.Null:
	case choices.IsArray():
		choices.ForEach(func(_, c gjson.Result) bool {
			ok = d.fastChoice(c)
			return ok
		})
	default:
		return false
	}
	if !ok {
		return false
	}
	switch {
	case !usage.Exists() || usage.Type == gjson.Null:
	case usage.IsObject():
		d.cur.hasUsage = true
		var u [2]gjson.Result
		if !fields(usage, u[:], "prompt_tokens", "completion_tokens") {
			return false
		}
		if d.cur.usage.PromptTokens, ok = plainInt(u[0]); !ok {
			return false
		}
		if d.cur.usage.CompletionTokens, ok = plainInt(u[1]); !ok {
			return false
		}
	default:
		return false
	}
	return true
}

// fastChoice reads one choices[] entry, keeping it when its index is 0.
func (d *chunkDecoder) fastChoice(c gjson.Result) bool {
	if !c.IsObject() {
		return false
	}
	var f [3]gjson.Result
	if !fields(c, f[:], "index", "delta", "finish_reason") {
		return false
	}
	index, delta, finish := f[0], f[1], f[2]
	i, ok := plainInt(index)
	if !ok {
		return false
	}
	var cd choiceDelta
	if cd.finishReason, ok = stringOrNull(finish); !ok {
		return false
	}
	switch {
	case !delta.Exists() || delta.Type == gjson.Null:
	case delta.IsObject():
		var content [1]gjson.Result
		if !fields(delta, content[:], "content") {
			return false
		}
		if cd.content, ok = stringOrNull(content[0]); !ok {
			return false
		}
	default:
		return false
	}
	if i == 0 {
		d.cur.choices = append(d.cur.choices, cd)
	}
	return true
}

// fields sets out[i] to the value of obj's key names[i] (unescaped, matched
// exactly), and reports false when one of them appears twice (which of
// the two openai-go keeps is left to it).
func fields(obj gjson.Result, out []gjson.Result, names ...string) bool {
	var seen uint
	ok := true
	obj.ForEach(func(key, value gjson.Result) bool {
		name := key.String()
		for i, n := range names {
			if name == n {
				if seen&(1<<i) != 0 {
					ok = false
					return false
				}
				seen |= 1 << i
				out[i] = value
			}
		}
		return true
	})
	return ok
}

// plainInt reads an absent value as 0 and a plain integer (no fraction or
// exponent, at most 18 digits) as itself; anything else is not ok.
func plainInt(v gjson.Result) (int, bool) {
	if !v.Exists() {
		return 0, true
	}
	if v.Type != gjson.Number || len(v.Raw) > 18 || strings.ContainsAny(v.Raw, ".eE+") {
		return 0, false
	}
	n, err := strconv.Atoi(v.Raw)
	return n, err == nil
}

// stringOrNull reads an absent or null value as "" and a string as its
// text, unescaped as openai-go does it (gjson).
func stringOrNull(v gjson.Result) (string, bool) {
	switch {
	case !v.Exists() || v.Type == gjson.Null:
		return "", true
	case v.Type == gjson.String:
		return v.String(), true
	}
	return "", false
}
