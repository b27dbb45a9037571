package model

import (
	"errors"
	"fmt"

	"gotune/compute"
)

// DeviceGroupSession is GroupSession on the device: several sequences
// decoded together (a GRPO group, or the groups of several prompts), each
// prompt run once and its keys and values copied to every sequence that
// starts from it, then each Step feeds one token to each listed sequence,
// all rows of the cache in one pass (b = rows, t = 1).
//
// Every row of the cache advances together: a step writes its keys at one
// physical position for all rows, the frontier. A sequence whose prompt is
// shorter than another's, or that sat out a step, leaves a gap there which
// a key mask hides from its queries; its rotary positions count only its
// own tokens, so its logits are those of the sequence decoded alone. Gaps
// take cache positions: Step fails once the frontier reaches Cap, which a
// caller that sizes the cache for its longest prompt plus the tokens it
// decodes never meets.
type DeviceGroupSession struct {
	dm    *DeviceModel
	Lens  []int // positions filled per sequence (its own tokens), as GroupSession.Lens
	max   int
	phys  []int            // physical positions used per row, gaps included
	valid []int32          // [rows, max]: 1 where row r's cache holds one of its own keys
	k, v  []compute.Tensor // per layer [rows, KVHeads, max, HeadDim]
	// kmask is the step's key mask [rows, frontier+1]; idx the listed rows.
	kmask, idx compute.Tensor
	mask       []int32
	logits     []float32
}

// NewGroupSession allocates the key/value caches of n sequences of up to
// maxLen positions each on the device.
func (dm *DeviceModel) NewGroupSession(n, maxLen int) (*DeviceGroupSession, error) {
	if n <= 0 {
		return nil, fmt.Errorf("group decoding: %d sequences", n)
	}
	if maxLen <= 0 {
		return nil, fmt.Errorf("group decoding: %d positions", maxLen)
	}
	c := dm.cfg
	g := &DeviceGroupSession{dm: dm, Lens: make([]int, n), max: maxLen, phys: make([]int, n), valid: make([]int32, n*maxLen)}
	fail := func(what string, err error) (*DeviceGroupSession, error) {
		g.Close()
		return nil, fmt.Errorf("group decoding: %s: %w", what, err)
	}
	for range dm.layers {
		for _, dst := range []*[]compute.Tensor{&g.k, &g.v} {
			t, err := dm.be.Alloc(dm.act, n*maxLen*c.KVDim())
			if err != nil {
				return fail(fmt.Sprintf("key/value caches of %d×%d positions", n, maxLen), err)
			}
			*dst = append(*dst, t)
		}
	}
	var err error
	if g.kmask, err = dm.be.Alloc(compute.I32, n*maxLen); err != nil {
		return fail("key mask", err)
	}
	if g.idx, err = dm.be.Alloc(compute.I32, n); err != nil {
		return fail("row indices", err)
	}
	return g, nil
}

// Cap is the positions each sequence can hold.
func (g *DeviceGroupSession) Cap() int { return g.max }

// Rows is the number of sequences the session holds.
func (g *DeviceGroupSession) Rows() int { return len(g.Lens) }

// Close frees the caches.
func (g *DeviceGroupSession) Close() {
	for _, t := range append(append([]compute.Tensor{g.kmask, g.idx}, g.k...), g.v...) {
		if t != nil {
			t.Free()
		}
	}
	g.k, g.v, g.kmask, g.idx = nil, nil, nil, nil
}

// slot is the cache of row r, a session of one sequence over it.
func (g *DeviceGroupSession) slot(r int) *DeviceSession {
	kvs := g.max * g.dm.cfg.KVDim()
	s := &DeviceSession{dm: g.dm, max: g.max}
	for li := range g.k {
		s.k = append(s.k, g.k[li].Slice(r*kvs, kvs))
		s.v = append(s.v, g.v[li].Slice(r*kvs, kvs))
	}
	return s
}

// Prompt starts every sequence from one prompt and returns the logits after
// its last token ([Vocab], reused).
func (g *DeviceGroupSession) Prompt(ids []int32) ([]float32, error) {
	rows := make([]int, len(g.Lens))
	for i := range rows {
		rows[i] = i
	}
	return g.PromptRows(ids, rows)
}

// PromptRows starts the listed sequences from one prompt: it runs once, in
// the first row's cache, which is then copied to the others. It returns the
// logits after the prompt ([Vocab], reused by the next call).
func (g *DeviceGroupSession) PromptRows(ids []int32, rows []int) ([]float32, error) {
	if g.k == nil {
		return nil, errors.New("group decoding: the session is closed")
	}
	if len(ids) == 0 || len(ids) >= g.max {
		return nil, fmt.Errorf("group decoding: the prompt's %d tokens leave no room in %d positions", len(ids), g.max)
	}
	if len(rows) == 0 {
		return nil, errors.New("group decoding: no sequences to start")
	}
	for _, r := range rows {
		if r < 0 || r >= len(g.Lens) {
			return nil, fmt.Errorf("group decoding: row %d of %d", r, len(g.Lens))
		}
	}
	if err := checkIDs(ids, g.dm.cfg.Vocab); err != nil {
		return nil, fmt.Errorf("group decoding: %w", err)
	}
	first := g.slot(rows[0])
	lg, err := first.Feed(ids)
	if err != nil {
		return nil, fmt.Errorf("group decoding: %w", err)
	}
	kvs := g.max * g.dm.cfg.KVDim()
	for li := range g.k {
		for _, r := range rows[1:] {
			if r == rows[0] {
				continue
			}
			g.dm.be.Cast(g.k[li].Slice(r*kvs, kvs), first.k[li])
			g.dm.be.Cast(g.v[li].Slice(r*kvs, kvs), first.v[li])
		}
	}
	for _, r := range rows {
		g.Lens[r], g.phys[r] = len(ids), len(ids)
		row := g.valid[r*g.max : (r+1)*g.max]
		clear(row)
		for j := range ids {
			row[j] = 1
		}
	}
	g.logits = append(g.logits[:0], lg...)
	return g.logits, g.dm.err()
}

// Step appends ids[i] to sequence rows[i] and returns the logits after it,
// [len(rows)·Vocab] (reused by the next call). The rows not listed are fed
// a placeholder that their key mask then hides.
func (g *DeviceGroupSession) Step(rows []int, ids []int32) ([]float32, error) {
	dm := g.dm
	c := dm.cfg
	n := len(rows)
	if g.k == nil {
		return nil, errors.New("group step: the session is closed")
	}
	if n == 0 || len(ids) != n {
		return nil, fmt.Errorf("group step: %d rows, %d tokens", n, len(ids))
	}
	B := len(g.Lens)
	listed := make([]bool, B)
	for _, r := range rows {
		if r < 0 || r >= B || listed[r] {
			return nil, fmt.Errorf("group step: row %d of %d (each at most once)", r, B)
		}
		listed[r] = true
		if g.Lens[r]+1 > g.max {
			return nil, fmt.Errorf("group step: sequence %d is full (%d positions)", r, g.max)
		}
	}
	if err := checkIDs(ids, c.Vocab); err != nil {
		return nil, fmt.Errorf("group step: %w", err)
	}
	front := 0
	for _, p := range g.phys {
		front = max(front, p)
	}
	if front+1 > g.max {
		return nil, fmt.Errorf("group step: the cache's %d positions are used (gaps left by shorter prompts and skipped steps included)", g.max)
	}
	tk := front + 1
	need := 0
	for _, l := range g.Lens {
		need = max(need, l+1)
	}
	if err := dm.ropeAhead(need, g.max); err != nil {
		return nil, fmt.Errorf("group step: %w", err)
	}
	all := make([]int32, B)
	pos := make([]int32, B)
	g.mask = grow(g.mask, B*tk)
	for r := range B {
		pos[r] = int32(g.Lens[r])
		// Past phys[r] a row's mask is 0 (PromptRows clears it), so the
		// positions between phys[r] and the frontier are its gap.
		row := g.valid[r*g.max : (r+1)*g.max]
		row[front] = 1 // its new key (a placeholder's for unlisted rows)
		copy(g.mask[r*tk:(r+1)*tk], row[:tk])
	}
	for i, r := range rows {
		all[r] = ids[i]
	}
	dm.be.UploadInt(g.kmask.Slice(0, B*tk), g.mask)
	s := &DeviceSession{dm: dm, max: g.max, len: front, k: g.k, v: g.v, kmask: g.kmask.Slice(0, B*tk)}
	dm.cache = s
	err := dm.forward(&Batch{B: B, T: 1, IDs: all, Pos: pos})
	dm.cache = nil
	if err != nil {
		return nil, fmt.Errorf("group step: %w", err)
	}
	for r := range B {
		g.phys[r] = tk
		if listed[r] {
			g.Lens[r]++
		} else {
			g.valid[r*g.max+front] = 0
		}
	}
	// The head on the listed rows only.
	h, V := c.Hidden, c.Vocab
	idx := make([]int32, n)
	for i, r := range rows {
		idx[i] = int32(r)
	}
	dm.be.UploadInt(g.idx.Slice(0, n), idx)
	xs := dm.buf("group_x", dm.act, n*h)
	lg := dm.buf("group_logits", compute.F32, n*V)
	dm.be.GatherRows(xs, dm.xf, g.idx, n, h)
	dm.be.Gemm(false, true, n, V, h, 1, xs, h, dm.head.w, h, 0, lg, V)
	g.logits = grow(g.logits, n*V)
	if err := dm.be.Download(g.logits, lg); err != nil {
		return nil, err
	}
	return g.logits, dm.err()
}
