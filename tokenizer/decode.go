package tokenizer

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// decoder is HF's Decoder::decode_chain: tokens in, tokens out.
type decoder interface {
	decodeChain(toks []string) []string
}

type seqDecoder []decoder

func (s seqDecoder) decodeChain(toks []string) []string {
	for _, d := range s {
		toks = d.decodeChain(toks)
	}
	return toks
}

// byteToRune is GPT-2's reversible byte to printable character table.
var byteToRune, runeToByte = func() ([256]rune, map[rune]byte) {
	var b2r [256]rune
	r2b := make(map[rune]byte, 256)
	n := rune(0)
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			b2r[b] = rune(b)
		} else {
			b2r[b] = 256 + n
			n++
		}
		r2b[b2r[b]] = byte(b)
	}
	return b2r, r2b
}()

// byteLevelString maps raw bytes to the byte-level alphabet.
func byteLevelString(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		sb.WriteRune(byteToRune[s[i]])
	}
	return sb.String()
}

// unByteLevel maps a byte-level token back to raw bytes; ok is false when a
// character is outside the alphabet.
func unByteLevel(s string) (string, bool) {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		c, ok := runeToByte[r]
		if !ok {
			return "", false
		}
		b = append(b, c)
	}
	return string(b), true
}

type byteLevelDecoder struct{}

func (byteLevelDecoder) decodeChain(toks []string) []string {
	var b []byte
	for _, t := range toks {
		if raw, ok := unByteLevel(t); ok {
			b = append(b, raw...)
		} else {
			b = append(b, t...) // tokens outside the alphabet pass through
		}
	}
	return []string{lossyUTF8(b)}
}

// lossyUTF8 replaces each maximal invalid subsequence by U+FFFD, as Rust's
// String::from_utf8_lossy (Go's conversions would emit one per byte).
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for i := 0; i < len(b); {
		r, w := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || w > 1 {
			sb.Write(b[i : i+w])
			i += w
			continue
		}
		sb.WriteString("\uFFFD")
		i += invalidLen(b[i:])
	}
	return sb.String()
}

func invalidLen(b []byte) int {
	c := b[0]
	need, lo, hi := 0, byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	k := 1
	for k <= need && k < len(b) {
		x := b[k]
		if k == 1 && (x < lo || x > hi) || k > 1 && (x < 0x80 || x > 0xBF) {
			break
		}
		k++
	}
	return k
}

type byteFallbackDecoder struct{}

func (byteFallbackDecoder) decodeChain(toks []string) []string {
	out := make([]string, 0, len(toks))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, t := range toks {
		if b, ok := byteToken(t); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// byteToken parses "<0xNN>".
func byteToken(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	v, err := strconv.ParseUint(t[3:5], 16, 8)
	if err != nil {
		return 0, false
	}
	return byte(v), true
}

type fuseDecoder struct{}

func (fuseDecoder) decodeChain(toks []string) []string {
	return []string{strings.Join(toks, "")}
}

type stripDecoder struct {
	content     rune
	start, stop int
}

func (d stripDecoder) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for k, t := range toks {
		rs := []rune(t)
		a := 0
		for a < d.start && a < len(rs) && rs[a] == d.content {
			a++
		}
		z := len(rs)
		for n := 0; n < d.stop && z > a && rs[z-1] == d.content; n++ {
			z--
		}
		out[k] = string(rs[a:z])
	}
	return out
}

type replaceDecoder struct {
	literal string
	re      *regexp2.Regexp
	content string
}

func (d replaceDecoder) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for k, t := range toks {
		out[k] = replaceNormalizer{literal: d.literal, re: d.re, content: d.content}.normalize(nstr{s: t}).s
	}
	return out
}

type metaspaceDecoder struct {
	replacement rune
	scheme      prependScheme
}

func (d metaspaceDecoder) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for k, t := range toks {
		var sb strings.Builder
		for _, r := range t {
			if r != d.replacement {
				sb.WriteRune(r)
			} else if k > 0 || d.scheme == prependNever {
				sb.WriteByte(' ')
			}
		}
		out[k] = sb.String()
	}
	return out
}

// bpeSuffixDecoder is HF's BPEDecoder: the end-of-word suffix becomes a space.
type bpeSuffixDecoder struct{ suffix string }

func (d bpeSuffixDecoder) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for k, t := range toks {
		rep := " "
		if k == len(toks)-1 {
			rep = ""
		}
		out[k] = strings.ReplaceAll(t, d.suffix, rep)
	}
	return out
}

// cleanUpTokenization is transformers' clean_up_tokenization.
func cleanUpTokenization(s string) string {
	// transformers chains str.replace calls; each pattern is applied to the
	// result of the previous one, so replay them in order.
	for _, p := range [][2]string{
		{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
		{" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
	} {
		s = strings.ReplaceAll(s, p[0], p[1])
	}
	return s
}
