package demo

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"strings"
	"unicode/utf8"

	"golang.org/x/image/font"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"
)

// Text drawn on every demo image.
const (
	label          = "LUNA DEMO"
	maxPromptWords = 6
	maxPromptRunes = 40
)

// painter draws the demo images. It is safe for concurrent use: the font is
// read-only and every render makes its own faces.
type painter struct {
	font *opentype.Font
}

// render draws a w×h PNG that depends only on prompt, seed, w and h: a
// gradient and translucent discs whose colours and places come from a hash
// of prompt and seed, the label "LUNA DEMO" and the prompt's first words.
func (p *painter) render(prompt, seed string, w, h int) ([]byte, error) {
	sum := sha256.Sum256([]byte(prompt + "\x00" + seed))
	rng := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(sum[0:8]), binary.LittleEndian.Uint64(sum[8:16])))
	hue := float64(binary.LittleEndian.Uint16(sum[16:18])) / 65536 * 360

	img := image.NewRGBA(image.Rect(0, 0, w, h))
	from := hsv(hue, 0.55, 0.95)
	to := hsv(hue+150+rng.Float64()*60, 0.7, 0.35)
	angle := rng.Float64() * 2 * math.Pi
	dx, dy := math.Cos(angle), math.Sin(angle)
	span := math.Abs(dx)*float64(w) + math.Abs(dy)*float64(h)
	var palette [1024]color.RGBA // the gradient, sampled
	for i := range palette {
		palette[i] = lerp(from, to, float64(i)/float64(len(palette)-1))
	}
	for y := range h {
		row := img.Pix[y*img.Stride:]
		t0 := (-float64(w)/2*dx+(float64(y)-float64(h)/2)*dy)/span + 0.5
		for x := range w {
			t := t0 + float64(x)*dx/span
			c := palette[int(math.Max(0, math.Min(1, t))*float64(len(palette)-1)+0.5)]
			row[4*x], row[4*x+1], row[4*x+2], row[4*x+3] = c.R, c.G, c.B, 0xff
		}
	}

	side := float64(min(w, h))
	discs := 4 + rng.IntN(5)
	for range discs {
		cx, cy := rng.Float64()*float64(w), rng.Float64()*float64(h)
		r := (0.06 + rng.Float64()*0.22) * side
		c := hsv(hue+rng.Float64()*120-60, 0.45+rng.Float64()*0.3, 0.9)
		fillDisc(img, cx, cy, r, c, 0.25+rng.Float64()*0.3)
	}

	bandTop := h - h/6
	for y := bandTop; y < h; y++ {
		for x := range w {
			img.SetRGBA(x, y, lerp(img.RGBAAt(x, y), color.RGBA{A: 0xff}, 0.45))
		}
	}

	if err := p.text(img, label, float64(h)/8, h/5, w); err != nil {
		return nil, err
	}
	if words := firstWords(prompt); words != "" {
		if err := p.text(img, words, float64(h)/22, bandTop+(h-bandTop)*2/3, w); err != nil {
			return nil, err
		}
	}

	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed} // a demo: speed over size
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode demo PNG: %w", err)
	}
	return buf.Bytes(), nil
}

// text draws s centred on the baseline y in white with a dark shadow,
// shrinking it to fit 90% of the width.
func (p *painter) text(img *image.RGBA, s string, size float64, y, w int) error {
	s = p.drawable(s)
	for size >= 6 {
		face, err := opentype.NewFace(p.font, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingNone})
		if err != nil {
			return fmt.Errorf("demo font face: %w", err)
		}
		width := font.MeasureString(face, s).Round()
		if width > w*9/10 && size > 6 {
			_ = face.Close()
			size *= 0.85
			continue
		}
		x := (w - width) / 2
		shadow := max(1, int(size/24))
		d := font.Drawer{Dst: img, Src: image.NewUniform(color.RGBA{A: 0xc0}), Face: face, Dot: fixed.P(x+shadow, y+shadow)}
		d.DrawString(s)
		d.Src = image.NewUniform(color.White)
		d.Dot = fixed.P(x, y)
		d.DrawString(s)
		return face.Close()
	}
	return nil
}

// drawable replaces the runes the font has no glyph for (CJK, emoji,
// control characters) with '?'.
func (p *painter) drawable(s string) string {
	var buf sfnt.Buffer
	var b strings.Builder
	for _, r := range s {
		idx, err := p.font.GlyphIndex(&buf, r)
		if err != nil || idx == 0 {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// firstWords returns the start of prompt for the caption: at most
// maxPromptWords words and maxPromptRunes characters.
func firstWords(prompt string) string {
	words := strings.Fields(prompt)
	cut := len(words) > maxPromptWords
	if cut {
		words = words[:maxPromptWords]
	}
	s := strings.Join(words, " ")
	if utf8.RuneCountInString(s) > maxPromptRunes {
		s = strings.TrimSpace(string([]rune(s)[:maxPromptRunes-1]))
		cut = true
	}
	if cut {
		s += "…"
	}
	return s
}

// fillDisc blends c with opacity alpha over the disc at (cx, cy) of radius r.
func fillDisc(img *image.RGBA, cx, cy, r float64, c color.RGBA, alpha float64) {
	b := img.Bounds()
	x0, x1 := max(b.Min.X, int(cx-r)), min(b.Max.X, int(cx+r)+1)
	y0, y1 := max(b.Min.Y, int(cy-r)), min(b.Max.Y, int(cy+r)+1)
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			ddx, ddy := float64(x)+0.5-cx, float64(y)+0.5-cy
			if ddx*ddx+ddy*ddy <= r*r {
				img.SetRGBA(x, y, lerp(img.RGBAAt(x, y), c, alpha))
			}
		}
	}
}

// lerp mixes a and b (b with opacity t, clamped to [0, 1]).
func lerp(a, b color.RGBA, t float64) color.RGBA {
	t = math.Max(0, math.Min(1, t))
	return color.RGBA{R: mix(a.R, b.R, t), G: mix(a.G, b.G, t), B: mix(a.B, b.B, t), A: 0xff}
}

// mix blends two channel values.
func mix(x, y uint8, t float64) uint8 {
	return uint8(float64(x) + (float64(y)-float64(x))*t + 0.5)
}

// hsv converts a hue in degrees, saturation and value in [0, 1] to an opaque colour.
func hsv(h, s, v float64) color.RGBA {
	h = math.Mod(h, 360)
	if h < 0 {
		h += 360
	}
	c := v * s
	x := c * (1 - math.Abs(math.Mod(h/60, 2)-1))
	m := v - c
	var r, g, b float64
	switch {
	case h < 60:
		r, g, b = c, x, 0
	case h < 120:
		r, g, b = x, c, 0
	case h < 180:
		r, g, b = 0, c, x
	case h < 240:
		r, g, b = 0, x, c
	case h < 300:
		r, g, b = x, 0, c
	default:
		r, g, b = c, 0, x
	}
	to8 := func(f float64) uint8 { return uint8(math.Round((f + m) * 255)) }
	return color.RGBA{R: to8(r), G: to8(g), B: to8(b), A: 0xff}
}
