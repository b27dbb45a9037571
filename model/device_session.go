package model

import (
	"errors"
	"fmt"

	"gotune/compute"
)

// DeviceSession decodes one sequence on the device with a key/value cache,
// as Session does on the CPU: each Feed runs only the new tokens through the
// same block the training step uses, attending to everything cached.
type DeviceSession struct {
	dm     *DeviceModel
	max    int
	len    int
	k, v   []compute.Tensor // per layer, head-major [KVHeads, max, HeadDim]
	logits []float32

	// kmask, when set, is the key mask [B, len+T] of a group step
	// (DeviceGroupSession): which cached keys each row's queries see.
	kmask compute.Tensor
	// fed is every id fed so far, kept for longrope models only: past the
	// pretrained context every position's frequencies change, and with
	// them every cached key, so the session runs the sequence again (as
	// Session does).
	fed []int32
	// virtual marks the Feed that runs an attached method's virtual tokens
	// (their embeddings replace the ids').
	virtual bool
	// pos holds the positions of the tokens fed, kept between calls.
	pos []int32
}

// NewSession allocates a cache of maxLen positions on the device, filled
// as the CPU's Session fills it with the KV prefix and the virtual tokens of
// an attached prompt method (which count towards maxLen).
func (dm *DeviceModel) NewSession(maxLen int) (*DeviceSession, error) {
	if maxLen <= 0 {
		return nil, fmt.Errorf("device session: %d positions", maxLen)
	}
	c := dm.cfg
	s := &DeviceSession{dm: dm, max: maxLen}
	for range dm.layers {
		for _, dst := range []*[]compute.Tensor{&s.k, &s.v} {
			t, err := dm.be.Alloc(dm.act, maxLen*c.KVDim())
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("device session: key/value cache of %d positions: %w", maxLen, err)
			}
			*dst = append(*dst, t)
		}
	}
	if err := s.start(); err != nil {
		s.Close()
		return nil, fmt.Errorf("device session: %w", err)
	}
	return s, nil
}

// Len is the number of positions filled.
func (s *DeviceSession) Len() int { return s.len }

// Reset empties the cache (keeping any prefix and virtual tokens); an
// error surfaces at the next Feed.
func (s *DeviceSession) Reset() {
	s.fed = s.fed[:0]
	if err := s.start(); err != nil {
		s.dm.allocErr = errors.Join(s.dm.allocErr, err)
	}
}

// Close frees the cache.
func (s *DeviceSession) Close() {
	for _, t := range append(s.k, s.v...) {
		t.Free()
	}
	s.k, s.v = nil, nil
}

// Feed appends tokens and returns the logits after the last one ([Vocab],
// reused by the next call).
func (s *DeviceSession) Feed(ids []int32) ([]float32, error) {
	dm := s.dm
	c := dm.cfg
	if len(ids) == 0 {
		return nil, errors.New("feed: no tokens")
	}
	if s.k == nil {
		return nil, errors.New("feed: the session is closed")
	}
	if s.len+len(ids) > s.max {
		return nil, fmt.Errorf("feed: %d cached + %d new tokens exceed the session's %d positions", s.len, len(ids), s.max)
	}
	prev, fed := s.len, s.fed
	if c.Rope.Type == "longrope" {
		fed = append(fed, ids...)
		if c.ropeLong(s.len+len(ids)) && !c.ropeLong(s.len) && s.len > 0 {
			// Crossing into the long factors: everything again, in one pass.
			if dm.prefixLen()+dm.virtualLen() > 0 {
				return nil, errors.New("feed: a longrope model crossing its pretrained context with a prompt method's prefix or virtual tokens does not decode on a device yet")
			}
			ids, s.len = fed, 0
		}
	}
	T := len(ids)
	if err := dm.ropeAhead(s.len+T, s.max); err != nil {
		s.len = prev
		return nil, err
	}
	s.pos = s.pos[:0]
	for i := range T {
		s.pos = append(s.pos, int32(s.len+i))
	}
	pos := s.pos
	dm.cache = s
	defer func() { dm.cache = nil }()
	if err := dm.forward(&Batch{B: 1, T: T, IDs: ids, Pos: pos}); err != nil {
		s.len = prev
		return nil, err
	}
	h, V := c.Hidden, c.Vocab
	lg := dm.buf("session_logits", compute.F32, V)
	dm.be.Gemm(false, true, 1, V, h, 1, dm.xf.Slice((T-1)*h, h), h, dm.head.w, h, 0, lg, V)
	if sc := float32(c.FinalSoftcap); sc != 0 {
		dm.be.SoftCap(lg, lg, sc)
	}
	if len(s.logits) != V {
		s.logits = make([]float32, V)
	}
	if err := dm.be.Download(s.logits, lg); err != nil {
		s.len = prev
		return nil, err
	}
	s.len += T
	s.fed = fed
	return s.logits, dm.err()
}

// ropeAhead grows the rotary tables ahead of a session that will reach up
// to limit positions, now that the next forward pass needs need of them:
// the pass alone asks for exactly need positions, so past the first table
// (256) decoding rebuilt and uploaded the tables at every token. They grow
// by doubling instead (a session sized for a long context does not pay for
// it up front), and only where a table's values at a position do not
// depend on its length, so they hold the numbers a rebuild would: every
// rope type up to the context where LongRoPE switches to its long factors
// or dynamic NTK rescales its base, and LongRoPE's long factors past it
// (dynamic NTK past it depends on the exact length and is rebuilt by the
// pass as before).
func (dm *DeviceModel) ropeAhead(need, limit int) error {
	c := dm.cfg
	n := limit
	switch c.Rope.Type {
	case "longrope":
		if !c.ropeLong(need) {
			n = min(limit, c.Rope.OriginalMaxPos)
		}
	case "dynamic":
		if c.MaxPositions > 0 {
			if need > c.MaxPositions {
				return nil
			}
			n = min(limit, c.MaxPositions)
		}
	}
	n = min(n, max(need, 2*dm.ropeN))
	if n < need {
		return nil
	}
	return dm.rope(n)
}
