package demo

import (
	"bytes"
	"image/png"
	"testing"

	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/opentype"
)

// newPainter returns a painter with the demo's font.
func newPainter(tb testing.TB) *painter {
	tb.Helper()
	f, err := opentype.Parse(gobold.TTF)
	if err != nil {
		tb.Fatal(err)
	}
	return &painter{font: f}
}

func TestRender(t *testing.T) {
	t.Parallel()
	p := newPainter(t)
	tests := []struct {
		name          string
		prompt, seed  string
		width, height int
	}{
		{"square", "a red fox in the snow", "42", 512, 512},
		{"tall, non-ASCII", "日本 🙂 \"quoted\" \\ {braces}", "18446744073709551615", 64, 96},
		{"empty prompt", "", "0", 16, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			first, err := p.render(tt.prompt, tt.seed, tt.width, tt.height)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			img, err := png.Decode(bytes.NewReader(first))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got, want := img.Bounds().Size().X, tt.width; got != want {
				t.Errorf("width = %d, want %d", got, want)
			}
			if got, want := img.Bounds().Size().Y, tt.height; got != want {
				t.Errorf("height = %d, want %d", got, want)
			}
			again, err := p.render(tt.prompt, tt.seed, tt.width, tt.height)
			if err != nil {
				t.Fatalf("render again: %v", err)
			}
			if !bytes.Equal(first, again) {
				t.Errorf("two renders of the same input differ")
			}
		})
	}
}

func TestFirstWords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, prompt, want string
	}{
		{"short", "a red fox", "a red fox"},
		{"whitespace", "  a\n\tred   fox ", "a red fox"},
		{"many words", "one two three four five six seven", "one two three four five six…"},
		{"long word", "supercalifragilisticexpialidocious-and-then-some-more", "supercalifragilisticexpialidocious-and-…"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := firstWords(tt.prompt); got != tt.want {
				t.Errorf("firstWords(%q) = %q, want %q", tt.prompt, got, tt.want)
			}
		})
	}
}

func TestDrawable(t *testing.T) {
	t.Parallel()
	p := newPainter(t)
	if got, want := p.drawable("Fox 日本 🙂 é…"), "Fox ?? ? é…"; got != want {
		t.Errorf("drawable = %q, want %q", got, want)
	}
}

func BenchmarkRender1024(b *testing.B) {
	p := newPainter(b)
	for b.Loop() {
		if _, err := p.render("a red fox in the snow", "42", 1024, 1024); err != nil {
			b.Fatal(err)
		}
	}
}
