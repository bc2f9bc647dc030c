package cursor_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"luna"
	"luna/internal/cursor"
)

func TestRoundTrip(t *testing.T) {
	c := cursor.Cursor{At: 1767225600123, ID: "019ad2c4-5c1e-7b3a-9f00-2d1c0b4e8a11"}
	got, err := cursor.Parse(c.String())
	if err != nil || got != c {
		t.Fatalf("Parse(String()) = %+v, %v; want %+v", got, err, c)
	}
}

func TestRoundTripNumber(t *testing.T) {
	c := cursor.Cursor{At: 1767225600123, ID: "42"}
	got, err := cursor.Parse(c.String())
	if err != nil || got != c {
		t.Fatalf("Parse(String()) = %+v, %v; want %+v", got, err, c)
	}
}

func TestParseRefusesGarbage(t *testing.T) {
	encode := func(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }
	for _, s := range []string{"", "garbage!", "bm9waXBl", "MTIzfA", "YWJjfGlk",
		encode("123|id"), encode("123|-5"), encode("123|12345678901234567890"), encode("123|12a"), encode("123|\xff"), encode("123|\x00"), encode("123|\xc0\x80"), encode("123|\xed\xa0\x80"),
		encode("123|019ad2c4-5c1e-7b3a-9f00-2d1c0b4e8a1\x00"), encode("123|019ad2c4-5c1e-7b3a-9f00-2d1c0b4e8a11" + strings.Repeat("x", 100))} {
		if _, err := cursor.Parse(s); luna.ErrorCode(err) != luna.CodeInvalidRequest {
			t.Errorf("Parse(%q) = %v, want invalid_request", s, err)
		}
	}
}

func TestSeq(t *testing.T) {
	for _, n := range []cursor.Seq{1, 42, 1 << 62} {
		if got, err := cursor.ParseSeq(n.String()); err != nil || got != n {
			t.Errorf("ParseSeq(%d.String()) = %d, %v", n, got, err)
		}
	}
	encode := func(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }
	time := cursor.Cursor{At: 1767225600123, ID: "019ad2c4-5c1e-7b3a-9f00-2d1c0b4e8a11"}.String()
	for _, s := range []string{"", "garbage!", time, encode("seq:"), encode("seq:0"), encode("seq:-3"), encode("seq:1x"),
		encode("seq:99999999999999999999"), encode("42"), encode("seq:" + strings.Repeat("1", 200))} {
		if _, err := cursor.ParseSeq(s); luna.ErrorCode(err) != luna.CodeInvalidRequest {
			t.Errorf("ParseSeq(%q) = %v, want invalid_request", s, err)
		}
	}
}
