package model

import (
	"fmt"
	"math"

	"gotune/compute/cpu"
	"gotune/nn"
)

// GroupSession decodes several sequences that share a prompt (a GRPO group,
// or n samples of one request): the prompt runs once and its key/value cache
// is copied to every sequence, then each Step advances every live sequence
// by one token with the linear layers batched across them — one matrix
// product of n rows instead of n matrix-vector products, which is where
// single-sequence decoding spends its time.
type GroupSession struct {
	m    *Model
	max  int
	Lens []int       // positions filled per sequence
	k, v [][]float32 // per layer [n·max·KVDim], sequence after sequence
	buf  sessionBufs
	// first holds the logits after the last prompt, apart from buf.logits,
	// which Step overwrites.
	first []float32
}

// NewGroupSession allocates caches for n sequences of up to maxLen
// positions each. Prompt-learning methods (prefixes, virtual tokens) are
// not supported here.
func (m *Model) NewGroupSession(n, maxLen int) (*GroupSession, error) {
	if m.extraPositions() > 0 {
		return nil, fmt.Errorf("group decoding: prefix and prompt tuning are not supported")
	}
	kd := m.Cfg.KVDim()
	g := &GroupSession{m: m, max: maxLen, Lens: make([]int, n)}
	for range m.Layers {
		g.k = append(g.k, make([]float32, n*maxLen*kd))
		g.v = append(g.v, make([]float32, n*maxLen*kd))
	}
	return g, nil
}

// Rows is the number of sequences the session holds.
func (g *GroupSession) Rows() int { return len(g.Lens) }

// Cap is the positions each sequence can hold: a session may be reused for
// any prompt and completion that fit (Prompt starts it over).
func (g *GroupSession) Cap() int { return g.max }

// Prompt runs the shared prompt once, copies its cache to every sequence
// and returns the logits after its last token ([Vocab], reused).
func (g *GroupSession) Prompt(ids []int32) ([]float32, error) {
	rows := make([]int, len(g.Lens))
	for i := range rows {
		rows[i] = i
	}
	return g.PromptRows(ids, rows)
}

// PromptRows starts the listed sequences from one prompt (run once, its
// cache copied to each): a session may decode the groups of several prompts
// together. It returns the logits after the prompt ([Vocab], reused).
func (g *GroupSession) PromptRows(ids []int32, rows []int) ([]float32, error) {
	if len(ids) >= g.max {
		return nil, fmt.Errorf("group decoding: the prompt's %d tokens leave no room in %d positions", len(ids), g.max)
	}
	for _, r := range rows {
		if r < 0 || r >= len(g.Lens) {
			return nil, fmt.Errorf("group decoding: row %d of %d", r, len(g.Lens))
		}
	}
	s := g.m.NewSession(len(ids))
	logits, err := s.Feed(ids)
	if err != nil {
		return nil, err
	}
	kd := g.m.Cfg.KVDim()
	n := len(ids) * kd
	for li := range g.m.Layers {
		for _, r := range rows {
			copy(g.k[li][r*g.max*kd:], s.k[li][:n])
			copy(g.v[li][r*g.max*kd:], s.v[li][:n])
		}
	}
	for _, r := range rows {
		g.Lens[r] = len(ids)
	}
	g.first = append(g.first[:0], logits...)
	return g.first, nil
}

// Step appends ids[i] to sequence rows[i] and returns the logits after it,
// [len(rows)·Vocab] (reused by the next call).
func (g *GroupSession) Step(rows []int, ids []int32) ([]float32, error) {
	n := len(rows)
	if n == 0 || len(ids) != n {
		return nil, fmt.Errorf("group step: %d rows, %d tokens", n, len(ids))
	}
	m, c := g.m, g.m.Cfg
	for i, r := range rows {
		if r < 0 || r >= len(g.Lens) {
			return nil, fmt.Errorf("group step: row %d of %d", r, len(g.Lens))
		}
		if g.Lens[r]+1 > g.max {
			return nil, fmt.Errorf("group step: sequence %d is full (%d positions)", r, g.max)
		}
		if id := ids[i]; id < 0 || int(id) >= c.Vocab {
			return nil, fmt.Errorf("group step: token id %d outside the vocabulary [0, %d)", id, c.Vocab)
		}
	}
	h, qd, kd, hd, inter := c.Hidden, c.QDim(), c.KVDim(), c.HeadDim, c.Intermediate
	b := &g.buf
	b.x, b.xn, b.mid = grow(b.x, n*h), grow(b.xn, n*h), grow(b.mid, n*h)
	b.q, b.k, b.v, b.att = grow(b.q, n*qd), grow(b.k, n*kd), grow(b.v, n*kd), grow(b.att, n*qd)
	b.g, b.u, b.a = grow(b.g, n*inter), grow(b.u, n*inter), grow(b.a, n*inter)
	b.rstd, b.lse = grow(b.rstd, n*max(c.Heads, 1)), grow(b.lse, n*c.Heads)
	b.rstdq, b.rstdk = grow(b.rstdq, n*c.Heads), grow(b.rstdk, n*c.KVHeads)
	b.pos = grow(b.pos, n)
	longest := 0
	for i, r := range rows {
		id := ids[i]
		copy(b.x[i*h:(i+1)*h], m.Embed.Data[int(id)*h:(int(id)+1)*h])
		b.pos[i] = int32(g.Lens[r])
		longest = max(longest, g.Lens[r]+1)
	}
	rope := m.Rope(longest)
	scale := float32(1 / math.Sqrt(float64(hd)))
	for li, l := range m.Layers {
		nn.RMSNorm(b.xn, b.rstd, b.x, l.InNorm.Data, n, h, c.RMSNormEps)
		l.Q.Forward(b.q, b.xn, n)
		l.K.Forward(b.k, b.xn, n)
		l.V.Forward(b.v, b.xn, n)
		if c.QKNorm {
			nn.RMSNorm(b.q, b.rstdq, b.q, l.QNorm.Data, n*c.Heads, hd, c.RMSNormEps)
			nn.RMSNorm(b.k, b.rstdk, b.k, l.KNorm.Data, n*c.KVHeads, hd, c.RMSNormEps)
		}
		nn.Rope(b.q, n, c.Heads, hd, b.pos, rope.Cos, rope.Sin, rope.Rot)
		nn.Rope(b.k, n, c.KVHeads, hd, b.pos, rope.Cos, rope.Sin, rope.Rot)
		for i, r := range rows {
			base := r * g.max * kd
			at := g.Lens[r]
			copy(g.k[li][base+at*kd:base+(at+1)*kd], b.k[i*kd:(i+1)*kd])
			copy(g.v[li][base+at*kd:base+(at+1)*kd], b.v[i*kd:(i+1)*kd])
			tk := at + 1
			b.attn = nn.Attention{B: 1, Tq: 1, Tk: tk, Heads: c.Heads, KVHeads: c.KVHeads, HD: hd, Offset: at, Scale: scale, Tiles: b.attn.Tiles}
			b.attn.Forward(b.att[i*qd:(i+1)*qd], b.lse[i*c.Heads:(i+1)*c.Heads], b.q[i*qd:(i+1)*qd],
				g.k[li][base:base+tk*kd], g.v[li][base:base+tk*kd])
		}
		l.O.Forward(b.mid, b.att, n)
		if l.AttnOut != nil {
			l.AttnOut.Forward(b.mid, n)
		}
		nn.Add(b.mid, b.x)
		nn.RMSNorm(b.xn, b.rstd, b.mid, l.PostNorm.Data, n, h, c.RMSNormEps)
		l.Gate.Forward(b.g, b.xn, n)
		l.Up.Forward(b.u, b.xn, n)
		nn.SwiGLU(b.a, b.g, b.u)
		l.Down.Forward(b.x, b.a, n)
		if l.MLPOut != nil {
			l.MLPOut.Forward(b.x, n)
		}
		nn.Add(b.x, b.mid)
	}
	for _, r := range rows {
		g.Lens[r]++
	}
	nn.RMSNorm(b.xn, b.rstd, b.x, m.Norm.Data, n, h, c.RMSNormEps)
	b.logits = grow(b.logits, n*c.Vocab)
	cpu.Sgemm(false, true, n, c.Vocab, h, 1, b.xn, h, m.Head.Data, h, 0, b.logits, c.Vocab)
	return b.logits, nil
}
