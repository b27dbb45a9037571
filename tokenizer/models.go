package tokenizer

import (
	"fmt"
	"unicode/utf8"
)

// unigramModel is Hugging Face's Unigram model: the segmentation of a piece
// is the one whose token scores (log probabilities) sum highest, found by
// Viterbi over every vocabulary entry that starts at each character.
type unigramModel struct {
	// prefixes holds every prefix of every token: the token's id when the
	// prefix is itself a token, -1 otherwise. Looking up w[i:j] for growing j
	// stops at the first miss, which is the common-prefix search of HF's trie
	// without building one (map lookups on substrings do not allocate).
	prefixes map[string]int32
	scores   []float64
	unk      int32 // -1 when unk_id is absent
	unkScore float64
	// byteIDs are the <0xNN> tokens used by byte_fallback (-1 if absent).
	byteIDs      [256]int32
	byteFallback bool
	fuseUnk      bool
}

// unkPenalty is what HF and SentencePiece subtract from the lowest score to
// score a character no token covers: unknown text is always the worst
// choice, yet a path through it still exists.
const unkPenalty = 10.0

func newUnigram(pieces []string, scores []float64, unk int, byteFallback bool) (*unigramModel, error) {
	if len(pieces) == 0 {
		return nil, fmt.Errorf("empty vocabulary")
	}
	if unk >= len(pieces) {
		return nil, fmt.Errorf("unk_id %d is outside the vocabulary of %d tokens", unk, len(pieces))
	}
	m := &unigramModel{
		prefixes:     make(map[string]int32, 2*len(pieces)),
		scores:       scores,
		unk:          int32(unk),
		byteFallback: byteFallback,
		fuseUnk:      true, // HF's Unigram always fuses consecutive unknowns
	}
	minScore := scores[0]
	for id, p := range pieces {
		minScore = min(minScore, scores[id])
		if p == "" {
			continue
		}
		// A duplicated piece keeps its last id, as HF's token_to_ids (filled
		// in order, each insert overwriting the previous one).
		m.prefixes[p] = int32(id)
		for k := 1; k < len(p); k++ {
			if _, ok := m.prefixes[p[:k]]; !ok {
				m.prefixes[p[:k]] = -1
			}
		}
	}
	m.unkScore = minScore - unkPenalty
	for b := range 256 {
		m.byteIDs[b] = -1
		if id, ok := m.prefixes[fmt.Sprintf("<0x%02X>", b)]; ok && id >= 0 {
			m.byteIDs[b] = id
		}
	}
	return m, nil
}

type viterbiNode struct {
	score float64
	start int32 // -1: not reached yet
	id    int32
}

func (m *unigramModel) tokenize(w string, dst []tok, _ *wordCache) []tok {
	if w == "" {
		return dst
	}
	best := make([]viterbiNode, len(w)+1)
	for k := range best {
		best[k].start = -1
	}
	best[0].start = 0
	relax := func(from, to int, id int32, score float64) {
		n := &best[to]
		if s := best[from].score + score; n.start < 0 || s > n.score {
			*n = viterbiNode{score: s, start: int32(from), id: id}
		}
	}
	for i := 0; i < len(w); {
		_, cw := utf8.DecodeRuneInString(w[i:])
		single := false
		for j := i + 1; j <= len(w); j++ {
			id, ok := m.prefixes[w[i:j]]
			if !ok {
				break
			}
			if id < 0 {
				continue
			}
			relax(i, j, id, m.scores[id])
			single = single || j-i == cw
		}
		if !single {
			// Without a one-character token the unknown character keeps
			// the lattice connected. HF errors here when there is no unk
			// id; we keep the path and drop the character later.
			relax(i, i+cw, m.unk, m.unkScore)
		}
		i += cw
	}
	// Walk back from the end; runs of unknowns become one piece (HF's
	// fuse_unk compares ids, so a literal unk token in the text fuses too).
	var path []tok
	for j := len(w); j > 0; {
		n := best[j]
		i := int(n.start)
		if m.fuseUnk && m.unk >= 0 && n.id == m.unk && len(path) > 0 && path[len(path)-1].id == m.unk {
			path[len(path)-1].i = int32(i)
		} else {
			path = append(path, tok{id: n.id, i: int32(i), j: int32(j)})
		}
		j = i
	}
	for k := len(path) - 1; k >= 0; k-- {
		t := path[k]
		if t.id != m.unk {
			dst = append(dst, t)
			continue
		}
		piece := w[t.i:t.j]
		if id, ok := m.prefixes[piece]; ok && id >= 0 {
			dst = append(dst, tok{id: id, i: t.i, j: t.j})
			continue
		}
		// A piece outside the vocabulary becomes the <0xNN> tokens of its
		// bytes when all exist (each keeping the whole piece's range, as
		// HF), else unk. HF fails the encode when there is no unk id; the
		// piece is dropped here instead, Encode having no error to return.
		if m.byteFallback && m.hasBytes(piece) {
			for b := 0; b < len(piece); b++ {
				dst = append(dst, tok{id: m.byteIDs[piece[b]], i: t.i, j: t.j})
			}
			continue
		}
		if t.id >= 0 {
			dst = append(dst, t)
		}
	}
	return dst
}

func (m *unigramModel) hasBytes(s string) bool {
	for k := 0; k < len(s); k++ {
		if m.byteIDs[s[k]] < 0 {
			return false
		}
	}
	return s != ""
}

// wordPieceModel is BERT's WordPiece: greedy longest match from the left,
// later pieces looked up with the continuing-subword prefix; a word that
// cannot be covered, or is longer than maxChars characters, is one unk.
type wordPieceModel struct {
	vocab    map[string]int32
	prefix   string
	maxChars int
	unk      int32 // -1 when unk_token is not in the vocabulary
}

func (m *wordPieceModel) tokenize(w string, dst []tok, _ *wordCache) []tok {
	if w == "" {
		return dst
	}
	unk := func(dst []tok) []tok {
		// HF fails the encode when unk_token is missing; the word is
		// dropped here instead, Encode having no error to return.
		if m.unk < 0 {
			return dst
		}
		return append(dst, tok{id: m.unk, i: 0, j: int32(len(w))})
	}
	if utf8.RuneCountInString(w) > m.maxChars {
		return unk(dst)
	}
	start := len(dst)
	var buf []byte
	for i := 0; i < len(w); {
		found := false
		for j := len(w); j > i; {
			var id int32
			var ok bool
			if i == 0 {
				id, ok = m.vocab[w[:j]]
			} else {
				buf = append(append(buf[:0], m.prefix...), w[i:j]...)
				id, ok = m.vocab[string(buf)] // no allocation for a map key
			}
			if ok {
				dst = append(dst, tok{id: id, i: int32(i), j: int32(j)})
				i, found = j, true
				break
			}
			_, cw := utf8.DecodeLastRuneInString(w[i:j])
			j -= cw
		}
		if !found {
			return unk(dst[:start])
		}
	}
	return dst
}

// wordLevelModel maps each whole piece to its id, or to unk.
type wordLevelModel struct {
	vocab map[string]int32
	unk   int32 // -1 when unk_token is not in the vocabulary
}

func (m *wordLevelModel) tokenize(w string, dst []tok, _ *wordCache) []tok {
	if w == "" {
		return dst
	}
	if id, ok := m.vocab[w]; ok {
		return append(dst, tok{id: id, i: 0, j: int32(len(w))})
	}
	if m.unk >= 0 {
		return append(dst, tok{id: m.unk, i: 0, j: int32(len(w))})
	}
	return dst
}
