package llm

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestErrorLineReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"vLLM stream passes unchanged", "data: {\"a\":1}\n\n: keep-alive\n\ndata: [DONE]\n\n", "data: {\"a\":1}\n\n: keep-alive\n\ndata: [DONE]\n\n"},
		{"llama.cpp error line",
			"error: {\"code\":400,\"message\":\"the request exceeds the available context size, try increasing it\",\"type\":\"invalid_request_error\"}\n\ndata: [DONE]\n\n",
			"data: {\"error\":{\"code\":400,\"message\":\"the request exceeds the available context size, try increasing it\",\"type\":\"invalid_request_error\"}}\n\ndata: [DONE]\n\n"},
		{"error line after content, CRLF", "data: {\"a\":1}\r\n\r\nerror: {\"code\":500}\r\n\r\n", "data: {\"a\":1}\r\n\r\ndata: {\"error\":{\"code\":500}}\n\r\n"},
		{"error line that is not JSON", "error: boom\n\n", "data: {\"error\":{\"message\":\"boom\"}}\n\n"},
		{"error line at the end of the body", "error: {\"code\":500}", "data: {\"error\":{\"code\":500}}\n"},
		{"lines that only start like error", "err\nerrors: x\nevent: error\n", "err\nerrors: x\nevent: error\n"},
		{"partial line at the end", "data: {\"a\"", "data: {\"a\""},
	}
	for _, tt := range tests {
		for _, split := range []bool{false, true} {
			var r io.Reader = strings.NewReader(tt.in)
			if split {
				r = iotest.OneByteReader(r)
			}
			got, err := io.ReadAll(newErrorLineReader(r))
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if string(got) != tt.want {
				t.Errorf("%s (split %v):\n got %q\nwant %q", tt.name, split, got, tt.want)
			}
		}
	}
}

func TestErrorLineReaderSeesDone(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		"data: {\"a\":1}\n\ndata: [DONE]\n\n": true,
		"data:[DONE]\r\n\r\n":                 true,
		"data: {\"a\":1}\n\n":                 false,
		"data: [DONE] and more\n\n":           false,
		"data: [DON":                          false,
	}
	for in, want := range tests {
		for _, split := range []bool{false, true} {
			var r io.Reader = strings.NewReader(in)
			if split {
				r = iotest.OneByteReader(r)
			}
			lines := newErrorLineReader(r)
			got, err := io.ReadAll(lines)
			if err != nil || string(got) != in {
				t.Errorf("%q (split %v): read %q, %v; want it unchanged", in, split, got, err)
			}
			if lines.sawDone != want {
				t.Errorf("%q (split %v): sawDone = %v, want %v", in, split, lines.sawDone, want)
			}
		}
	}
}

// TestErrorLineReaderDoesNotHoldOtherLines: bytes of a line that cannot be
// an error: line are handed out before its newline arrives.
func TestErrorLineReaderDoesNotHoldOtherLines(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	r := newErrorLineReader(pr)
	go func() { _, _ = pw.Write([]byte("data: {\"content\":\"ab")) }()
	buf := make([]byte, 64)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "data: {\"content\":\"ab" {
		t.Fatalf("Read = %q, %v; want the partial line at once", buf[:n], err)
	}
	pw.Close()
}

// FuzzErrorLineReader: whatever the bytes and however they are split into
// reads, a stream without error: lines comes out unchanged, and one with
// them keeps every other line.
func FuzzErrorLineReader(f *testing.F) {
	f.Add("data: {\"a\":1}\n\nerror: {\"code\":400,\"message\":\"m\"}\n\ndata: [DONE]\n\n")
	f.Add("err\nerror:\nerror: x\r\ndata:[DONE]")
	f.Fuzz(func(t *testing.T, in string) {
		out, err := io.ReadAll(newErrorLineReader(iotest.HalfReader(strings.NewReader(in))))
		if err != nil {
			t.Fatal(err)
		}
		var want strings.Builder
		for _, line := range strings.SplitAfter(in, "\n") {
			if !strings.HasPrefix(line, "error:") {
				want.WriteString(line)
			}
		}
		var got strings.Builder
		for _, line := range strings.SplitAfter(string(out), "\n") {
			if !strings.HasPrefix(line, `data: {"error":`) || strings.HasPrefix(in, line) || strings.Contains(in, "\n"+line) {
				got.WriteString(line)
			}
		}
		if got.String() != want.String() {
			t.Fatalf("in %q\nout %q: other lines changed", in, out)
		}
	})
}

// FuzzErrorLineReaderReadSizes: the rewritten stream does not depend on how the
// body arrives or how the caller reads it (byte by byte, or in large reads
// that go straight into the caller's buffer).
func FuzzErrorLineReaderReadSizes(f *testing.F) {
	f.Add([]byte("data: {\"a\":1}\n\nerror: {\"code\":500}\n\ndata: [DONE]\n\n"))
	f.Add([]byte("data: " + strings.Repeat("x", 9000) + "\nerror: oops\ndata: [DO"))
	f.Add([]byte("error: not json"))
	f.Fuzz(func(t *testing.T, body []byte) {
		read := func(src io.Reader, oneByte bool) string {
			var r io.Reader = newErrorLineReader(src)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			out, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			return string(out)
		}
		want := read(iotest.OneByteReader(bytes.NewReader(body)), true)
		if got := read(bytes.NewReader(body), false); got != want {
			t.Fatalf("large reads %q, byte by byte %q", got, want)
		}
		if got := read(iotest.HalfReader(bytes.NewReader(body)), false); got != want {
			t.Fatalf("half reads %q, byte by byte %q", got, want)
		}
	})
}
