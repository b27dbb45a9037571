package tokenizer

import "unicode/utf8"

// Long pieces (SentencePiece-style models have no pre-tokenizer, so a whole
// text is one piece) are cut where no merge can ever join the two sides:
// between characters x and y that both are tokens on their own and never
// occur as "xy" inside any token. Every merge result is a vocabulary token,
// so no symbol can span such a boundary, and since merges on one side never
// change the pairs on the other, merging the parts (by rank or by score,
// leftmost first) gives exactly the tokens of merging the whole. The parts
// are word-sized, so they hit the word cache and the merge heap stays small.
const segmentMin = 64

// segmenter is a model that can cut long pieces (see segmentMin).
type segmenter interface {
	canSegment() bool
	forSegments(w string, fn func(i, j int))
}

// joinSet holds the character pairs that occur inside some token, with an
// array for ASCII pairs (most boundaries) and a hash table for the rest.
type joinSet struct {
	ascii       [128 * 128 / 64]uint64
	other       *pairTable // keyed by the two characters
	asciiSingle [128]bool  // ASCII characters that are tokens on their own
	// bmpSingle marks the other characters below U+10000 that are tokens
	// on their own (a bitset: one map lookup per character would dominate).
	bmpSingle [0x10000 / 64]uint64
}

func newJoinSet(vocab map[string]int32) *joinSet {
	pairs := 0
	for s := range vocab {
		pairs += len(s)
	}
	j := &joinSet{other: newPairTable(pairs)}
	for s := range vocab {
		prev := rune(-1)
		for _, r := range s {
			if prev >= 0 {
				if prev < utf8.RuneSelf && r < utf8.RuneSelf {
					k := prev<<7 | r
					j.ascii[k>>6] |= 1 << (k & 63)
				} else {
					j.other.put(prev, r, mergeVal{})
				}
			}
			prev = r
		}
		if r, n := utf8.DecodeRuneInString(s); n == len(s) && n > 0 && !(r == utf8.RuneError && n == 1) {
			if r < utf8.RuneSelf {
				j.asciiSingle[r] = true
			} else if r < 0x10000 {
				j.bmpSingle[r>>6] |= 1 << (r & 63)
			}
		}
	}
	return j
}

func (j *joinSet) has(a, b rune) bool {
	if a < utf8.RuneSelf && b < utf8.RuneSelf {
		k := a<<7 | b
		return j.ascii[k>>6]&(1<<(k&63)) != 0
	}
	_, ok := j.other.get(a, b)
	return ok
}

// single reports whether the character r (the bytes s) is a token alone.
func (j *joinSet) single(r rune, s string, vocab map[string]int32) bool {
	if r == utf8.RuneError && len(s) == 1 {
		return false
	}
	if r < 0x10000 {
		return j.bmpSingle[r>>6]&(1<<(r&63)) != 0
	}
	_, ok := vocab[s]
	return ok
}

// forSegments calls fn with the byte ranges of w's parts, in order.
func (j *joinSet) forSegments(w string, vocab map[string]int32, fn func(i, j int)) {
	start := 0
	prev, prevKnown := rune(-1), false
	for i := 0; i < len(w); {
		r, n := rune(w[i]), 1
		var known bool
		if r < utf8.RuneSelf {
			known = j.asciiSingle[r]
		} else {
			r, n = utf8.DecodeRuneInString(w[i:])
			// Characters that fall back to bytes or unk are never cut
			// around: merges of those tokens are not visible as text.
			known = j.single(r, w[i:i+n], vocab)
		}
		if i > start && prevKnown && known && !j.has(prev, r) {
			fn(start, i)
			start = i
		}
		prev, prevKnown = r, known
		i += n
	}
	if start < len(w) {
		fn(start, len(w))
	}
}
