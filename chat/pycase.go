package chat

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

// Python's str case conversions use Unicode's full mappings (ß upper is
// SS, İ lower is i + a combining dot, ǆ title is ǅ) and lower a final Σ
// to ς; Go's strings.ToUpper/ToLower map one rune to one rune.

func pyUpper(s string) string { return cases.Upper(language.Und).String(s) }

func pyLower(s string) string { return cases.Lower(language.Und).String(s) }

// pyTitleRune is the full titlecase mapping of r.
func pyTitleRune(r rune) string {
	if unicode.IsTitle(r) {
		return string(r)
	}
	return cases.Title(language.Und).String(string(r))
}

// pyCased is Python's notion of a cased character (one with a case).
func pyCased(r rune) bool { return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) }

// titleWord is word's first rune titlecased and the rest lowered, the
// rest lowered in context so that a final Σ becomes ς.
func titleWord(word string) string {
	r, n := utf8.DecodeRuneInString(word)
	if n == 0 {
		return ""
	}
	lowered := pyLower(word)
	head := pyLower(string(r))
	rest := strings.TrimPrefix(lowered, head)
	if len(rest) == len(lowered) {
		rest = pyLower(word[n:])
	}
	return pyTitleRune(r) + rest
}

// pyTitle is Python's str.title: a cased character after an uncased one
// (or at the start) is titlecased, the other cased ones lowered.
func pyTitle(s string) string {
	var b strings.Builder
	start := -1
	for i, r := range s {
		switch {
		case pyCased(r) && start < 0:
			start = i
		case !pyCased(r):
			if start >= 0 {
				b.WriteString(titleWord(s[start:i]))
				start = -1
			}
			b.WriteRune(r)
		}
	}
	if start >= 0 {
		b.WriteString(titleWord(s[start:]))
	}
	return b.String()
}

// pyCapitalize is Python's str.capitalize: the first character
// titlecased, the rest lowered.
func pyCapitalize(s string) string { return titleWord(s) }

// pySwapcase is Python's str.swapcase.
func pySwapcase(s string) string {
	var b strings.Builder
	runes := []rune(s)
	for i, r := range runes {
		switch {
		case r == 'Σ' && i > 0 && pyCased(runes[i-1]) && (i+1 == len(runes) || !pyCased(runes[i+1])):
			b.WriteRune('ς') // a final sigma
		case unicode.IsUpper(r) || unicode.IsTitle(r):
			b.WriteString(pyLower(string(r)))
		case unicode.IsLower(r):
			b.WriteString(pyUpper(string(r)))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// digitLike are the characters outside Nd that Python's isdigit accepts
// (Numeric_Type=Digit: superscripts, subscripts, circled digits, ...).
var digitLike = &unicode.RangeTable{R16: []unicode.Range16{
	{0x00B2, 0x00B3, 1}, {0x00B9, 0x00B9, 1}, {0x1369, 0x1371, 1}, {0x19DA, 0x19DA, 1},
	{0x2070, 0x2070, 1}, {0x2074, 0x2079, 1}, {0x2080, 0x2089, 1}, {0x2460, 0x2468, 1},
	{0x2474, 0x247C, 1}, {0x2488, 0x2490, 1}, {0x24EA, 0x24EA, 1}, {0x24F5, 0x24FD, 1},
	{0x24FF, 0x24FF, 1}, {0x2776, 0x277E, 1}, {0x2780, 0x2788, 1}, {0x278A, 0x2792, 1},
}, R32: []unicode.Range32{{0x10A40, 0x10A43, 1}, {0x1F100, 0x1F10A, 1}}}

// cjkNumerals are ideographs Python's isnumeric accepts (they have a
// numeric value though they are letters).
const cjkNumerals = "〇一二三四五六七八九十百千万萬億亿兆零壹贰貳叁參肆伍陆陸柒捌玖拾佰仟廿卅卌"

func pyIsDecimal(r rune) bool { return unicode.Is(unicode.Nd, r) }
func pyIsDigit(r rune) bool   { return pyIsDecimal(r) || unicode.Is(digitLike, r) }
func pyIsNumeric(r rune) bool { return unicode.IsNumber(r) || strings.ContainsRune(cjkNumerals, r) }
func pyIsAlnum(r rune) bool   { return unicode.IsLetter(r) || pyIsNumeric(r) }
