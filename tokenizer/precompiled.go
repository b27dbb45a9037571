package tokenizer

import (
	"encoding/binary"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// charsMap is SentencePiece's precompiled normalization map: a little-endian
// uint32 with the trie's size in bytes, the trie (a darts-clone double array
// of uint32 units, keys are UTF-8 byte strings), then the replacement strings,
// each NUL-terminated; a key's value is the offset of its replacement.
type charsMap struct {
	units []uint32
	repl  []byte
}

func parseCharsMap(blob []byte) (*charsMap, error) {
	if len(blob) == 0 {
		return nil, nil // an empty map normalizes nothing
	}
	if len(blob) < 4 {
		return nil, fmt.Errorf("charsmap of %d bytes is shorter than its 4-byte header", len(blob))
	}
	size := binary.LittleEndian.Uint32(blob)
	if size%4 != 0 || uint64(size) > uint64(len(blob)-4) || size == 0 {
		return nil, fmt.Errorf("charsmap trie size %d does not fit the %d bytes after the header (or is not a multiple of 4)", size, len(blob)-4)
	}
	m := &charsMap{units: make([]uint32, size/4), repl: blob[4+size:]}
	for k := range m.units {
		m.units[k] = binary.LittleEndian.Uint32(blob[4+4*k:])
	}
	return m, nil
}

// The fields of a darts-clone unit.
func unitHasLeaf(u uint32) bool  { return u>>8&1 == 1 }
func unitValue(u uint32) uint32  { return u & (1<<31 - 1) }
func unitLabel(u uint32) uint32  { return u & (1<<31 | 0xFF) }
func unitOffset(u uint32) uint32 { return u >> 10 << ((u & (1 << 9)) >> 6) }

// prefixes calls fn with the length and value of every key that is a prefix
// of key, shortest first, until fn returns false. Positions outside the
// array end the search, so a corrupt map cannot index out of range.
func (m *charsMap) prefixes(key string, fn func(n int, value uint32) bool) {
	pos := unitOffset(m.units[0])
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == 0 {
			return
		}
		pos ^= uint32(c)
		if int(pos) >= len(m.units) {
			return
		}
		u := m.units[pos]
		if unitLabel(u) != uint32(c) {
			return
		}
		pos ^= unitOffset(u)
		if unitHasLeaf(u) {
			if int(pos) >= len(m.units) {
				return
			}
			if !fn(i+1, unitValue(m.units[pos])) {
				return
			}
		}
	}
}

// replacement returns the NUL-terminated string at offset v.
func (m *charsMap) replacement(v uint32) (string, bool) {
	if int(v) >= len(m.repl) {
		return "", false
	}
	end := int(v)
	for end < len(m.repl) && m.repl[end] != 0 {
		end++
	}
	return string(m.repl[v:end]), true
}

// shortest is the lookup HF's Precompiled normalizer does: the first
// (shortest) key that prefixes chunk.
func (m *charsMap) shortest(chunk string) (string, bool) {
	var out string
	found := false
	m.prefixes(chunk, func(_ int, v uint32) bool {
		out, found = m.replacement(v)
		return false
	})
	return out, found
}

// longest is SentencePiece's own lookup (normalizer.cc, also llama.cpp's):
// the longest key that prefixes s, and its length.
func (m *charsMap) longest(s string) (string, int) {
	var out string
	n := 0
	m.prefixes(s, func(k int, v uint32) bool {
		if r, ok := m.replacement(v); ok {
			out, n = r, k
		}
		return true
	})
	return out, n
}

// precompiledNormalizer is HF's Precompiled normalizer. HF walks extended
// grapheme clusters: a cluster shorter than 6 bytes is replaced whole when
// a key prefixes it, otherwise each character is looked up on its own.
type precompiledNormalizer struct{ m *charsMap }

func (p precompiledNormalizer) normalize(n nstr) nstr {
	if p.m == nil || n.s == "" {
		return n
	}
	var b *builder
	start := func(i int) {
		if b == nil {
			b = newBuilder(n)
			b.copy(n, 0, i)
		}
	}
	for i := 0; i < len(n.s); {
		j := graphemeEnd(n.s, i)
		if j-i < 6 {
			if r, ok := p.m.shortest(n.s[i:j]); ok {
				start(i)
				b.emit(n, i, j, r)
				i = j
				continue
			}
		}
		for i < j {
			_, w := utf8.DecodeRuneInString(n.s[i:])
			if r, ok := p.m.shortest(n.s[i : i+w]); ok {
				start(i)
				b.emit(n, i, i+w, r)
			} else if b != nil {
				b.copy(n, i, i+w)
			}
			i += w
		}
	}
	if b == nil {
		return n
	}
	return b.done(n)
}

// graphemeEnd returns the end of the extended grapheme cluster starting at
// s[i], following the rules of UAX #29 that matter for normalization: CR LF,
// combining and spacing marks, joiners, emoji modifiers, regional-indicator
// pairs and Hangul syllable sequences.
func graphemeEnd(s string, i int) int {
	r, w := utf8.DecodeRuneInString(s[i:])
	j := i + w
	if r == '\r' {
		if j < len(s) && s[j] == '\n' {
			return j + 1
		}
		return j
	}
	if r < ' ' || r == 0x7F {
		return j // controls stand alone
	}
	prev := r
	riCount := 0
	if isRegional(r) {
		riCount = 1
	}
	for j < len(s) {
		c, cw := utf8.DecodeRuneInString(s[j:])
		switch {
		case isExtend(c) || c == 0x200D:
		case prev == 0x200D && c >= 0x80 && unicode.Is(unicode.So, c):
			// ZWJ emoji sequence (Extended_Pictographic, approximated by So).
		case isRegional(c) && riCount%2 == 1:
			riCount++
		case hangulJoins(prev, c):
		default:
			return j
		}
		prev = c
		j += cw
	}
	return j
}

func isExtend(r rune) bool {
	return r >= 0x300 && (unicode.In(r, unicode.Mn, unicode.Me, unicode.Mc) ||
		r == 0x200C || r >= 0x1F3FB && r <= 0x1F3FF || r >= 0xFE00 && r <= 0xFE0F)
}

func isRegional(r rune) bool { return r >= 0x1F1E6 && r <= 0x1F1FF }

// hangulJoins reports whether Hangul jamo c continues a syllable ending in
// prev (L+L, L+V, L+LV, L+LVT, V/LV + V/T, T/LVT + T).
func hangulJoins(prev, c rune) bool {
	isL := func(r rune) bool { return r >= 0x1100 && r <= 0x115F || r >= 0xA960 && r <= 0xA97C }
	isV := func(r rune) bool { return r >= 0x1160 && r <= 0x11A7 || r >= 0xD7B0 && r <= 0xD7C6 }
	isT := func(r rune) bool { return r >= 0x11A8 && r <= 0x11FF || r >= 0xD7CB && r <= 0xD7FB }
	isSyl := hangulSyllable(prev)
	switch {
	case isL(prev):
		return isL(c) || isV(c) || c >= 0xAC00 && c <= 0xD7A3
	case isV(prev) || isSyl == 1:
		return isV(c) || isT(c)
	case isT(prev) || isSyl == 2:
		return isT(c)
	}
	return false
}

// hangulSyllable classifies a precomposed Hangul syllable: 1 for LV, 2 for LVT, 0 else.
func hangulSyllable(r rune) int {
	if r < 0xAC00 || r > 0xD7A3 {
		return 0
	}
	if (r-0xAC00)%28 == 0 {
		return 1
	}
	return 2
}
