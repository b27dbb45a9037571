package model

import (
	"errors"
	"fmt"

	"gotune/compute"
)

// devicePolicy is what a policy-gradient stage (GRPO) needs of the device
// model beyond scoring: the entropy metric and a reference policy for full
// and freeze tuning.
type devicePolicy struct {
	entropy   bool
	entropies []float64
	// ref holds, per trainable arena, the weights as KeepReference found
	// them, in the type the products read; on is set while WithReference
	// points the model at them.
	ref []compute.Tensor
	on  bool
}

// SetEntropy makes TokenLogProbs also compute the entropy of the predicted
// distribution at every trained token (TokenEntropies: TRL's entropy
// metric).
func (dm *DeviceModel) SetEntropy(on bool) { dm.policy.entropy = on }

// TokenEntropies returns, after SetEntropy(true), the entropy (nats) of the
// distribution (at the model's Temperature) predicted at each token of the
// last TokenLogProbs, in the same order; nil otherwise.
func (dm *DeviceModel) TokenEntropies() []float64 {
	if !dm.policy.entropy {
		return nil
	}
	return dm.policy.entropies
}

// entropyGrad is the float scratch the entropy's softmax goes into: the
// loss's gradient buffer when that is float anyway.
func (dm *DeviceModel) entropyGrad(n int) compute.Tensor {
	if dm.act == compute.F32 {
		return dm.buf("dlogits", compute.F32, n)
	}
	return dm.buf("entropy_p", compute.F32, n)
}

// KeepReference copies the trainable weights as they are now, in the type
// the products read, for WithReference: GRPO's KL reference under full and
// freeze tuning (one more copy of the trainable weights on the device, the
// host's reference copy then not needed).
func (dm *DeviceModel) KeepReference() error {
	if dm.policy.ref != nil {
		return errors.New("device model: a reference is kept already")
	}
	for _, g := range dm.groups {
		dt := compute.F32
		if g.w != nil {
			dt = g.w.DType()
		}
		t, err := dm.alloc(dt, g.n)
		if err != nil {
			dm.policy.ref = nil
			return fmt.Errorf("device model: reference copy of %d trainable values: %w", g.n, err)
		}
		dm.be.Cast(t, g.master)
		dm.policy.ref = append(dm.policy.ref, t)
	}
	return dm.be.Err()
}

// WithReference makes the passes that follow read the weights KeepReference
// kept, until restore: scoring only, BackwardTokens refuses meanwhile.
func (dm *DeviceModel) WithReference() (restore func(), err error) {
	if dm.policy.ref == nil {
		return nil, errors.New("device model: no reference kept")
	}
	if dm.policy.on {
		return nil, errors.New("device model: the reference is on already")
	}
	dm.pointWeights(dm.policy.ref)
	dm.policy.on = true
	return func() {
		dm.pointWeights(nil)
		dm.policy.on = false
	}, nil
}

// pointWeights makes every trainable parameter (and every fused LoRA
// group) read its weights from arenas[i] for group i, or from the group's
// own weights when arenas is nil.
func (dm *DeviceModel) pointWeights(arenas []compute.Tensor) {
	arena := map[*dgroup]compute.Tensor{}
	for i, g := range dm.groups {
		switch {
		case arenas != nil:
			arena[g] = arenas[i]
		case g.w != nil:
			arena[g] = g.w
		default:
			arena[g] = g.master
		}
		for _, p := range g.params {
			p.w = arena[g].Slice(p.off, p.n)
		}
	}
	for _, l := range dm.layers {
		for _, lg := range []*loraGroup{l.qkv, l.gu} {
			if lg != nil {
				first := lg.lins[0].lora.a
				lg.a = arena[first.grp].Slice(first.off, lg.rows*lg.in)
			}
		}
	}
}

// entropies turns the losses and Σ (p − onehot)·z of the scored tokens
// into their entropies.
func (dm *DeviceModel) entropies(losses []float32, dots compute.Tensor) error {
	d := make([]float32, len(losses))
	if err := dm.be.Download(d, dots); err != nil {
		return err
	}
	e := dm.policy.entropies[:0]
	for i, l := range losses {
		e = append(e, float64(l)-float64(d[i]))
	}
	dm.policy.entropies = e
	return nil
}
