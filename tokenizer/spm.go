package tokenizer

import (
	"sync"
	"unicode/utf8"
)

// spmModel is llama.cpp's SentencePiece tokenizer for GGUF "llama"
// vocabularies: start from characters and repeatedly merge the adjacent pair
// whose concatenation is the vocabulary entry with the highest score
// (leftmost on ties). Characters that no token covers become <0xNN> tokens.
type spmModel struct {
	vocab   map[string]int32
	scores  []float32
	byteIDs [256]int32
	unk     int32

	joinsOnce sync.Once
	joins     *joinSet // built on the first long piece
}

// canSegment is true for every vocabulary: segments are cut at character
// boundaries only where the text is valid UTF-8 (see forSegments).
func (m *spmModel) canSegment() bool { return true }

// forSegments cuts valid UTF-8 only: llama.cpp takes a character's length
// from its lead byte alone, so around invalid bytes its characters are not
// Go's, and such a piece is left whole.
func (m *spmModel) forSegments(w string, fn func(i, j int)) {
	if !utf8.ValidString(w) {
		fn(0, len(w))
		return
	}
	m.joinsOnce.Do(func() { m.joins = newJoinSet(m.vocab) })
	m.joins.forSegments(w, m.vocab, fn)
}

type spmSym struct {
	i, n       int32 // start and length in bytes; n == 0 once merged away
	prev, next int32
}

type bigram struct {
	left, right int32
	score       float32
	size        int32
}

// better orders the queue: higher score first, then the leftmost pair.
func (a bigram) better(b bigram) bool {
	return a.score > b.score || a.score == b.score && a.left < b.left
}

type bigramHeap []bigram

func (h *bigramHeap) push(e bigram) {
	*h = append(*h, e)
	q := *h
	for k := len(q) - 1; k > 0; {
		p := (k - 1) / 2
		if !q[k].better(q[p]) {
			break
		}
		q[k], q[p] = q[p], q[k]
		k = p
	}
}

func (h *bigramHeap) pop() bigram {
	q := *h
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q = q[:last]
	for k := 0; ; {
		l := 2*k + 1
		if l >= len(q) {
			break
		}
		c := l
		if r := l + 1; r < len(q) && q[r].better(q[l]) {
			c = r
		}
		if !q[c].better(q[k]) {
			break
		}
		q[k], q[c] = q[c], q[k]
		k = c
	}
	*h = q
	return top
}

// utf8Len is llama.cpp's character length from the lead byte alone (it does
// not validate the continuation bytes).
func utf8Len(b byte) int {
	return [16]int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4}[b>>4]
}

func (m *spmModel) tokenize(w string, dst []tok, c *wordCache) []tok {
	if c == nil || len(w) > maxCachedWord {
		return m.merge(w, dst)
	}
	if v, ok := c.get(w); ok {
		return append(dst, v...)
	}
	start := len(dst)
	dst = m.merge(w, dst)
	c.put(w, dst[start:])
	return dst
}

func (m *spmModel) merge(w string, dst []tok) []tok {
	var syms []spmSym
	for i := 0; i < len(w); {
		n := min(utf8Len(w[i]), len(w)-i)
		syms = append(syms, spmSym{i: int32(i), n: int32(n), prev: int32(len(syms) - 1), next: int32(len(syms) + 1)})
		i += n
	}
	if len(syms) == 0 {
		return dst
	}
	syms[len(syms)-1].next = -1
	var h bigramHeap
	try := func(l, r int32) {
		if l < 0 || r < 0 {
			return
		}
		a, b := syms[l], syms[r]
		text := w[a.i : b.i+b.n]
		id, ok := m.vocab[text]
		if !ok || int(id) >= len(m.scores) {
			return
		}
		h.push(bigram{left: l, right: r, score: m.scores[id], size: int32(len(text))})
	}
	for k := 1; k < len(syms); k++ {
		try(int32(k-1), int32(k))
	}
	for len(h) > 0 {
		b := h.pop()
		l, r := &syms[b.left], &syms[b.right]
		if l.n == 0 || r.n == 0 || l.n+r.n != b.size {
			continue
		}
		l.n += r.n
		r.n = 0
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = b.left
		}
		try(l.prev, b.left)
		try(b.left, l.next)
	}
	for k := int32(0); k >= 0; k = syms[k].next {
		s := syms[k]
		if id, ok := m.vocab[w[s.i:s.i+s.n]]; ok {
			dst = append(dst, tok{id, s.i, s.i + s.n})
			continue
		}
		for p := s.i; p < s.i+s.n; p++ {
			id := m.byteIDs[w[p]]
			if id < 0 {
				id = m.unk
			}
			if id >= 0 {
				dst = append(dst, tok{id, p, p + 1})
			}
		}
	}
	return dst
}
