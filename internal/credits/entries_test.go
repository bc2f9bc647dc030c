package credits_test

import (
	"testing"

	"luna/internal/credits"
)

func TestParseReference(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want credits.Ref
	}{
		{credits.MessageReference("c1", "m1"), credits.Ref{Type: "message", MessageID: "m1", ConversationID: "c1"}},
		{"message:m1", credits.Ref{Type: "message", MessageID: "m1"}}, // before conversations were recorded
		{"message:m1 conversation:", credits.Ref{Type: "message", MessageID: "m1"}},
		{"message:", credits.Ref{Type: "operator"}},
		{"image:i1", credits.Ref{Type: "image", ImageID: "i1"}},
		{"image:", credits.Ref{Type: "operator"}},
		{"signup", credits.Ref{Type: "signup"}},
		{"invite:SECRET", credits.Ref{Type: "invite"}},
		{"cli", credits.Ref{Type: "operator"}},
		{"", credits.Ref{Type: "operator"}},
	} {
		if got := credits.ParseReference(tc.in); got != tc.want {
			t.Errorf("ParseReference(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}
