package llm

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
)

// errorLinePrefix starts llama.cpp's in-stream error: llama-server writes
// `error: {"code":400,"message":…,"type":…}` and a blank line (then
// data: [DONE]) where vLLM writes a data: event. SSE decoders, openai-go's
// included, ignore a field named "error", so the stream would look cut.
var errorLinePrefix = []byte("error:")

// doneLines are the terminator line, with and without the optional space.
var doneLines = [][]byte{[]byte("data: [DONE]"), []byte("data:[DONE]")}

// maxErrorLine bounds how much of an error: line is held; a longer line is
// passed on unchanged.
const maxErrorLine = maxErrorBody

// errorLineReader rewrites each `error: X` line of an event stream into
// `data: {"error":X}`, the shape of vLLM's in-stream error event, so that
// openai-go reports it as an error event. Every other byte passes through
// unchanged and without delay: only the start of a line that may still turn
// out to be an error: line is held until its newline.
type errorLineReader struct {
	r       io.Reader
	buf     *[]byte // read buffer, pooled
	outBuf  []byte  // out's storage, reused once out is drained
	out     []byte  // ready to be returned
	line    []byte  // the start of the current line, held
	passing bool    // the current line is not an error: line; its bytes pass through
	err     error   // the underlying reader's error, returned once out is drained
	sawDone bool    // a data: [DONE] line went through
}

// readBuffers are errorLineReaders' read buffers: a stream holds one only
// while it runs. Small: the middle of a long line is read straight into
// the caller's buffer (see Read).
var readBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<10); return &b }}

func newErrorLineReader(r io.Reader) *errorLineReader {
	return &errorLineReader{r: r, buf: readBuffers.Get().(*[]byte)}
}

// release returns the read buffer to the pool; Read must not be called
// afterwards.
func (e *errorLineReader) release() {
	if e.buf != nil {
		readBuffers.Put(e.buf)
		e.buf = nil
	}
}

func (e *errorLineReader) Read(p []byte) (int, error) {
	if len(e.out) == 0 {
		e.out = e.outBuf[:0]
	}
	if len(e.out) == 0 && e.passing && e.err == nil && len(p) > 0 {
		// Inside a line that passes through: read straight into p, so that
		// a long line costs no copy and grows with the caller's buffer.
		n, err := e.r.Read(p)
		e.err = err
		if i := bytes.IndexByte(p[:n], '\n'); i >= 0 {
			// The rest starts new lines: those go through feed.
			e.passing = false
			e.feed(p[i+1 : n])
			e.outBuf = e.out
			n = i + 1
		}
		if n > 0 || err == nil {
			return n, nil
		}
	}
	for len(e.out) == 0 {
		if e.err != nil {
			if len(e.line) > 0 { // the body ended inside a line
				e.out, e.line = appendRewritten(e.out, e.line), nil
				break
			}
			return 0, e.err
		}
		n, err := e.r.Read(*e.buf)
		e.feed((*e.buf)[:n])
		e.outBuf = e.out
		e.err = err
	}
	n := copy(p, e.out)
	e.out = e.out[n:]
	return n, nil
}

// feed moves b to out, holding the start of each line while it may be an
// error: line.
func (e *errorLineReader) feed(b []byte) {
	for len(b) > 0 {
		end := bytes.IndexByte(b, '\n') + 1 // 0: no newline in b
		if e.passing {
			if end == 0 {
				e.out = append(e.out, b...)
				return
			}
			e.out = append(e.out, b[:end]...)
			b, e.passing = b[end:], false
			continue
		}
		part := b
		if end > 0 {
			part = b[:end]
		}
		e.line = append(e.line, part...)
		b = b[len(part):]
		switch {
		case end > 0:
			if isDoneLine(e.line) {
				e.sawDone = true
			}
			e.out = appendRewritten(e.out, e.line)
			e.line = e.line[:0]
		case !mayBeHeld(e.line) || len(e.line) > maxErrorLine:
			e.out = append(e.out, e.line...)
			e.line, e.passing = e.line[:0], true
		}
	}
}

// mayBeHeld reports whether a partial line is, or may become, an error:
// line or the [DONE] line (whose few bytes are held to be recognised).
func mayBeHeld(partial []byte) bool {
	if bytes.HasPrefix(partial, errorLinePrefix) || bytes.HasPrefix(errorLinePrefix, partial) {
		return true
	}
	for _, done := range doneLines {
		if bytes.HasPrefix(done, partial) || bytes.HasPrefix(partial, done) && len(partial) <= len(done)+2 {
			return true
		}
	}
	return false
}

// isDoneLine reports whether a whole line (newline included) is data: [DONE].
func isDoneLine(line []byte) bool {
	line = bytes.TrimRight(line, "\r\n")
	for _, done := range doneLines {
		if bytes.Equal(line, done) {
			return true
		}
	}
	return false
}

// appendRewritten appends line to dst, rewritten by rewriteErrorLine.
func appendRewritten(dst, line []byte) []byte {
	if !bytes.HasPrefix(line, errorLinePrefix) {
		return append(dst, line...)
	}
	return append(dst, rewriteErrorLine(line)...)
}

// rewriteErrorLine returns line unchanged unless it is an error: line; that
// becomes a data: line carrying {"error": value}, value being the line's
// JSON, or its text as the message when it is not JSON.
func rewriteErrorLine(line []byte) []byte {
	if !bytes.HasPrefix(line, errorLinePrefix) {
		return append([]byte(nil), line...)
	}
	value := bytes.TrimPrefix(line[len(errorLinePrefix):], []byte(" "))
	value = bytes.TrimRight(value, "\r\n")
	if !json.Valid(value) {
		msg, _ := json.Marshal(string(value))
		value = append(append([]byte(`{"message":`), msg...), '}')
	}
	out := append([]byte(`data: {"error":`), value...)
	return append(out, "}\n"...)
}
