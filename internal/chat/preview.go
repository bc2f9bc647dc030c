package chat

import (
	"regexp"
	"strings"
)

// Markdown markers that a one-line preview leaves out. Model replies are
// Markdown; a conversation list shows their words, not their syntax.
var (
	mdFence    = regexp.MustCompile("^ {0,3}(`{3,}|~{3,})")
	mdBlock    = regexp.MustCompile(`^ {0,3}(#{1,6}[ \t]+|>[ \t]?|[-*+][ \t]+|\d{1,9}[.)][ \t]+)+`)
	mdRule     = regexp.MustCompile(`^ {0,3}([-*_])([ \t]*[-*_]){2,}[ \t]*$`)
	mdTableSep = regexp.MustCompile(`^[ \t|:-]+$`)
	mdImage    = regexp.MustCompile(`!\[([^\]\n]*)\]\([^)\n]*\)`)
	mdLink     = regexp.MustCompile(`\[([^\]\n]*)\]\([^)\n]*\)`)
	mdStrong   = regexp.MustCompile(`(\*\*|__|~~)(\S(?:.*?\S)?)(\*\*|__|~~)`)
	mdEm       = regexp.MustCompile(`(^|[^\w*])[*_](\S(?:[^*_]*?\S)?)[*_]($|[^\w*])`)
	mdCode     = regexp.MustCompile("`+([^`]+)`+")
)

// plainPreview turns Markdown into the plain words of a preview: heading,
// quote and list markers, rules, fences, emphasis, code ticks and link
// syntax go; the text (and a link's label) stays.
func plainPreview(content string) string {
	lines := strings.Split(content, "\n")
	out := make([]string, 0, len(lines))
	for _, line := range lines {
		switch {
		case mdFence.MatchString(line), mdRule.MatchString(line):
			continue
		case strings.Contains(line, "|") && strings.Contains(line, "-") && mdTableSep.MatchString(line):
			continue
		}
		line = mdBlock.ReplaceAllString(line, "")
		line = strings.ReplaceAll(strings.Trim(strings.TrimSpace(line), "|"), "|", " ")
		out = append(out, line)
	}
	s := strings.Join(out, "\n")
	s = mdImage.ReplaceAllString(s, "$1")
	s = mdLink.ReplaceAllString(s, "$1")
	s = mdStrong.ReplaceAllString(s, "$2")
	s = mdEm.ReplaceAllString(s, "$1$2$3")
	s = mdCode.ReplaceAllString(s, "$1")
	return s
}
