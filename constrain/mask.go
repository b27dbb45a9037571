package constrain

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"unicode/utf8"
)

// Vocab is a tokenizer's tokens as the bytes each adds to the output,
// sorted, so that tokens sharing a prefix are walked from the state that
// prefix reaches instead of from the start (a trie walk without a trie).
// Build it once per tokenizer: it costs a pass over the vocabulary.
type Vocab struct {
	size int
	all  tokList
	// Inside a JSON string most tokens are plain text: no quote, no
	// backslash, no control byte, whole UTF-8 characters. Such a token
	// leaves a string's state as it was, so there it is allowed without a
	// walk; only the others (other) are walked.
	plain []uint64
	other tokList
	max   int      // longest token
	byID  [][]byte // bytes by token id; nil: never allowed
}

// tokList is tokens sorted by their bytes, with the prefix each shares with
// the one before.
type tokList struct {
	ids  []int32
	toks [][]byte
	lcp  []int32
}

func newTokList(ids []int32, toks [][]byte) tokList {
	l := tokList{ids: ids, toks: toks}
	sort.Sort(byBytes{&l})
	l.lcp = make([]int32, len(toks))
	for i := 1; i < len(toks); i++ {
		a, b := toks[i-1], toks[i]
		k := 0
		for k < len(a) && k < len(b) && a[k] == b[k] {
			k++
		}
		l.lcp[i] = int32(k)
	}
	return l
}

// NewVocab builds the table for ids 0..size-1; tokenBytes returns the bytes
// a token adds, or false for tokens that may never be chosen under a
// constraint (special tokens, tokens with no text).
func NewVocab(size int, tokenBytes func(id int) ([]byte, bool)) *Vocab {
	v := &Vocab{size: size, plain: make([]uint64, (size+63)/64), byID: make([][]byte, size)}
	var ids, oids []int32
	var toks, otoks [][]byte
	for id := 0; id < size; id++ {
		b, ok := tokenBytes(id)
		if !ok || len(b) == 0 {
			continue
		}
		ids, toks = append(ids, int32(id)), append(toks, b)
		v.byID[id] = b
		v.max = max(v.max, len(b))
		if plainText(b) {
			v.plain[id/64] |= 1 << (id % 64)
		} else {
			oids, otoks = append(oids, int32(id)), append(otoks, b)
		}
	}
	v.all = newTokList(ids, toks)
	v.other = newTokList(oids, otoks)
	return v
}

func plainText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return utf8.Valid(b)
}

// Size is the number of token ids the vocabulary covers.
func (v *Vocab) Size() int { return v.size }

type byBytes struct{ l *tokList }

func (s byBytes) Len() int           { return len(s.l.ids) }
func (s byBytes) Less(i, j int) bool { return bytes.Compare(s.l.toks[i], s.l.toks[j]) < 0 }
func (s byBytes) Swap(i, j int) {
	s.l.ids[i], s.l.ids[j] = s.l.ids[j], s.l.ids[i]
	s.l.toks[i], s.l.toks[j] = s.l.toks[j], s.l.toks[i]
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
	// fullWalk turns off the plain-text shortcut (tests compare the two).
	fullWalk bool
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
	list := &v.all
	if !m.fullWalk && m.inPlainString() {
		copy(mask, v.plain)
		list = &v.other
	}
	m.stack[0] = m.state.alts
	dead := math.MaxInt32 // the previous token's prefix of this length is dead
	for i, tok := range list.toks {
		l := int(list.lcp[i])
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
			id := list.ids[i]
			mask[id/64] |= 1 << (id % 64)
		}
	}
	return mask
}

// inPlainString reports a state in which plain text leaves the state as it
// is (see Vocab.plain): inside a string value, or an undeclared key, and
// not in an escape or a UTF-8 sequence.
func (m *Matcher) inPlainString() bool {
	if len(m.state.alts) != 1 {
		return false
	}
	f := m.state.alts[0]
	switch {
	case f.st != sNormal:
		return false
	case f.kind == fString:
		return true
	case f.kind == fKey:
		// Plain text either goes on spelling a declared name or makes the
		// key an undeclared one: both live when undeclared keys are allowed.
		return f.node.additional != nil
	}
	return false
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
