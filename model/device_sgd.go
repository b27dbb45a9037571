package model

import (
	"fmt"

	"gotune/compute"
	"gotune/nn"
)

// SGDConfig are torch.optim.SGD's hyperparameters.
type SGDConfig struct {
	LR, WeightDecay, Momentum, Dampening float64
	Nesterov                             bool
	// MaxGradNorm clips the global gradient norm first (0: no clipping).
	MaxGradNorm float64
}

// ApplySGD applies one SGD update to every trainable parameter given the
// gradients' global norm (for clipping). The momentum buffers are the
// arenas AdamW would keep its first moments in: a model trains with one
// optimizer.
func (dm *DeviceModel) ApplySGD(c SGDConfig, norm float64) error {
	gscale := 1.0
	if c.MaxGradNorm > 0 && norm > c.MaxGradNorm {
		gscale = c.MaxGradNorm / (norm + 1e-6)
	}
	for _, g := range dm.groups {
		wd := 0.0
		if g.decay {
			wd = c.WeightDecay
		}
		var buf compute.Tensor
		if c.Momentum != 0 {
			buf = g.m
		}
		first := !g.momentum
		dm.be.SGD(g.master, g.grad, buf, g.w, compute.SGDStep{GradScale: float32(gscale), LR: float32(c.LR * g.lrScale),
			WeightDecay: float32(wd), Momentum: float32(c.Momentum), Dampening: float32(c.Dampening), Nesterov: c.Nesterov, First: first})
		g.steps++
		g.momentum = c.Momentum != 0
	}
	return dm.be.Err()
}

// MomentumBuffer downloads a trainable parameter's SGD momentum buffer;
// ok is false before the first update with momentum (torch has none then).
func (dm *DeviceModel) MomentumBuffer(p *nn.Param) (buf []float32, ok bool, err error) {
	d := dm.byHost[p]
	if d == nil || !d.trainable {
		return nil, false, fmt.Errorf("device model: %s is not trained on the device", p.Name)
	}
	if !d.grp.momentum {
		return nil, false, nil
	}
	buf = make([]float32, d.n)
	return buf, true, dm.be.Download(buf, d.m)
}

// SetMomentumBuffer uploads a parameter's SGD momentum buffer (resume);
// the next update then continues it rather than starting one.
func (dm *DeviceModel) SetMomentumBuffer(p *nn.Param, buf []float32) error {
	d := dm.byHost[p]
	if d == nil || !d.trainable {
		return fmt.Errorf("device model: %s is not trained on the device", p.Name)
	}
	if len(buf) != d.n {
		return fmt.Errorf("device model: %s: momentum buffer of %d values, want %d", p.Name, len(buf), d.n)
	}
	dm.be.Upload(d.m, buf)
	d.grp.momentum = true
	return dm.be.Err()
}
