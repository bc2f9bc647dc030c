package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzAppendJSONString holds appendJSONString to encoding/json's output.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "a \"quote\" \\ back", "<b>&amp;</b>", "\x00\x01\b\f\n\r\t\x1f\x7f", "é 😀 \u2028\u2029", "\xe6\x97", "\xff\xfe", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}

// TestTextEvent: a text event is byte for byte the event a map would make.
func TestTextEvent(t *testing.T) {
	for _, tc := range []struct {
		name, field, text string
		offset            int
	}{
		{"delta", "text", "Hello <world> & \"you\"\n", 42},
		{"snapshot", "content", "", 0},
		{"deleted", "messageId", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", 7},
	} {
		viaMap, viaText := httptest.NewRecorder(), httptest.NewRecorder()
		if err := newSSEWriter(viaMap).event(tc.name, itoa(tc.offset), map[string]string{tc.field: tc.text}); err != nil {
			t.Fatal(err)
		}
		if err := newSSEWriter(viaText).textEvent(tc.name, tc.offset, tc.field, tc.text); err != nil {
			t.Fatal(err)
		}
		if got, want := viaText.Body.String(), viaMap.Body.String(); got != want {
			t.Errorf("textEvent wrote %q, want %q", got, want)
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// discard is a ResponseWriter that keeps nothing.
type discard struct{ h http.Header }

func (d discard) Header() http.Header       { return d.h }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}
func (discard) Flush()                      {}

// BenchmarkEvent compares a delta event written by textEvent with the same
// event written from a map by event.
func BenchmarkEvent(b *testing.B) {
	b.Run("textEvent", func(b *testing.B) {
		sw := newSSEWriter(discard{http.Header{}})
		b.ReportAllocs()
		for b.Loop() {
			if err := sw.textEvent("delta", 1234, "text", " word"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("event", func(b *testing.B) {
		sw := newSSEWriter(discard{http.Header{}})
		b.ReportAllocs()
		for b.Loop() {
			if err := sw.event("delta", "1234", map[string]string{"text": " word"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
