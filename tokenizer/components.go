package tokenizer

import (
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// mapRunes rebuilds n character by character: f returns the replacement of
// r and whether it differs from r ("" deletes it).
func mapRunes(n nstr, f func(r rune) (string, bool)) nstr {
	var b *builder
	for i := 0; i < len(n.s); {
		r, w := utf8.DecodeRuneInString(n.s[i:])
		out, changed := f(r)
		if changed && b == nil {
			b = newBuilder(n)
			b.copy(n, 0, i)
		}
		if b != nil {
			if changed {
				b.emit(n, i, i+w, out)
			} else {
				b.copy(n, i, i+w)
			}
		}
		i += w
	}
	if b == nil {
		return n
	}
	return b.done(n)
}

// bertNormalizer is BERT's normalizer: drop control characters and map
// whitespace to ' ' (clean_text), put spaces around CJK ideographs
// (handle_chinese_chars), strip accents (NFD then drop Mn) and lowercase.
type bertNormalizer struct {
	cleanText, chinese, stripAccents, lowercase bool
}

func (b bertNormalizer) normalize(n nstr) nstr {
	if b.cleanText {
		n = mapRunes(n, func(r rune) (string, bool) {
			switch {
			case r == 0 || r == utf8.RuneError || isBertControl(r):
				return "", true
			case r != ' ' && isSpaceRune(r):
				return " ", true
			}
			return "", false
		})
	}
	if b.chinese {
		n = mapRunes(n, func(r rune) (string, bool) {
			if isCJK(r) {
				return " " + string(r) + " ", true
			}
			return "", false
		})
	}
	if b.stripAccents {
		n = stripAccentsNormalizer{}.normalize(unicodeNormalizer{norm.NFD}.normalize(n))
	}
	if b.lowercase {
		n = lowercaseNormalizer{}.normalize(n)
	}
	return n
}

// isBertControl is HF's is_control: Unicode "Other" (Cc, Cf, Co, Cs and
// unassigned) except tab, newline and carriage return, which are whitespace.
func isBertControl(r rune) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return false
	}
	if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs) {
		return true
	}
	return !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z)
}

// isCJK is the CJK Unified Ideographs blocks BERT pads with spaces (not
// Hiragana, Katakana or Hangul, which are written with spaces already).
func isCJK(r rune) bool {
	return r >= 0x4E00 && r <= 0x9FFF || r >= 0x3400 && r <= 0x4DBF ||
		r >= 0x20000 && r <= 0x2A6DF || r >= 0x2A700 && r <= 0x2B73F ||
		r >= 0x2B740 && r <= 0x2B81F || r >= 0x2B920 && r <= 0x2CEAF ||
		r >= 0xF900 && r <= 0xFAFF || r >= 0x2F800 && r <= 0x2FA1F
}

// nmtNormalizer is SentencePiece's NMT rule set as HF implements it: drop
// C0/C1 control characters, map other separators and invisible marks to ' '.
type nmtNormalizer struct{}

func (nmtNormalizer) normalize(n nstr) nstr {
	return mapRunes(n, func(r rune) (string, bool) {
		switch {
		case r >= 0x01 && r <= 0x08, r == 0x0B, r >= 0x0E && r <= 0x1F, r == 0x7F, r == 0x8F, r == 0x9F:
			return "", true
		case r == 0x09, r == 0x0A, r == 0x0C, r == 0x0D, r == 0x1680, r >= 0x200B && r <= 0x200F,
			r == 0x2028, r == 0x2029, r == 0x2581, r == 0xFEFF, r == 0xFFFD:
			return " ", true
		}
		return "", false
	})
}

// whitespacePreTokenizer is HF's Whitespace: the matches of \w+|[^\w\s]+,
// that is runs of word characters and runs of other non-space characters.
type whitespacePreTokenizer struct{}

const (
	wsWord = iota
	wsSpace
	wsOther
)

// wordClass follows Rust regex's Unicode \w (Alphabetic, marks, decimal
// digits, connector punctuation, joiners) and \s (White_Space).
func wordClass(r rune) int {
	switch {
	case r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_'):
		return wsWord
	case isSpaceRune(r):
		return wsSpace
	case r >= utf8.RuneSelf && (unicode.In(r, unicode.L, unicode.M, unicode.Nd, unicode.Nl, unicode.Pc, unicode.Other_Alphabetic) ||
		r == 0x200C || r == 0x200D):
		return wsWord
	}
	return wsOther
}

func (whitespacePreTokenizer) split(n nstr, emit func(nstr)) {
	start, cls := -1, wsSpace
	for i := 0; i < len(n.s); {
		r, w := utf8.DecodeRuneInString(n.s[i:])
		c := wordClass(r)
		if c != cls {
			if cls != wsSpace {
				emit(n.slice(start, i))
			}
			start, cls = i, c
		}
		i += w
	}
	if cls != wsSpace {
		emit(n.slice(start, len(n.s)))
	}
}

// scripts lists Unicode script ranges sorted by start, to find the script
// of a character by binary search (the unicode package only has one table
// per script). Built on first use: most tokenizers never need it.
var scripts = sync.OnceValue(func() *scriptIndex {
	x := &scriptIndex{}
	names := make([]string, 0, len(unicode.Scripts))
	for name := range unicode.Scripts {
		names = append(names, name)
	}
	sort.Strings(names)
	add := func(lo, hi, stride rune, k int) {
		if stride == 1 {
			x.ranges = append(x.ranges, scriptRange{lo, hi, int16(k)})
			return
		}
		for r := lo; r <= hi; r += stride {
			x.ranges = append(x.ranges, scriptRange{r, r, int16(k)})
		}
	}
	for k, name := range names {
		switch name {
		case "Han":
			x.han = int16(k)
		case "Hiragana":
			x.hiragana = int16(k)
		case "Katakana":
			x.katakana = int16(k)
		}
		for _, r := range unicode.Scripts[name].R16 {
			add(rune(r.Lo), rune(r.Hi), rune(r.Stride), k)
		}
		for _, r := range unicode.Scripts[name].R32 {
			add(rune(r.Lo), rune(r.Hi), rune(r.Stride), k)
		}
	}
	sort.Slice(x.ranges, func(a, b int) bool { return x.ranges[a].lo < x.ranges[b].lo })
	return x
})

type scriptIndex struct {
	ranges                  []scriptRange
	han, hiragana, katakana int16
}

type scriptRange struct {
	lo, hi rune
	script int16
}

// of returns the script of r; unassigned characters get -1 (Unknown).
func (x *scriptIndex) of(r rune) int16 {
	k := sort.Search(len(x.ranges), func(k int) bool { return x.ranges[k].hi >= r })
	if k < len(x.ranges) && x.ranges[k].lo <= r {
		return x.ranges[k].script
	}
	return -1
}

// scriptAny marks the space, which joins whatever script surrounds it.
const scriptAny = -3

// fixedScript is HF's fixed_script: Japanese kana count as Han so mixed
// Japanese stays one piece, and the space (and any unassigned character)
// belongs to any script.
func fixedScript(r rune) int16 {
	x := scripts()
	if r == 0x30FC {
		return x.han
	}
	if r == ' ' {
		return scriptAny
	}
	s := x.of(r)
	switch {
	case s == x.hiragana || s == x.katakana:
		return x.han
	case s < 0:
		// HF's table (SentencePiece's, Unicode 9) calls every character
		// it does not list Any; Go's tables are newer, so characters
		// assigned since then still get their script here.
		return scriptAny
	}
	return s
}

// unicodeScriptsPreTokenizer splits where the script changes. Like HF it
// cuts only in front of a character whose script differs from the last
// non-space one, so leading spaces (before any script is seen) are dropped.
type unicodeScriptsPreTokenizer struct{}

func (unicodeScriptsPreTokenizer) split(n nstr, emit func(nstr)) {
	var cuts []int
	last := int16(-100) // no script yet
	for i := 0; i < len(n.s); {
		r, w := utf8.DecodeRuneInString(n.s[i:])
		s := fixedScript(r)
		if s != scriptAny && last != scriptAny && last != s {
			cuts = append(cuts, i)
		}
		if s != scriptAny {
			last = s
		}
		i += w
	}
	cuts = append(cuts, len(n.s))
	for k := 0; k+1 < len(cuts); k++ {
		emit(n.slice(cuts[k], cuts[k+1]))
	}
}

// fixedLengthPreTokenizer is HF's FixedLength: pieces of length characters.
type fixedLengthPreTokenizer struct{ length int }

func (f fixedLengthPreTokenizer) split(n nstr, emit func(nstr)) {
	start, count := 0, 0
	for i := 0; i < len(n.s); {
		_, w := utf8.DecodeRuneInString(n.s[i:])
		i += w
		count++
		if count == f.length {
			emit(n.slice(start, i))
			start, count = i, 0
		}
	}
	if start < len(n.s) {
		emit(n.slice(start, len(n.s)))
	}
}

// wordPieceDecoder joins WordPiece tokens: a token with the continuing
// prefix glues to the previous one, others get a space in front.
type wordPieceDecoder struct {
	prefix  string
	cleanup bool
}

func (d wordPieceDecoder) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for k, t := range toks {
		if k > 0 {
			if strings.HasPrefix(t, d.prefix) {
				t = strings.Replace(t, d.prefix, "", 1)
			} else {
				t = " " + t
			}
		}
		if d.cleanup {
			t = wordPieceCleanup(t)
		}
		out[k] = t
	}
	return out
}

// wordPieceCleanup is HF's decoders::wordpiece::cleanup (it differs from
// transformers' clean_up_tokenization by the " do not" rule).
func wordPieceCleanup(s string) string {
	for _, p := range [][2]string{
		{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
		{" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
	} {
		s = strings.ReplaceAll(s, p[0], p[1])
	}
	return s
}

// ctcDecoder collapses repeated tokens (CTC's blank-separated repeats), drops
// the pad token and turns the word delimiter into a space.
type ctcDecoder struct {
	pad, delimiter string
	cleanup        bool
}

func (d ctcDecoder) decodeChain(toks []string) []string {
	var out []string
	for k, t := range toks {
		if k > 0 && t == toks[k-1] {
			continue
		}
		if d.pad != "" {
			t = strings.ReplaceAll(t, d.pad, "")
		}
		if d.cleanup {
			t = wordPieceCleanup(t)
			if d.delimiter != "" {
				t = strings.ReplaceAll(t, d.delimiter, " ")
			}
		}
		if t != "" {
			out = append(out, t)
		}
	}
	return out
}

// byteLevelNormalizer is HF's ByteLevel normalizer: every byte of the text
// becomes its character in GPT-2's byte alphabet, so the model sees the same
// alphabet its vocabulary is written in (the ByteLevel decoder maps back).
type byteLevelNormalizer struct{}

var byteLevelChars = func() (t [256]string) {
	for b := range 256 {
		t[b] = string(byteToRune[b])
	}
	return t
}()

func (byteLevelNormalizer) normalize(n nstr) nstr {
	b := newBuilder(n)
	for i := 0; i < len(n.s); i++ {
		b.emit(n, i, i+1, byteLevelChars[n.s[i]])
	}
	return b.done(n)
}
