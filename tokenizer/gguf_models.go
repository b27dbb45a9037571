package tokenizer

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// wpmModel is llama.cpp's WordPiece for GGUF "bert" vocabularies. The
// converter stores word-initial pieces with a leading "▁" and drops the "##"
// of continuations, so a word is "▁"+word matched greedily, longest piece
// first, against the whole vocabulary; a word with an unmatched position is
// one unk token.
type wpmModel struct {
	vocab  map[string]int32
	maxLen int // bytes of the longest token
	unk    int32
}

const phantomSpace = "▁"

func (m *wpmModel) tokenize(w string, dst []tok, _ *wordCache) []tok {
	if w == "" {
		return dst
	}
	word := phantomSpace + w
	// at maps a byte of word to its offset in w (the phantom space to 0).
	at := func(i int) int32 { return int32(max(i-len(phantomSpace), 0)) }
	start := len(dst)
	for i := 0; i < len(word); {
		matched := false
		for j := min(len(word), i+m.maxLen+1); j > i; j-- {
			if id, ok := m.vocab[word[i:j]]; ok {
				dst = append(dst, tok{id: id, i: at(i), j: at(j)})
				i, matched = j, true
				break
			}
		}
		if !matched {
			dst = dst[:start]
			break
		}
	}
	if len(dst) == start && m.unk >= 0 {
		dst = append(dst, tok{id: m.unk, i: 0, j: int32(len(w))})
	}
	return dst
}

// wpmNormalizer is llama.cpp's WordPiece preprocessing before the split:
// NFD, controls, NUL and U+FFFD dropped, simple lowercase per character.
func wpmNormalizer() normalizer {
	return seqNormalizer{unicodeNormalizer{norm.NFD}, charMapper(func(r rune) (string, bool) {
		if isSpaceRune(r) {
			return "", false
		}
		if r == 0 || r == utf8.RuneError || isBertControl(r) {
			return "", true
		}
		if l := unicode.ToLower(r); l != r {
			return string(l), true
		}
		return "", false
	})}
}

// charMapper is a normalizer from a per-character mapping (see mapRunes).
type charMapper func(r rune) (string, bool)

func (f charMapper) normalize(n nstr) nstr { return mapRunes(n, f) }

// wpmPreTokenizer splits at whitespace (dropped) and makes every punctuation
// character, ASCII symbol and CJK ideograph a word of its own.
func wpmPreTokenizer() preTokenizer {
	return seqPreTokenizer{
		splitPreTokenizer{m: runeMatcher(isSpaceRune), behavior: removed},
		splitPreTokenizer{m: runeMatcher(func(r rune) bool {
			return unicode.IsPunct(r) || r < 0x7F && unicode.IsSymbol(r) || isCJK(r)
		}), behavior: isolated},
	}
}

func (v *ggufVocab) buildWPM(t *Tokenizer, vocab map[string]int) {
	m := &wpmModel{vocab: make(map[string]int32, len(vocab)), unk: -1}
	for s, id := range vocab {
		m.vocab[s] = int32(id)
		m.maxLen = max(m.maxLen, len(s))
	}
	if v.unk >= 0 && v.unk < len(v.tokens) {
		m.unk = int32(v.unk)
	}
	t.model, t.normalizer, t.pre = m, wpmNormalizer(), wpmPreTokenizer()
	t.dec = seqDecoder{replaceDecoder{literal: phantomSpace, content: " "}, fuseDecoder{}, stripDecoder{content: ' ', start: 1}}
}

// ugmNormalizer is llama.cpp's (and SentencePiece's) normalization for
// Unigram "t5" vocabularies: the longest charsmap key at each position is
// replaced (else the character is kept, an invalid byte becomes U+FFFD);
// spaces become "▁" (escape_whitespaces), one is put in front of the text
// (add_space_prefix), and with remove_extra_whitespaces runs of spaces
// collapse to one in front of each word, leading and trailing ones dropped.
type ugmNormalizer struct {
	cm                     *charsMap
	space                  string
	prepend, merge, suffix bool
}

func (u ugmNormalizer) normalize(n nstr) nstr {
	b := newBuilder(n)
	nonSpace, prepended := false, false
	var out []byte
	for i := 0; i < len(n.s); {
		var repl string
		consumed := 0
		if u.cm != nil {
			repl, consumed = u.cm.longest(n.s[i:])
		}
		if consumed == 0 {
			r, w := utf8.DecodeRuneInString(n.s[i:])
			if r == utf8.RuneError && w == 1 {
				repl = "\uFFFD"
			} else {
				repl = n.s[i : i+w]
			}
			consumed = w
		}
		out = out[:0]
		for k := 0; k < len(repl); k++ {
			c := repl[k]
			if c != ' ' {
				if !nonSpace {
					nonSpace = true
					if u.prepend && !prepended || u.merge {
						out = append(out, u.space...)
						prepended = true
					}
				}
				out = append(out, c)
				continue
			}
			nonSpace = false
			if !u.merge {
				out = append(out, u.space...)
			}
		}
		b.emit(n, i, i+consumed, string(out))
		i += consumed
	}
	if u.suffix {
		b.emit(n, len(n.s), len(n.s), u.space)
	}
	return b.done(n)
}

func (v *ggufVocab) buildUGM(t *Tokenizer) error {
	if len(v.scores) != len(v.tokens) {
		return v.errf("tokenizer.ggml.scores", "%d scores for %d tokens", len(v.scores), len(v.tokens))
	}
	cm, err := parseCharsMap(v.charsmap)
	if err != nil {
		return v.errf("tokenizer.ggml.precompiled_charsmap", "%v", err)
	}
	// Only normal, user-defined and unused tokens are matched in text;
	// user-defined ones score 0 so they win, and an unknown character
	// scores 10 below the lowest normal token.
	pieces := make([]string, len(v.tokens))
	scores := make([]float64, len(v.tokens))
	minScore := 0.0
	seen := false
	for id, s := range v.tokens {
		typ := int64(ggmlNormal)
		if v.types != nil {
			typ = v.types[id]
		}
		switch typ {
		case ggmlNormal:
			pieces[id], scores[id] = s, float64(v.scores[id])
			if !seen || scores[id] < minScore {
				minScore, seen = scores[id], true
			}
		case ggmlUserDefined:
			pieces[id] = s
		case ggmlUnused:
			pieces[id], scores[id] = s, float64(v.scores[id])
		}
	}
	unk := -1
	if v.unk >= 0 && v.unk < len(v.tokens) {
		unk = v.unk
	}
	m, err := newUnigram(pieces, scores, unk, false)
	if err != nil {
		return v.errf("tokenizer.ggml.tokens", "%v", err)
	}
	m.unkScore = minScore - unkPenalty
	t.model = m
	t.normalizer = ugmNormalizer{cm: cm, space: phantomSpace, prepend: v.addSpacePrefix, merge: v.removeExtraSpaces}
	t.dec = seqDecoder{replaceDecoder{literal: phantomSpace, content: " "}, fuseDecoder{}}
	if v.addSpacePrefix {
		t.dec = append(t.dec.(seqDecoder), stripDecoder{content: ' ', start: 1})
	}
	return nil
}
