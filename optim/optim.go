// Package optim updates model parameters from their gradients: AdamW and SGD
// with the exact semantics of torch.optim, global-norm gradient clipping as
// torch.nn.utils.clip_grad_norm_, and the learning-rate schedules of
// transformers.
package optim

import (
	"fmt"
	"sort"

	"gotune/nn"
	"gotune/parallel"
)

// Group is a set of parameters sharing hyper-parameters, as a torch param
// group. LRScale multiplies the scheduled learning rate (LoRA+ gives lora_B
// lr·ratio this way); zero means 1.
type Group struct {
	Params      []*nn.Param
	LRScale     float64
	WeightDecay float64
}

// Config holds the hyper-parameters of every optimizer; each reads its own.
// DefaultConfig gives torch's defaults.
type Config struct {
	Beta1, Beta2, Eps float64 // AdamW
	// Float64State keeps AdamW's moments in float64, for parity runs
	// against a float64 reference. Parameters stay float32.
	Float64State bool

	Momentum, Dampening float64 // SGD
	Nesterov            bool
}

// DefaultConfig is torch's AdamW defaults (betas 0.9/0.999, eps 1e-8) and
// plain SGD.
func DefaultConfig() Config { return Config{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8} }

// Optimizer is what a trainer needs from AdamW and SGD.
type Optimizer interface {
	// Step applies one update with the scheduled learning rate lr (each
	// group uses lr·LRScale). Parameters without a gradient are skipped.
	Step(lr float64)
	// Groups returns the parameter groups the optimizer was built with.
	Groups() []Group
	// ZeroGrad clears the gradients of all parameters.
	ZeroGrad()
	// Name is the optimizer's name as in config files ("adamw_torch", "sgd").
	Name() string
	stateful
}

// Kind is the update rule an optimizer name stands for: what the trainer,
// the planner and bench need to know of a name.
type Kind int

const (
	KindAdamW     Kind = iota + 1 // float32 moments
	KindAdamW8bit                 // block-wise 8-bit moments
	KindSGD
)

// KindOf reads an optimizer name as transformers' `optim` argument spells
// it (and its aliases).
func KindOf(name string) (Kind, error) {
	switch name {
	case "adamw_torch", "adamw_torch_fused", "adamw", "adamw_hf":
		return KindAdamW, nil
	case "sgd":
		return KindSGD, nil
	case "adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit":
		// bitsandbytes' paging moves state to the host under GPU memory
		// pressure; at 2 bytes a value the state is small enough to stay.
		return KindAdamW8bit, nil
	}
	return 0, fmt.Errorf("optimizer %q: unknown; want adamw_torch, adamw_8bit or sgd", name)
}

// New builds the optimizer named as in transformers' `optim` argument.
func New(name string, groups []Group, cfg Config) (Optimizer, error) {
	k, err := KindOf(name)
	if err != nil {
		return nil, err
	}
	switch k {
	case KindSGD:
		return NewSGD(groups, cfg)
	case KindAdamW8bit:
		return NewAdamW8bit(groups, cfg)
	}
	return NewAdamW(groups, cfg)
}

// slot is one parameter as the optimizer sees it.
type slot struct {
	p     *nn.Param
	group int
	off   int // offset of p in the concatenation of all parameters
}

// params flattens the groups into one index space so the update loop can
// split work evenly across cores whatever the parameter sizes are.
type params struct {
	groups []Group
	slots  []slot
	offs   []int // offs[i] = slots[i].off, for binary search
	total  int
}

// minChunk keeps each worker's share large enough that goroutine start-up
// does not dominate.
const minChunk = 1 << 15

func newParams(groups []Group) (params, error) {
	ps := params{groups: groups}
	seen := map[*nn.Param]bool{}
	names := map[string]bool{}
	for gi, g := range groups {
		if g.LRScale < 0 || g.WeightDecay < 0 {
			return params{}, fmt.Errorf("param group %d: lr scale %g and weight decay %g must be >= 0", gi, g.LRScale, g.WeightDecay)
		}
		for _, p := range g.Params {
			if p == nil {
				return params{}, fmt.Errorf("param group %d: nil parameter", gi)
			}
			if seen[p] {
				return params{}, fmt.Errorf("param group %d: parameter %q appears in more than one place", gi, p.Name)
			}
			if names[p.Name] {
				return params{}, fmt.Errorf("param group %d: two parameters are named %q; saved state is keyed by name", gi, p.Name)
			}
			if p.Grad != nil && len(p.Grad) != len(p.Data) {
				return params{}, fmt.Errorf("parameter %q: gradient has %d elements, data %d", p.Name, len(p.Grad), len(p.Data))
			}
			seen[p], names[p.Name] = true, true
			ps.slots = append(ps.slots, slot{p: p, group: gi, off: ps.total})
			ps.offs = append(ps.offs, ps.total)
			ps.total += len(p.Data)
		}
	}
	return ps, nil
}

func (ps *params) Groups() []Group { return ps.groups }

func (ps *params) ZeroGrad() {
	for _, s := range ps.slots {
		clear(s.p.Grad)
	}
}

func (ps *params) lrScale(gi int) float64 {
	if s := ps.groups[gi].LRScale; s != 0 {
		return s
	}
	return 1
}

// first is the index of the parameter holding flat element lo.
func (ps *params) first(lo int) int { return sort.SearchInts(ps.offs, lo+1) - 1 }

// span is the element range of parameter i inside the flat range [lo,hi).
func (ps *params) span(i, lo, hi int) (a, b int) {
	s := ps.slots[i]
	return max(lo-s.off, 0), min(hi-s.off, len(s.p.Data))
}

// parallel runs fn over the whole flat index space.
func (ps *params) parallel(fn func(lo, hi int)) {
	parallel.For(ps.total, minChunk, fn)
}
