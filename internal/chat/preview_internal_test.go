package chat

import (
	"strings"
	"testing"
)

func TestPreviewIsPlainText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"Hello there", "Hello there"},
		{"# Title\n\nSome **bold** and *em* and _em_ and ~~gone~~ text.", "Title Some bold and em and em and gone text."},
		{"- one\n- two\n  * nested\n1. first\n2) second", "one two nested first second"},
		{"> quoted\n> > deeper", "quoted deeper"},
		{"```go\nfmt.Println(\"hi\")\n```\nafter", "fmt.Println(\"hi\") after"},
		{"Use `go test` and ``code``.", "Use go test and code."},
		{"See [the docs](https://example.com/x) and ![a cat](https://example.com/c.png).", "See the docs and a cat."},
		{"| a | b |\n|---|:-:|\n| 1 | 2 |", "a b 1 2"},
		{"---\n***\ntext", "text"},
		{"2 * 3 * 4 and snake_case_name", "2 * 3 * 4 and snake_case_name"},
		{"#hashtag and 3.14 and -5", "#hashtag and 3.14 and -5"},
		{"日本語 **強調** 🙂", "日本語 強調 🙂"},
	} {
		if got := preview(tc.in); got != tc.want {
			t.Errorf("preview(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A long reply's preview is made from its first lines, and is the one the
// whole reply gives.
func TestPreviewOfALongReplyIsThePreviewOfAllOfIt(t *testing.T) {
	t.Parallel()
	paragraph := "## Part\n\nSome **bold** words, a [link](https://example.com/a/long/path) and `code`.\n- item one\n- item two\n\n"
	rules := strings.Repeat("---\n", 600) // nothing to show in the first lines
	for name, in := range map[string]string{
		"paragraphs":         strings.Repeat(paragraph, 200),
		"one long line":      strings.Repeat("word ", 5000),
		"rules, then words":  rules + strings.Repeat(paragraph, 50),
		"a fence, then text": "```\n" + strings.Repeat("x := 1\n", 400) + "```\n" + strings.Repeat(paragraph, 50),
		"short lines":        strings.Repeat("a\n", 3000),
	} {
		if got, want := preview(in), previewOf(in); got != want {
			t.Errorf("%s: preview %q, want %q", name, got, want)
		}
	}
}
