package model

import (
	"fmt"

	"gotune/compute/cpu"
	"gotune/nn"
)

// Session runs one sequence incrementally with a key/value cache: each Feed
// processes only the new tokens, attending to everything cached before them.
type Session struct {
	m      *Model
	max    int
	Len    int         // positions filled (prefix and virtual tokens included)
	k, v   [][]float32 // per layer [max, KVDim], rotated keys
	prefix int
	buf    sessionBufs
	// virt and fed are the virtual tokens' embeddings and the ids fed so
	// far, kept only for longrope models: past the pretrained context the
	// frequencies of every position change, and with them every layer's
	// cached keys and values, so the session runs the sequence again.
	virt []float32
	fed  []int32
	nw   normWeights
	moe  moeActs
}

type sessionBufs struct {
	x, xn, q, k, v, att, mid, g, u, a, rstd, rstdq, rstdk, lse, logits []float32
	fused                                                              []float32
	pos                                                                []int32
	attn                                                               nn.Attention
}

// NewSession allocates a cache for up to maxLen positions, filling it with
// the KV prefix and virtual tokens of any attached prompt method.
func (m *Model) NewSession(maxLen int) *Session {
	c := m.Cfg
	s := &Session{m: m, max: maxLen}
	for range m.Layers {
		s.k = append(s.k, make([]float32, maxLen*c.KVDim()))
		s.v = append(s.v, make([]float32, maxLen*c.KVDim()))
	}
	s.Reset()
	return s
}

// Reset empties the cache (keeping any prefix).
func (s *Session) Reset() {
	s.Len = 0
	if len(s.m.Layers) > 0 && s.m.Layers[0].Prefix != nil {
		kd := s.m.Cfg.KVDim()
		for i, l := range s.m.Layers {
			pk, pv := l.Prefix.KV(i)
			copy(s.k[i], pk)
			copy(s.v[i], pv)
			s.Len = len(pk) / kd
		}
	}
	s.prefix = s.Len
	s.virt, s.fed = nil, s.fed[:0]
	if s.m.Input != nil {
		p := s.m.Input.Virtual()
		virt := make([]float32, p*s.m.Cfg.Hidden)
		s.m.Input.Embed(virt, 1)
		if s.m.Cfg.Rope.Type == "longrope" {
			s.virt = virt
		}
		s.feed(nil, virt)
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
	c := s.m.Cfg
	if c.Rope.Type != "longrope" {
		return s.feed(ids, nil), nil
	}
	if c.ropeLong(s.Len+len(ids)) && !c.ropeLong(s.Len) && s.Len > s.prefix {
		// Crossing into the long factors: everything again, in one pass.
		all := append(append([]int32(nil), s.fed...), ids...)
		s.Len = s.prefix
		s.fed = append(s.fed[:0], all...)
		return s.feed(all, s.virt), nil
	}
	s.fed = append(s.fed, ids...)
	return s.feed(ids, nil), nil
}

// feed runs new positions: the rows of emb (virtual tokens), then ids.
func (s *Session) feed(ids []int32, emb []float32) []float32 {
	m, c := s.m, s.m.Cfg
	h, qd, kd, hd, inter := c.Hidden, c.QDim(), c.KVDim(), c.HeadDim, c.Intermediate
	ne := len(emb) / h
	n := ne + len(ids)
	b := &s.buf
	b.x, b.xn, b.mid = grow(b.x, n*h), grow(b.xn, n*h), grow(b.mid, n*h)
	b.q, b.k, b.v, b.att = grow(b.q, n*qd), grow(b.k, n*kd), grow(b.v, n*kd), grow(b.att, n*qd)
	b.g, b.u, b.a = grow(b.g, n*inter), grow(b.u, n*inter), grow(b.a, n*inter)
	b.rstd, b.lse = grow(b.rstd, n*max(c.Heads, 1)), grow(b.lse, n*c.Heads)
	b.rstdq, b.rstdk = grow(b.rstdq, n*c.Heads), grow(b.rstdk, n*c.KVHeads)
	b.pos = growI(b.pos, n)
	copy(b.x, emb)
	for i, id := range ids {
		copy(b.x[(ne+i)*h:(ne+i+1)*h], m.Embed.Data[int(id)*h:(int(id)+1)*h])
	}
	scaleEmbeddings(c, b.x[ne*h:])
	scaleVirtual(c, b.x[:ne*h])
	for i := range b.pos {
		b.pos[i] = int32(s.Len + i)
	}
	s.nw.refresh(m)
	nw := s.nw
	tk := s.Len + n
	for li, l := range m.Layers {
		rope := m.ropeFor(li, tk)
		nn.RMSNorm(b.xn, b.rstd, b.x, nw.of(l.InNorm), n, h, c.RMSNormEps)
		if l.QKV != nil {
			b.fused = grow(b.fused, n*(qd+2*kd))
			l.QKV.Forward(b.fused, b.xn, n)
			splitCols(b.fused, n, b.q, b.k, b.v)
		} else {
			l.Q.Forward(b.q, b.xn, n)
			l.K.Forward(b.k, b.xn, n)
			l.V.Forward(b.v, b.xn, n)
		}
		if c.QKNorm {
			nn.RMSNorm(b.q, b.rstdq, b.q, nw.of(l.QNorm), n*c.Heads, hd, c.RMSNormEps)
			nn.RMSNorm(b.k, b.rstdk, b.k, nw.of(l.KNorm), n*c.KVHeads, hd, c.RMSNormEps)
		}
		nn.Rope(b.q, n, c.Heads, hd, b.pos, rope.Cos, rope.Sin, rope.Rot)
		nn.Rope(b.k, n, c.KVHeads, hd, b.pos, rope.Cos, rope.Sin, rope.Rot)
		copy(s.k[li][s.Len*kd:tk*kd], b.k)
		copy(s.v[li][s.Len*kd:tk*kd], b.v)
		b.attn = nn.Attention{B: 1, Tq: n, Tk: tk, Heads: c.Heads, KVHeads: c.KVHeads, HD: hd, Offset: s.Len,
			Scale: c.AttnScale(), Window: c.window(li), SoftCap: float32(c.AttnSoftcap), Tiles: b.attn.Tiles}
		b.attn.Forward(b.att, b.lse, b.q, s.k[li][:tk*kd], s.v[li][:tk*kd])
		l.O.Forward(b.mid, b.att, n)
		if l.AttnOut != nil {
			l.AttnOut.Forward(b.mid, n)
		}
		if l.AttnPostNorm != nil {
			nn.RMSNorm(b.mid, b.rstd, b.mid, nw.of(l.AttnPostNorm), n, h, c.RMSNormEps)
		}
		nn.Add(b.mid, b.x)
		nn.RMSNorm(b.xn, b.rstd, b.mid, nw.of(l.PostNorm), n, h, c.RMSNormEps)
		switch {
		case l.MoE != nil:
			moeForward(c, l.MoE, &s.moe, b.x, b.xn, n, nil, nil)
		case l.GateUp != nil:
			b.fused = grow(b.fused, 2*n*inter)
			l.GateUp.Forward(b.fused, b.xn, n)
			splitCols(b.fused, n, b.g, b.u)
			glu(c, b.a, b.g, b.u)
			l.Down.Forward(b.x, b.a, n)
		default:
			l.Gate.Forward(b.g, b.xn, n)
			l.Up.Forward(b.u, b.xn, n)
			glu(c, b.a, b.g, b.u)
			l.Down.Forward(b.x, b.a, n)
		}
		if l.MLPOut != nil {
			l.MLPOut.Forward(b.x, n)
		}
		if l.MLPPostNorm != nil {
			nn.RMSNorm(b.x, b.rstd, b.x, nw.of(l.MLPPostNorm), n, h, c.RMSNormEps)
		}
		nn.Add(b.x, b.mid)
	}
	s.Len = tk
	last := b.x[(n-1)*h : n*h]
	nn.RMSNorm(b.xn[:h], b.rstd[:1], last, nw.of(m.Norm), 1, h, c.RMSNormEps)
	b.logits = grow(b.logits, c.Vocab)
	cpu.Sgemm(false, true, 1, c.Vocab, h, 1, b.xn[:h], h, m.Head.Data, h, 0, b.logits, c.Vocab)
	if c.FinalSoftcap > 0 {
		nn.SoftCap(b.logits, float32(c.FinalSoftcap))
	}
	return b.logits
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
