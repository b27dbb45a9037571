package model

import (
	"fmt"

	"gotune/compute/cpu"
	"gotune/nn"
)

// Session runs one sequence incrementally with a key/value cache: each Feed
// processes only the new tokens, attending to everything cached before them.
// It runs the same block as training (Workspace.forwardLayer), so a model
// family or method that trains also decodes.
type Session struct {
	m      *Model
	max    int
	Len    int // positions filled (prefix and virtual tokens included)
	prefix int
	cache  kvCache
	ws     *Workspace
	logits []float32
}

// kvCache holds the rotated keys and values of every position a session
// has seen, per layer [max, KVDim].
type kvCache struct {
	k, v [][]float32
	len  int
}

// NewSession allocates a cache for up to maxLen positions, filling it with
// the KV prefix and virtual tokens of any attached prompt method.
func (m *Model) NewSession(maxLen int) *Session {
	c := m.Cfg
	s := &Session{m: m, max: maxLen}
	for range m.Layers {
		s.cache.k = append(s.cache.k, make([]float32, maxLen*c.KVDim()))
		s.cache.v = append(s.cache.v, make([]float32, maxLen*c.KVDim()))
	}
	// Decoding keeps no activations for a backward pass: one set of
	// buffers serves every layer.
	s.ws = &Workspace{m: m, Checkpoint: true, cache: &s.cache}
	s.Reset()
	return s
}

// Reset empties the cache (keeping any prefix).
func (s *Session) Reset() {
	s.cache.len = 0
	if len(s.m.Layers) > 0 && s.m.Layers[0].Prefix != nil {
		kd := s.m.Cfg.KVDim()
		for i, l := range s.m.Layers {
			pk, pv := l.Prefix.KV(i)
			copy(s.cache.k[i], pk)
			copy(s.cache.v[i], pv)
			s.cache.len = len(pk) / kd
		}
	}
	s.prefix, s.Len = s.cache.len, s.cache.len
	if s.m.Input != nil {
		p := s.m.Input.Virtual()
		virt := make([]float32, p*s.m.Cfg.Hidden)
		s.m.Input.Embed(virt, 1)
		s.feed(nil, virt, p)
	}
}

// Feed appends tokens and returns the logits after the last one ([Vocab],
// reused by the next call).
func (s *Session) Feed(ids []int32) ([]float32, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("feed: no tokens")
	}
	if s.Len+len(ids) > s.max {
		return nil, fmt.Errorf("feed: %d cached + %d new tokens exceed the session's %d positions", s.Len, len(ids), s.max)
	}
	for _, id := range ids {
		if id < 0 || int(id) >= s.m.Cfg.Vocab {
			return nil, fmt.Errorf("feed: token id %d outside the vocabulary [0, %d)", id, s.m.Cfg.Vocab)
		}
	}
	return s.feed(ids, nil, len(ids)), nil
}

// feed runs n new positions, from ids or, when ids is nil, from embeddings
// [n, Hidden], and returns the logits after the last.
func (s *Session) feed(ids []int32, emb []float32, n int) []float32 {
	m, c, w := s.m, s.m.Cfg, s.ws
	h := c.Hidden
	w.B, w.T, w.P, w.N = 1, n, 0, n
	w.seg = nil
	w.ids, w.labels, w.mask, w.pos = grow(w.ids, n), grow(w.labels, n), grow(w.mask, n), grow(w.pos, n)
	for i := range n {
		w.ids[i], w.labels[i], w.mask[i], w.pos[i] = 0, IgnoreIndex, 1, int32(s.cache.len+i)
	}
	w.size(n)
	x := w.stream[0]
	if ids != nil {
		copy(w.ids, ids)
		for i, id := range ids {
			copy(x[i*h:(i+1)*h], m.Embed.Data[int(id)*h:(int(id)+1)*h])
		}
	} else {
		copy(x, emb)
	}
	for _, l := range m.Layers {
		w.forwardLayer(l)
	}
	s.cache.len += n
	s.Len = s.cache.len
	last := w.stream[len(m.Layers)][(n-1)*h : n*h]
	nn.RMSNorm(w.xf[:h], w.rstdf[:1], last, m.Norm.Data, 1, h, c.RMSNormEps)
	s.logits = grow(s.logits, c.Vocab)
	cpu.Sgemm(false, true, 1, c.Vocab, h, 1, w.xf[:h], h, m.Head.Data, h, 0, s.logits, c.Vocab)
	return s.logits
}

// Argmax returns the index of the largest value (the first on ties).
func Argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// Greedy decodes n tokens after prompt, always taking the most likely one.
// stop, when non-nil, ends generation early on any of its ids.
func (m *Model) Greedy(prompt []int32, n int, stop func(int32) bool) ([]int32, error) {
	s := m.NewSession(len(prompt) + n + m.extraPositions())
	logits, err := s.Feed(prompt)
	if err != nil {
		return nil, err
	}
	var out []int32
	for len(out) < n {
		next := int32(Argmax(logits))
		out = append(out, next)
		if stop != nil && stop(next) {
			break
		}
		if len(out) == n {
			break
		}
		if logits, err = s.Feed([]int32{next}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// extraPositions counts cache positions taken by prefixes and virtual tokens.
func (m *Model) extraPositions() int {
	n := 0
	if len(m.Layers) > 0 && m.Layers[0].Prefix != nil {
		n += m.Layers[0].Prefix.Len()
	}
	if m.Input != nil {
		n += m.Input.Virtual()
	}
	return n
}
