package model

import (
	"sync"

	"gotune/compute"
)

// SharedWeights holds frozen weights on a backend for several device copies
// of clones of one model (Model.Clone shares their host weights: serve's
// adapters and replicas of one base). Each weight is uploaded once and freed
// when the last copy using it closes, so n adapters on one GPU cost one base
// model plus n adapters, not n base models.
type SharedWeights struct {
	mu sync.Mutex
	be compute.Backend
	m  map[sharedKey]*sharedEntry
}

// sharedKey is a host weight (a *nn.Param, or a quantized matrix) in the
// element type it is held in on the device.
type sharedKey struct {
	host any
	dt   compute.DType
}

type sharedEntry struct {
	ts   []compute.Tensor
	refs int
}

// NewSharedWeights makes an empty set of shared weights on be.
func NewSharedWeights(be compute.Backend) *SharedWeights {
	return &SharedWeights{be: be, m: map[sharedKey]*sharedEntry{}}
}

// get returns the tensors of key, uploading them with make the first time.
func (s *SharedWeights) get(key sharedKey, make func() ([]compute.Tensor, error)) ([]compute.Tensor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[key]; e != nil {
		e.refs++
		return e.ts, nil
	}
	ts, err := make()
	if err != nil {
		return nil, err
	}
	s.m[key] = &sharedEntry{ts: ts, refs: 1}
	return ts, nil
}

// release drops one use of key, freeing its tensors after the last.
func (s *SharedWeights) release(key sharedKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[key]
	if e == nil {
		return
	}
	if e.refs--; e.refs == 0 {
		for _, t := range e.ts {
			t.Free()
		}
		delete(s.m, key)
	}
}
