package blob_test

import (
	"errors"
	"strings"
	"testing"

	"luna/internal/blob"
)

func TestValidateKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key   string
		valid bool
	}{
		{"images/user_1/job-2.png", true},
		{"images/0f8fad5b-d9cb-469f-a165-70867728950e/7c9e6679-7425-40de-944b-e07fc1f90ae7.png", true},
		{"a", true},
		{"a.b/c_d/E-F.9", true},
		{strings.Repeat("a", 512), true},
		{strings.Repeat("a", 513), false},
		{"", false},
		{"/images/a.png", false},
		{"images/a.png/", false},
		{"images//a.png", false},
		{"images/../a.png", false},
		{"images/a..png", false},
		{"..", false},
		{".", false},
		{"./a.png", false},
		{"images/./a.png", false},
		{"images/.a.png", false},
		{"images\\a.png", false},
		{"images/a b.png", false},
		{"images/a%20b.png", false},
		{"images/a?.png", false},
		{"images/a#.png", false},
		{"images/a:b.png", false},
		{"images/a\x00.png", false},
		{"images/a\n.png", false},
		{"images/é.png", false},
	}
	for _, tt := range tests {
		err := blob.ValidateKey(tt.key)
		if got, want := err == nil, tt.valid; got != want {
			t.Errorf("ValidateKey(%q) = %v, want valid: %v", tt.key, err, want)
		}
		if err != nil && !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) error %v does not wrap ErrInvalidKey", tt.key, err)
		}
	}
}

func FuzzValidateKey(f *testing.F) {
	for _, seed := range []string{"images/u/j.png", "../x", "a//b", "a\\b", ".x", "a/./b"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if blob.ValidateKey(key) != nil {
			return
		}
		// A valid key can never climb out of, or name, the store's root.
		if strings.Contains(key, "..") || strings.HasPrefix(key, "/") || strings.ContainsAny(key, "\\\x00%") {
			t.Fatalf("ValidateKey accepted %q", key)
		}
		for segment := range strings.SplitSeq(key, "/") {
			if segment == "" || segment == "." || strings.HasPrefix(segment, ".") {
				t.Fatalf("ValidateKey accepted %q with segment %q", key, segment)
			}
		}
	})
}
