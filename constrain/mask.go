package constrain

import (
	"bytes"
	"fmt"
	"math"
	"sort"
)

// Vocab is a tokenizer's tokens as the bytes each adds to the output,
// sorted, so that tokens sharing a prefix are walked from the state that
// prefix reaches instead of from the start (a trie walk without a trie).
// Build it once per tokenizer: it costs a pass over the vocabulary.
type Vocab struct {
	size int
	ids  []int32  // token ids in byte order
	toks [][]byte // their bytes
	lcp  []int32  // bytes toks[i] shares with toks[i-1]
	max  int      // longest token
	byID [][]byte // bytes by token id; nil: never allowed
}

// NewVocab builds the table for ids 0..size-1; tokenBytes returns the bytes
// a token adds, or false for tokens that may never be chosen under a
// constraint (special tokens, tokens with no text).
func NewVocab(size int, tokenBytes func(id int) ([]byte, bool)) *Vocab {
	v := &Vocab{size: size}
	for id := 0; id < size; id++ {
		b, ok := tokenBytes(id)
		if !ok || len(b) == 0 {
			continue
		}
		v.ids = append(v.ids, int32(id))
		v.toks = append(v.toks, b)
	}
	sort.Sort(byBytes{v})
	v.lcp = make([]int32, len(v.toks))
	for i := 1; i < len(v.toks); i++ {
		a, b := v.toks[i-1], v.toks[i]
		k := 0
		for k < len(a) && k < len(b) && a[k] == b[k] {
			k++
		}
		v.lcp[i] = int32(k)
	}
	v.byID = make([][]byte, size)
	for i, t := range v.toks {
		v.max = max(v.max, len(t))
		v.byID[v.ids[i]] = t
	}
	return v
}

// Size is the number of token ids the vocabulary covers.
func (v *Vocab) Size() int { return v.size }

type byBytes struct{ v *Vocab }

func (s byBytes) Len() int           { return len(s.v.ids) }
func (s byBytes) Less(i, j int) bool { return bytes.Compare(s.v.toks[i], s.v.toks[j]) < 0 }
func (s byBytes) Swap(i, j int) {
	s.v.ids[i], s.v.ids[j] = s.v.ids[j], s.v.ids[i]
	s.v.toks[i], s.v.toks[j] = s.v.toks[j], s.v.toks[i]
}

// Matcher follows one generation through a grammar and masks the logits of
// tokens that would leave it. Not safe for concurrent use.
type Matcher struct {
	g     *Grammar
	v     *Vocab
	state State
	stops []int32
	cache map[string][]uint64
	key   []byte
	// per-depth buffers of the walk over the vocabulary
	stack [][]*frame
}

// maxCache bounds the masks kept per generation (each is vocab/8 bytes).
const maxCache = 256

// NewMatcher starts a generation under g. stops are the ids that end the
// generation: allowed exactly when the output is complete.
func NewMatcher(g *Grammar, v *Vocab, stops []int32) *Matcher {
	m := &Matcher{g: g, v: v, state: g.Start(), stops: stops, cache: map[string][]uint64{}}
	m.stack = make([][]*frame, v.max+1)
	return m
}

// Complete reports whether the output may end here.
func (m *Matcher) Complete() bool { return m.state.Complete() }

// Final reports whether the output is complete and nothing may follow: the
// generation is over.
func (m *Matcher) Final() bool { return m.state.Final() }

// Allowed returns the tokens that may come next, as a bitset over ids
// (stop ids excluded). The result is shared: do not modify it.
func (m *Matcher) Allowed() []uint64 {
	m.key = m.state.key(m.key[:0])
	if a, ok := m.cache[string(m.key)]; ok {
		return a
	}
	a := m.walk()
	if len(m.cache) >= maxCache {
		clear(m.cache)
	}
	m.cache[string(m.key)] = a
	return a
}

func (m *Matcher) walk() []uint64 {
	v := m.v
	mask := make([]uint64, (v.size+63)/64)
	m.stack[0] = m.state.alts
	dead := math.MaxInt32 // the previous token's prefix of this length is dead
	for i, tok := range v.toks {
		l := int(v.lcp[i])
		if dead <= l {
			continue // shares the dead prefix
		}
		dead = math.MaxInt32
		for d := l; d < len(tok); d++ {
			next := stepAll(m.stack[d], tok[d], m.stack[d+1][:0])
			m.stack[d+1] = next
			if len(next) == 0 {
				dead = d + 1
				break
			}
		}
		if dead == math.MaxInt32 {
			id := v.ids[i]
			mask[id/64] |= 1 << (id % 64)
		}
	}
	return mask
}

// Mask sets the logits of every token that may not come next to -Inf. It
// fails when no token may: the grammar cannot be continued with this
// vocabulary.
func (m *Matcher) Mask(logits []float32) error {
	allowed := m.Allowed()
	complete := m.state.Complete()
	// Stop ids are decided by completeness alone, whatever bytes they have.
	saved := make([]float32, len(m.stops))
	for i, id := range m.stops {
		if int(id) < len(logits) {
			saved[i] = logits[id]
		}
	}
	any := false
	inf := float32(math.Inf(-1))
	for id := range logits {
		if id < m.v.size && allowed[id/64]&(1<<(id%64)) != 0 {
			any = true
			continue
		}
		logits[id] = inf
	}
	for i, id := range m.stops {
		if int(id) >= len(logits) {
			continue
		}
		if complete {
			logits[id] = saved[i]
			any = true
		} else {
			logits[id] = inf
		}
	}
	if !any {
		return fmt.Errorf("constrained decoding: no token of the vocabulary can continue the output")
	}
	return nil
}

// Accept advances past the chosen token.
func (m *Matcher) Accept(id int32) error {
	var b []byte
	if id >= 0 && int(id) < len(m.v.byID) {
		b = m.v.byID[id]
	}
	if b == nil {
		return fmt.Errorf("constrained decoding: token %d has no text the grammar can take", id)
	}
	s := m.state.StepBytes(b)
	if s.Dead() {
		return fmt.Errorf("constrained decoding: token %d (%q) leaves the grammar", id, b)
	}
	m.state = s
	return nil
}
