package tokenizer

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// AddedToken is a token matched in the text before the model runs, with the
// flags of Hugging Face's AddedToken.
type AddedToken struct {
	ID         int
	Content    string
	SingleWord bool
	LStrip     bool
	RStrip     bool
	Normalized bool
	Special    bool
}

// addedMatcher finds added tokens leftmost-longest, as the Aho-Corasick
// automaton in HF's AddedVocabulary does.
type addedMatcher struct {
	byFirst [256][]*addedPattern
}

type addedPattern struct {
	text string // what is matched (the normalized content for normalized tokens)
	tok  *AddedToken
}

func newAddedMatcher(pats []*addedPattern) *addedMatcher {
	if len(pats) == 0 {
		return nil
	}
	m := &addedMatcher{}
	for _, p := range pats {
		if p.text == "" {
			continue
		}
		m.byFirst[p.text[0]] = append(m.byFirst[p.text[0]], p)
	}
	for k := range m.byFirst {
		l := m.byFirst[k]
		sort.SliceStable(l, func(a, b int) bool { return len(l[a].text) > len(l[b].text) })
	}
	return m
}

// split calls fn for every piece of s in order: plain text (t == nil) and
// added tokens with their lstrip/rstrip-extended ranges.
func (m *addedMatcher) split(s string, fn func(i, j int, t *AddedToken)) {
	if m == nil {
		if s != "" {
			fn(0, len(s), nil)
		}
		return
	}
	startOffset := 0
	for pos := 0; pos < len(s); {
		var p *addedPattern
		for _, c := range m.byFirst[s[pos]] {
			if strings.HasPrefix(s[pos:], c.text) {
				p = c
				break
			}
		}
		if p == nil {
			pos++
			continue
		}
		start, stop := pos, pos+len(p.text)
		pos = stop
		t := p.tok
		if t.SingleWord && (endsWithWord(s[:start]) || startsWithWord(s[stop:])) {
			continue
		}
		if t.LStrip {
			start = max(trailingSpaceStart(s[:start]), startOffset)
		}
		if t.RStrip {
			stop += leadingSpaceLen(s[stop:])
			pos = stop
		}
		if startOffset < start {
			fn(startOffset, start, nil)
		}
		fn(start, stop, t)
		startOffset = stop
	}
	if startOffset < len(s) {
		fn(startOffset, len(s), nil)
	}
}

// isWordRune approximates the Unicode \w class of Rust's regex crate.
func isWordRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) ||
		unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Pc, r)
}

func endsWithWord(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return s != "" && isWordRune(r)
}

func startsWithWord(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return s != "" && isWordRune(r)
}

func trailingSpaceStart(s string) int {
	j := len(s)
	for j > 0 {
		r, w := utf8.DecodeLastRuneInString(s[:j])
		if !unicode.IsSpace(r) {
			break
		}
		j -= w
	}
	return j
}

func leadingSpaceLen(s string) int {
	i := 0
	for i < len(s) {
		r, w := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsSpace(r) {
			break
		}
		i += w
	}
	return i
}
