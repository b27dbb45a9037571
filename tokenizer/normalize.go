package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	"golang.org/x/text/unicode/norm"
)

// span is a byte range of the original input.
type span struct{ lo, hi int32 }

// nstr is a piece of (possibly normalized) text. align maps every byte of s
// to the original byte range it came from, as Hugging Face's NormalizedString
// does; it is nil when the caller did not ask for offsets, which keeps plain
// Encode free of per-byte bookkeeping.
type nstr struct {
	s     string
	align []span
	// start reports that the piece begins at byte 0 of the original input
	// (Metaspace's prepend_scheme "first" depends on it).
	start bool
}

// newNstr wraps original text starting at byte base of the input. Every byte
// of a multi-byte character is aligned to the whole character, so a token
// covering part of a character reports the character's full range (as HF).
func newNstr(s string, base int, track bool) nstr {
	n := nstr{s: s, start: base == 0}
	if !track {
		return n
	}
	n.align = make([]span, len(s))
	for i := 0; i < len(s); {
		_, w := utf8.DecodeRuneInString(s[i:])
		sp := span{int32(base + i), int32(base + i + w)}
		for k := 0; k < w; k++ {
			n.align[i+k] = sp
		}
		i += w
	}
	return n
}

func (n nstr) slice(i, j int) nstr {
	m := nstr{s: n.s[i:j], start: n.start && i == 0}
	if n.align != nil {
		m.align = n.align[i:j]
	}
	return m
}

// prepend adds p in front; the new bytes take the first character's range.
// Like HF, prepending to an empty string does nothing.
func (n nstr) prepend(p string) nstr {
	if n.s == "" || p == "" {
		return n
	}
	m := nstr{s: p + n.s, start: n.start}
	if n.align != nil {
		m.align = make([]span, 0, len(p)+len(n.align))
		for range len(p) {
			m.align = append(m.align, n.align[0])
		}
		m.align = append(m.align, n.align...)
	}
	return m
}

// builder assembles a transformed nstr.
type builder struct {
	sb    strings.Builder
	align []span
	track bool
}

func newBuilder(n nstr) *builder {
	b := &builder{track: n.align != nil}
	b.sb.Grow(len(n.s))
	if b.track {
		b.align = make([]span, 0, len(n.s))
	}
	return b
}

// copy appends n.s[i:j] unchanged.
func (b *builder) copy(n nstr, i, j int) {
	b.sb.WriteString(n.s[i:j])
	if b.track {
		b.align = append(b.align, n.align[i:j]...)
	}
}

// emit appends text that replaces n.s[i:j]; every new byte gets the union of
// the replaced bytes' ranges.
func (b *builder) emit(n nstr, i, j int, text string) {
	b.sb.WriteString(text)
	if b.track {
		sp := span{}
		if j > i {
			sp = span{n.align[i].lo, n.align[j-1].hi}
		} else if i < len(n.align) {
			sp = span{n.align[i].lo, n.align[i].lo}
		} else if i > 0 {
			sp = span{n.align[i-1].hi, n.align[i-1].hi}
		}
		for range len(text) {
			b.align = append(b.align, sp)
		}
	}
}

func (b *builder) done(n nstr) nstr {
	return nstr{s: b.sb.String(), align: b.align, start: n.start}
}

type normalizer interface {
	normalize(n nstr) nstr
}

type seqNormalizer []normalizer

func (s seqNormalizer) normalize(n nstr) nstr {
	for _, x := range s {
		n = x.normalize(n)
	}
	return n
}

// unicodeNormalizer applies NFC/NFD/NFKC/NFKD segment by segment so that the
// alignment stays per character for ordinary text.
type unicodeNormalizer struct{ form norm.Form }

func (u unicodeNormalizer) normalize(n nstr) nstr {
	if u.form.IsNormalString(n.s) {
		return n
	}
	if n.align == nil {
		return nstr{s: u.form.String(n.s), start: n.start}
	}
	b := newBuilder(n)
	var it norm.Iter
	it.InitString(u.form, n.s)
	prev := 0
	for !it.Done() {
		seg := it.Next()
		pos := it.Pos()
		if string(seg) == n.s[prev:pos] {
			b.copy(n, prev, pos)
		} else {
			b.emit(n, prev, pos, string(seg))
		}
		prev = pos
	}
	return b.done(n)
}

type prependNormalizer struct{ text string }

func (p prependNormalizer) normalize(n nstr) nstr { return n.prepend(p.text) }

type lowercaseNormalizer struct{}

func (lowercaseNormalizer) normalize(n nstr) nstr {
	b := newBuilder(n)
	changed := false
	var buf [utf8.UTFMax]byte
	for i := 0; i < len(n.s); {
		r, w := utf8.DecodeRuneInString(n.s[i:])
		var low string
		switch {
		case r == utf8.RuneError && w == 1:
			b.copy(n, i, i+w)
			i += w
			continue
		case r == 'İ': // the one unconditional multi-character lowercase mapping
			low = "i\u0307"
		default:
			l := unicode.ToLower(r)
			if l == r {
				b.copy(n, i, i+w)
				i += w
				continue
			}
			low = string(buf[:utf8.EncodeRune(buf[:], l)])
		}
		changed = true
		b.emit(n, i, i+w, low)
		i += w
	}
	if !changed {
		return n
	}
	return b.done(n)
}

type stripNormalizer struct{ left, right bool }

func (s stripNormalizer) normalize(n nstr) nstr {
	i, j := 0, len(n.s)
	if s.left {
		for i < j {
			r, w := utf8.DecodeRuneInString(n.s[i:])
			if !unicode.IsSpace(r) {
				break
			}
			i += w
		}
	}
	if s.right {
		for j > i {
			r, w := utf8.DecodeLastRuneInString(n.s[i:j])
			if !unicode.IsSpace(r) {
				break
			}
			j -= w
		}
	}
	m := n.slice(i, j)
	m.start = n.start
	return m
}

type stripAccentsNormalizer struct{}

func (stripAccentsNormalizer) normalize(n nstr) nstr {
	b := newBuilder(n)
	for i := 0; i < len(n.s); {
		r, w := utf8.DecodeRuneInString(n.s[i:])
		if unicode.Is(unicode.Mn, r) {
			b.emit(n, i, i+w, "")
		} else {
			b.copy(n, i, i+w)
		}
		i += w
	}
	return b.done(n)
}

// replaceNormalizer replaces a literal string or a regular expression.
type replaceNormalizer struct {
	literal string
	re      *regexp2.Regexp
	content string
}

func (r replaceNormalizer) normalize(n nstr) nstr {
	if r.re == nil && (r.literal == "" || !strings.Contains(n.s, r.literal)) {
		return n
	}
	b := newBuilder(n)
	if r.re == nil && len(r.content) > len(r.literal) {
		// Size the output once: Metaspace-style " " -> "▁" triples spaces.
		b.sb.Grow(len(n.s) + strings.Count(n.s, r.literal)*(len(r.content)-len(r.literal)))
	}
	last := 0
	forEachMatch(n.s, r.literal, r.re, func(i, j int) {
		b.copy(n, last, i)
		b.emit(n, i, j, r.content)
		last = j
	})
	b.copy(n, last, len(n.s))
	return b.done(n)
}

// forEachMatch reports the non-overlapping matches of a literal or a regexp
// as byte ranges.
func forEachMatch(s, literal string, re *regexp2.Regexp, fn func(i, j int)) {
	if re == nil {
		if literal == "" {
			return
		}
		for off := 0; ; {
			k := strings.Index(s[off:], literal)
			if k < 0 {
				return
			}
			fn(off+k, off+k+len(literal))
			off += k + len(literal)
		}
	}
	regexMatches(re, s, false, fn)
}

// regexMatches runs a regexp2 expression (which counts in runes) and reports
// byte ranges. Errors (timeouts) end the search: callers treat the rest as
// unmatched text rather than failing an encode. With empty set, empty matches
// are reported too, as the Oniguruma iterator behind HF's Split reports them
// (split points of lookahead-only patterns such as SuperBPE's digit groups);
// like that iterator it skips an empty match right where the previous match
// ended.
func regexMatches(re *regexp2.Regexp, s string, empty bool, fn func(i, j int)) {
	if s == "" {
		return
	}
	runes := []rune(s)
	// byteAt[k] is the byte offset of rune k; invalid bytes decode to one
	// RuneError each, exactly as []rune does.
	byteAt := make([]int, len(runes)+1)
	k := 0
	for i := 0; i < len(s); {
		_, w := utf8.DecodeRuneInString(s[i:])
		byteAt[k] = i
		k++
		i += w
	}
	byteAt[len(runes)] = len(s)
	m, err := re.FindRunesMatch(runes)
	lastEnd := -1
	for err == nil && m != nil {
		if m.Length > 0 || (empty && m.Index != lastEnd) {
			fn(byteAt[m.Index], byteAt[m.Index+m.Length])
			lastEnd = m.Index + m.Length
		}
		m, err = re.FindNextMatch(m)
	}
}
