package optim

import (
	"fmt"
	"math"

	"gotune/nn"
)

// AdamW is torch.optim.AdamW (amsgrad off, maximize off): decoupled weight
// decay p ← p·(1 − lr·wd) first, then p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε).
// Like torch, state is created at a parameter's first update and its step
// counter advances only when it has a gradient.
type AdamW struct {
	params
	cfg   Config
	m32   [][]float32 // per slot; nil until the first update
	v32   [][]float32
	m64   [][]float64 // used instead when cfg.Float64State
	v64   [][]float64
	steps []int64
	coef  []adamCoef // this step's per-parameter scalars
	run   func(lo, hi int)
}

type adamCoef struct {
	active   bool
	decay    float64 // 1 − lr·wd
	stepSize float64 // lr / (1 − β1ᵗ)
	bc2Sqrt  float64 // √(1 − β2ᵗ)
}

// NewAdamW builds an AdamW optimizer over groups.
func NewAdamW(groups []Group, cfg Config) (*AdamW, error) {
	switch {
	case !(cfg.Beta1 >= 0 && cfg.Beta1 < 1):
		return nil, fmt.Errorf("adamw: beta1 %g; want 0 <= beta1 < 1", cfg.Beta1)
	case !(cfg.Beta2 >= 0 && cfg.Beta2 < 1):
		return nil, fmt.Errorf("adamw: beta2 %g; want 0 <= beta2 < 1", cfg.Beta2)
	case !(cfg.Eps >= 0):
		return nil, fmt.Errorf("adamw: epsilon %g; want >= 0", cfg.Eps)
	}
	ps, err := newParams(groups)
	if err != nil {
		return nil, fmt.Errorf("adamw: %w", err)
	}
	n := len(ps.slots)
	o := &AdamW{params: ps, cfg: cfg, steps: make([]int64, n), coef: make([]adamCoef, n)}
	if cfg.Float64State {
		o.m64, o.v64 = make([][]float64, n), make([][]float64, n)
	} else {
		o.m32, o.v32 = make([][]float32, n), make([][]float32, n)
	}
	o.run = o.update // bound once so Step does not allocate a closure
	return o, nil
}

// Name implements Optimizer.
func (o *AdamW) Name() string { return "adamw_torch" }

// StepCount is the number of updates parameter i (in group order) has had.
func (o *AdamW) StepCount(i int) int64 { return o.steps[i] }

func (o *AdamW) ensureState(i int) {
	n := len(o.slots[i].p.Data)
	if o.cfg.Float64State {
		if o.m64[i] == nil {
			o.m64[i], o.v64[i] = make([]float64, n), make([]float64, n)
		}
	} else if o.m32[i] == nil {
		o.m32[i], o.v32[i] = make([]float32, n), make([]float32, n)
	}
}

// Step implements Optimizer.
func (o *AdamW) Step(lr float64) {
	for i, s := range o.slots {
		if s.p.Grad == nil {
			o.coef[i].active = false
			continue
		}
		o.ensureState(i)
		o.steps[i]++
		glr := lr * o.lrScale(s.group)
		t := float64(o.steps[i])
		o.coef[i] = adamCoef{
			active:   true,
			decay:    1 - glr*o.groups[s.group].WeightDecay,
			stepSize: glr / (1 - math.Pow(o.cfg.Beta1, t)),
			bc2Sqrt:  math.Sqrt(1 - math.Pow(o.cfg.Beta2, t)),
		}
	}
	o.parallel(o.run)
}

func (o *AdamW) update(lo, hi int) {
	for i := o.first(lo); i < len(o.slots) && o.slots[i].off < hi; i++ {
		c := o.coef[i]
		if !c.active {
			continue
		}
		a, b := o.span(i, lo, hi)
		p := o.slots[i].p
		if o.cfg.Float64State {
			adamw64(p.Data[a:b], p.Grad[a:b], o.m64[i][a:b], o.v64[i][a:b], c, o.cfg)
		} else {
			adamw32(p.Data[a:b], p.Grad[a:b], o.m32[i][a:b], o.v32[i][a:b], c, o.cfg)
		}
	}
}

// adamw32 performs torch's float32 arithmetic operation by operation:
// mul_(decay); exp_avg.lerp_(g, 1−β1); exp_avg_sq.mul_(β2).addcmul_(g, g,
// 1−β2); denom = sqrt(v)/bc2Sqrt + eps; p.addcdiv_(m, denom, −stepSize).
func adamw32(p, g, m, v []float32, c adamCoef, cfg Config) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	decay := float32(c.decay)
	w := float32(1 - cfg.Beta1) // lerp weight
	omw := 1 - w
	b2 := float32(cfg.Beta2)
	omb2 := float32(1 - cfg.Beta2)
	ss := float32(c.stepSize)
	bc2 := float32(c.bc2Sqrt)
	eps := float32(cfg.Eps)
	smallW := w < 0.5 // torch's lerp picks its formula by the weight
	for j := range p {
		gj := g[j]
		var mj float32
		if smallW {
			mj = m[j] + w*(gj-m[j])
		} else {
			mj = gj - (gj-m[j])*omw
		}
		vj := v[j]*b2 + omb2*gj*gj
		m[j], v[j] = mj, vj
		den := float32(math.Sqrt(float64(vj)))/bc2 + eps
		p[j] = p[j]*decay - ss*mj/den
	}
}

func adamw64(p, g []float32, m, v []float64, c adamCoef, cfg Config) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	w, b2, omb2 := 1-cfg.Beta1, cfg.Beta2, 1-cfg.Beta2
	for j := range p {
		gj := float64(g[j])
		mj := m[j] + w*(gj-m[j])
		vj := v[j]*b2 + omb2*gj*gj
		m[j], v[j] = mj, vj
		den := math.Sqrt(vj)/c.bc2Sqrt + cfg.Eps
		p[j] = float32(float64(p[j])*c.decay - c.stepSize*mj/den)
	}
}

// Moments returns parameter p's first and second moments and its step
// count; ok is false when p is not in this optimizer or has had no update
// (or the state is kept in float64).
func (o *AdamW) Moments(p *nn.Param) (m, v []float32, steps int64, ok bool) {
	i := o.slotByName(p.Name)
	if i < 0 || o.slots[i].p != p || o.cfg.Float64State || o.m32[i] == nil {
		return nil, nil, 0, false
	}
	return o.m32[i], o.v32[i], o.steps[i], true
}

// SetMoments replaces parameter p's moments and step count: the state of
// updates made elsewhere (on a GPU), so that checkpoints hold it.
func (o *AdamW) SetMoments(p *nn.Param, m, v []float32, steps int64) error {
	i := o.slotByName(p.Name)
	if i < 0 || o.slots[i].p != p {
		return fmt.Errorf("adamw: %s is not one of this optimizer's parameters", p.Name)
	}
	if o.cfg.Float64State {
		return fmt.Errorf("adamw: %s: the state is kept in float64", p.Name)
	}
	n := len(p.Data)
	if len(m) != n || len(v) != n {
		return fmt.Errorf("adamw: %s: moments of %d and %d values, want %d", p.Name, len(m), len(v), n)
	}
	o.m32[i], o.v32[i], o.steps[i] = append([]float32(nil), m...), append([]float32(nil), v...), steps
	return nil
}
