package tokenizer

import (
	"strings"
	"sync"
	"unicode/utf8"
)

// tok is one model token with its byte range inside the pre-tokenized piece.
type tok struct {
	id   int32
	i, j int32
}

// model turns one pre-tokenized piece into tokens.
type model interface {
	tokenize(w string, dst []tok, c *wordCache) []tok
}

type mergeVal struct{ rank, id int32 }

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// bpeModel is Hugging Face's BPE model. In byte-level mode it works on raw
// bytes: vocab is keyed by the bytes a token stands for, so pieces never need
// to be rewritten into the byte-to-unicode alphabet.
type bpeModel struct {
	vocab        map[string]int32
	merges       *pairTable
	byteLevel    bool
	byteIDs      [256]int32 // byte-level: the token of each single byte, -1 if none
	fallbackIDs  [256]int32 // byte_fallback: the <0xNN> tokens, -1 if absent
	byteFallback bool
	unk          int32 // -1 when there is no unk token
	fuseUnk      bool
	ignoreMerges bool
	// wholeNewlines: a word made only of "\n" that is a token is taken
	// whole (llama.cpp's Gemma 4 vocabularies).
	wholeNewlines bool
	prefix        string // continuing_subword_prefix
	suffix        string // end_of_word_suffix

	joinsOnce sync.Once
	joins     *joinSet // built on the first long word
}

// Words longer than this are not cached: they are rare and would pin memory.
const maxCachedWord = 256

func (m *bpeModel) tokenize(w string, dst []tok, c *wordCache) []tok {
	if w == "" {
		return dst
	}
	if m.ignoreMerges || m.wholeNewlines && strings.Trim(w, "\n") == "" {
		if id, ok := m.vocab[w]; ok {
			return append(dst, tok{id, 0, int32(len(w))})
		}
	}
	if c != nil {
		if v, ok := c.get(w); ok {
			return append(dst, v...)
		}
	}
	start := len(dst)
	dst = m.merge(w, dst, c)
	if c != nil && len(w) <= maxCachedWord {
		c.put(w, dst[start:])
	}
	return dst
}

type symbol struct {
	id         int32
	i, j       int32 // byte range in the word
	prev, next int32
}

// initial splits the word into characters (bytes in byte-level mode) and
// resolves them to ids, applying byte fallback and unk as HF does.
func (m *bpeModel) initial(w string, syms []symbol) []symbol {
	pendingUnk := -1 // index into syms of an unk that may still fuse
	if m.byteLevel {
		for i := 0; i < len(w); i++ {
			if id := m.byteIDs[w[i]]; id >= 0 {
				pendingUnk = -1
				syms = append(syms, symbol{id: id, i: int32(i), j: int32(i + 1)})
			} else {
				syms, pendingUnk = m.unknown(syms, pendingUnk, i, i+1)
			}
		}
		return syms
	}
	for i := 0; i < len(w); {
		_, n := utf8.DecodeRuneInString(w[i:])
		s := w[i : i+n]
		if m.prefix != "" && i > 0 {
			s = m.prefix + s
		}
		if m.suffix != "" && i+n == len(w) {
			s += m.suffix
		}
		if id, ok := m.vocab[s]; ok {
			pendingUnk = -1
			syms = append(syms, symbol{id: id, i: int32(i), j: int32(i + n)})
		} else if m.byteFallback && m.hasFallback(s) {
			pendingUnk = -1
			for k := 0; k < len(s); k++ {
				// HF gives each byte token a one-byte range.
				p := min(i+k, i+n-1)
				syms = append(syms, symbol{id: m.fallbackIDs[s[k]], i: int32(p), j: int32(p + 1)})
			}
		} else {
			syms, pendingUnk = m.unknown(syms, pendingUnk, i, i+n)
		}
		i += n
	}
	return syms
}

// unknown handles a character missing from the vocabulary: the unk token,
// fused with a preceding unk when fuse_unk is set, or nothing at all when
// there is no unk token (HF drops the character then).
func (m *bpeModel) unknown(syms []symbol, pending, i, j int) ([]symbol, int) {
	if m.unk < 0 {
		return syms, pending
	}
	if m.fuseUnk && pending >= 0 {
		syms[pending].j = int32(j)
		return syms, pending
	}
	return append(syms, symbol{id: m.unk, i: int32(i), j: int32(j)}), len(syms)
}

func (m *bpeModel) hasFallback(s string) bool {
	for k := 0; k < len(s); k++ {
		if m.fallbackIDs[s[k]] < 0 {
			return false
		}
	}
	return true
}

type mergeEntry struct{ rank, pos, id int32 }

func (a mergeEntry) less(b mergeEntry) bool {
	return a.rank < b.rank || a.rank == b.rank && a.pos < b.pos
}

// mergeHeap is a typed 4-ary min-heap (as HF's QuaternaryHeap): shallower
// than a binary heap, and container/heap's interface calls would cost more
// than the merges themselves on short words.
type mergeHeap []mergeEntry

func (h *mergeHeap) push(e mergeEntry) {
	*h = append(*h, e)
	q := *h
	k := len(q) - 1
	for k > 0 {
		p := (k - 1) / 4
		if !e.less(q[p]) {
			break
		}
		q[k] = q[p]
		k = p
	}
	q[k] = e
}

func (h *mergeHeap) pop() mergeEntry {
	q := *h
	top := q[0]
	last := len(q) - 1
	e := q[last]
	q = q[:last]
	n := len(q)
	k := 0
	for {
		c := 4*k + 1
		if c >= n {
			break
		}
		best := c
		for d := c + 1; d < c+4 && d < n; d++ {
			if q[d].less(q[best]) {
				best = d
			}
		}
		if !q[best].less(e) {
			break
		}
		q[k] = q[best]
		k = best
	}
	if n > 0 {
		q[k] = e
	}
	*h = q
	return top
}

// merge applies the merges lowest rank first (leftmost on ties), with the
// same stale-entry rule as HF's Word::merge_all.
func (m *bpeModel) merge(w string, dst []tok, c *wordCache) []tok {
	var sc scratch
	if c != nil {
		sc = c.scratch
	}
	syms := m.initial(w, sc.syms[:0])
	n := len(syms)
	for k := range syms {
		syms[k].prev = int32(k - 1)
		syms[k].next = int32(k + 1)
	}
	if n > 0 {
		syms[n-1].next = -1
	}
	h := sc.heap[:0]
	for k := 0; k+1 < n; k++ {
		if v, ok := m.merges.get(syms[k].id, syms[k+1].id); ok {
			h.push(mergeEntry{v.rank, int32(k), v.id})
		}
	}
	for len(h) > 0 {
		e := h.pop()
		s := &syms[e.pos]
		if s.j == s.i || s.next < 0 { // removed, or nothing to the right
			continue
		}
		r := &syms[s.next]
		if v, ok := m.merges.get(s.id, r.id); !ok || v.id != e.id {
			continue
		}
		s.id = e.id
		s.j = r.j
		r.j = r.i // mark removed
		s.next = r.next
		if s.next >= 0 {
			syms[s.next].prev = e.pos
			if v, ok := m.merges.get(s.id, syms[s.next].id); ok {
				h.push(mergeEntry{v.rank, e.pos, v.id})
			}
		}
		if s.prev >= 0 {
			p := &syms[s.prev]
			if v, ok := m.merges.get(p.id, s.id); ok {
				h.push(mergeEntry{v.rank, s.prev, v.id})
			}
		}
	}
	for k := 0; k >= 0 && k < n; k = int(syms[k].next) {
		s := syms[k]
		dst = append(dst, tok{s.id, s.i, s.j})
	}
	if c != nil && len(syms) <= 4096 {
		c.scratch = scratch{syms: syms, heap: h}
	}
	return dst
}

// scratch holds merge buffers reused across words.
type scratch struct {
	syms []symbol
	heap mergeHeap
}

// wordCache maps words to their tokens. It keeps two generations: when the
// current one is full it becomes the old one and the older is dropped, so
// memory is bounded while frequently used words survive (an LRU
// approximation without per-hit bookkeeping). A cache is used by one
// goroutine at a time (the model hands them out through a sync.Pool).
type wordCache struct {
	cur, old map[string][]tok
	scratch  scratch
}

const cacheGeneration = 16384

func newWordCache() *wordCache {
	return &wordCache{cur: make(map[string][]tok, 1024)}
}

func (c *wordCache) get(w string) ([]tok, bool) {
	if v, ok := c.cur[w]; ok {
		return v, true
	}
	if v, ok := c.old[w]; ok {
		c.put(w, v)
		return v, true
	}
	return nil, false
}

func (c *wordCache) put(w string, v []tok) {
	if len(c.cur) >= cacheGeneration {
		c.old, c.cur = c.cur, make(map[string][]tok, 1024)
	}
	c.cur[strings.Clone(w)] = append([]tok(nil), v...)
}

func (m *bpeModel) canSegment() bool {
	// Byte-level pieces come pre-tokenized; a prefix or suffix depends on
	// the position in the word, and ignore_merges on the whole word.
	return !m.byteLevel && !m.ignoreMerges && m.prefix == "" && m.suffix == ""
}

func (m *bpeModel) forSegments(w string, fn func(i, j int)) {
	m.joinsOnce.Do(func() { m.joins = newJoinSet(m.vocab) })
	m.joins.forSegments(w, m.vocab, fn)
}

func (m *bpeModel) tokenizeSegments(w string, dst []tok, c *wordCache) []tok {
	m.forSegments(w, func(i, j int) { dst = m.segment(w[i:j], i, dst, c) })
	return dst
}

// segment tokenizes w[off:off+len(s)] through the cache and shifts the
// token ranges to the whole piece.
func (m *bpeModel) segment(s string, off int, dst []tok, c *wordCache) []tok {
	k := len(dst)
	switch {
	case c == nil:
		dst = m.merge(s, dst, nil)
	default:
		if v, ok := c.get(s); ok {
			dst = append(dst, v...)
			break
		}
		dst = m.merge(s, dst, c)
		if len(s) <= maxCachedWord {
			c.put(s, dst[k:])
		}
	}
	for x := k; x < len(dst); x++ {
		dst[x].i += int32(off)
		dst[x].j += int32(off)
	}
	return dst
}
