package optim

import (
	"fmt"

	"gotune/nn"
)

// SGD is torch.optim.SGD: d = g + wd·p (coupled weight decay); with momentum
// μ, buf = d at the first update and buf·μ + (1−dampening)·d after; d = buf,
// or d + μ·buf with Nesterov; p ← p − lr·d.
type SGD struct {
	params
	cfg    Config
	buf    [][]float32 // momentum buffers, nil until a parameter's first update
	seeded []bool      // buf[i] holds a previous update
	active []bool      // this step: parameter i has a gradient
	lrs    []float64   // this step: learning rate of parameter i's group
	run    func(lo, hi int)
}

// NewSGD builds an SGD optimizer over groups.
func NewSGD(groups []Group, cfg Config) (*SGD, error) {
	switch {
	case cfg.Momentum < 0:
		return nil, fmt.Errorf("sgd: momentum %g; want >= 0", cfg.Momentum)
	case cfg.Nesterov && (cfg.Momentum <= 0 || cfg.Dampening != 0):
		return nil, fmt.Errorf("sgd: nesterov needs momentum > 0 and dampening 0 (got momentum %g, dampening %g)", cfg.Momentum, cfg.Dampening)
	}
	ps, err := newParams(groups)
	if err != nil {
		return nil, fmt.Errorf("sgd: %w", err)
	}
	n := len(ps.slots)
	o := &SGD{params: ps, cfg: cfg, buf: make([][]float32, n), seeded: make([]bool, n),
		active: make([]bool, n), lrs: make([]float64, n)}
	o.run = o.update
	return o, nil
}

// Name implements Optimizer.
func (o *SGD) Name() string { return "sgd" }

// Step implements Optimizer.
func (o *SGD) Step(lr float64) {
	for i, s := range o.slots {
		o.active[i] = s.p.Grad != nil
		o.lrs[i] = lr * o.lrScale(s.group)
		if o.active[i] && o.cfg.Momentum != 0 && o.buf[i] == nil {
			o.buf[i] = make([]float32, len(s.p.Data))
		}
	}
	o.parallel(o.run)
	for i := range o.slots {
		if o.active[i] && o.buf[i] != nil {
			o.seeded[i] = true
		}
	}
}

func (o *SGD) update(lo, hi int) {
	mom := float32(o.cfg.Momentum)
	omd := float32(1 - o.cfg.Dampening)
	for i := o.first(lo); i < len(o.slots) && o.slots[i].off < hi; i++ {
		if !o.active[i] {
			continue
		}
		a, b := o.span(i, lo, hi)
		s := o.slots[i]
		p, g := s.p.Data[a:b], s.p.Grad[a:b]
		g = g[:len(p)]
		wd := float32(o.groups[s.group].WeightDecay)
		nlr := float32(-o.lrs[i])
		var buf []float32
		if o.buf[i] != nil {
			buf = o.buf[i][a:b]
			buf = buf[:len(p)]
		}
		seeded := o.seeded[i]
		for j := range p {
			d := g[j]
			if wd != 0 {
				d += wd * p[j]
			}
			if buf != nil {
				if seeded {
					buf[j] = buf[j]*mom + omd*d
				} else {
					buf[j] = d
				}
				if o.cfg.Nesterov {
					d += mom * buf[j]
				} else {
					d = buf[j]
				}
			}
			p[j] += nlr * d
		}
	}
}

// Config returns the hyper-parameters the optimizer was built with.
func (o *SGD) Config() Config { return o.cfg }

// MomentumBuffer returns parameter p's momentum buffer; ok is false when p
// is not in this optimizer or has none yet (no momentum, or no update).
func (o *SGD) MomentumBuffer(p *nn.Param) (buf []float32, ok bool) {
	i := o.slotByName(p.Name)
	if i < 0 || o.slots[i].p != p || !o.seeded[i] {
		return nil, false
	}
	return o.buf[i], true
}

// SetMomentumBuffer replaces parameter p's momentum buffer: the state of
// updates made elsewhere (on a GPU), so that checkpoints hold it.
func (o *SGD) SetMomentumBuffer(p *nn.Param, buf []float32) error {
	i := o.slotByName(p.Name)
	if i < 0 || o.slots[i].p != p {
		return fmt.Errorf("sgd: %s is not one of this optimizer's parameters", p.Name)
	}
	if len(buf) != len(p.Data) {
		return fmt.Errorf("sgd: %s: momentum buffer of %d values, want %d", p.Name, len(buf), len(p.Data))
	}
	o.buf[i], o.seeded[i] = append([]float32(nil), buf...), true
	return nil
}
