package cursor_test

import (
	"testing"

	"luna"
	"luna/internal/cursor"
)

func TestRoundTrip(t *testing.T) {
	c := cursor.Cursor{At: 1767225600123, ID: "01a2-x|y"}
	got, err := cursor.Parse(c.String())
	if err != nil || got != c {
		t.Fatalf("Parse(String()) = %+v, %v; want %+v", got, err, c)
	}
}

func TestParseRefusesGarbage(t *testing.T) {
	for _, s := range []string{"", "garbage!", "bm9waXBl", "MTIzfA", "YWJjfGlk"} {
		if _, err := cursor.Parse(s); luna.ErrorCode(err) != luna.CodeInvalidRequest {
			t.Errorf("Parse(%q) = %v, want invalid_request", s, err)
		}
	}
}
