package train

import (
	"errors"
	"fmt"

	"gotune/compute"
	"gotune/model"
	"gotune/optim"
)

// Options are the choices of New beyond the configuration.
type Options struct {
	// Backend runs the training steps (required): weights, activations,
	// gradients and optimizer state live there, and the host copy is
	// brought up to date before every checkpoint and at the end.
	Backend compute.Backend
	// Fallback, when set, takes a run that Backend cannot (a model or
	// method its block does not run yet, too little device memory): the
	// run trains there and says why. Without it such a run is an error.
	// ("auto" gives CUDA as Backend and the CPU backend as Fallback.)
	Fallback compute.Backend
}

// deviceUnsupported says what of this run the device path cannot do yet,
// or "" (the model side is checked by model.NewDeviceModel).
func (t *Trainer) deviceUnsupported() string {
	c := t.Cfg
	switch t.opt.(type) {
	case *optim.AdamW, *optim.SGD, *optim.AdamW8bit:
		return ""
	}
	return fmt.Sprintf("optim %q (adamw_torch, adamw_8bit and sgd run on the device block)", c.Optim)
}

// attachDevice copies the model to o.Backend, or to o.Fallback when
// o.Backend cannot take the run.
func (t *Trainer) attachDevice(o Options) error {
	if t.Cfg.Optim == "paged_adamw_8bit" {
		t.printf("note: optim paged_adamw_8bit trains as adamw_8bit: its 8-bit state stays in device memory (no paging needed)\n")
	}
	if o.Backend == nil {
		return errors.New("train: no compute backend to train on (train.Options.Backend)")
	}
	err := t.attachTo(o.Backend)
	if err == nil {
		return nil
	}
	if o.Fallback == nil {
		return fmt.Errorf("device %s: %w", o.Backend.Name(), err)
	}
	t.printf("note: training on %s: %s cannot run this: %v\n", o.Fallback.Name(), o.Backend.Name(), err)
	if err := t.attachTo(o.Fallback); err != nil {
		return fmt.Errorf("device %s: %w", o.Fallback.Name(), err)
	}
	return nil
}

// attachTo copies the model to be for training.
func (t *Trainer) attachTo(be compute.Backend) error {
	if why := t.deviceUnsupported(); why != "" {
		return errors.New(why)
	}
	// fp16 trains in bf16 on a GPU: same range as f32, no loss scaling. On
	// the CPU both compute in f32 over a bf16 base (loadModel).
	dt := compute.ComputeType(be, t.Cfg.BF16 || t.Cfg.FP16)
	// The optimizer's groups give each parameter its learning-rate scale
	// (LoRA+ trains the B matrices faster).
	scales := map[string]float64{}
	for _, g := range t.opt.Groups() {
		for _, p := range g.Params {
			scales[p.Name] = g.LRScale
		}
	}
	lrScale := func(name string) float64 {
		if s, ok := scales[name]; ok && s != 0 {
			return s
		}
		return 1
	}
	_, adam8 := t.opt.(*optim.AdamW8bit)
	dm, err := model.NewDeviceModel(t.Model, be, model.DeviceOptions{Compute: dt, Decays: optim.Decays, LRScale: lrScale,
		Checkpoint: t.Cfg.UseGradientCheckpointing(), HostViews: true, Adam8bit: adam8})
	if err != nil {
		return err
	}
	t.dev = dm
	t.printf("device: %s, %s\n", be.Name(), dt)
	return nil
}

// deviceResumed brings the device copy up to what a checkpoint restored on
// the host: trainable weights and AdamW state.
func (t *Trainer) deviceResumed() error {
	if err := t.dev.LoadTrainableFromHost(); err != nil {
		return err
	}
	switch o := t.opt.(type) {
	case *optim.AdamW:
		for _, p := range t.Params {
			if m, v, steps, ok := o.Moments(p); ok {
				if err := t.dev.SetAdamState(p, m, v, steps); err != nil {
					return err
				}
			}
		}
	case *optim.SGD:
		for _, p := range t.Params {
			if buf, ok := o.MomentumBuffer(p); ok {
				if err := t.dev.SetMomentumBuffer(p, buf); err != nil {
					return err
				}
			}
		}
	case *optim.AdamW8bit:
		return t.deviceResumed8bit(o)
	}
	return nil
}

// syncFromDevice copies trained weights and AdamW state from the device to
// the host model and optimizer, which checkpoints and exports save.
func (t *Trainer) syncFromDevice() error {
	if err := t.dev.CopyToHost(); err != nil {
		return err
	}
	if o, ok := t.opt.(*optim.SGD); ok {
		if o.Config().Momentum == 0 {
			return nil // plain SGD keeps no state
		}
		for _, p := range t.Params {
			buf, ok, err := t.dev.MomentumBuffer(p)
			if err != nil {
				return err
			}
			if ok {
				if err := o.SetMomentumBuffer(p, buf); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if o, ok := t.opt.(*optim.AdamW8bit); ok {
		return t.syncFromDevice8bit(o)
	}
	adam := t.opt.(*optim.AdamW)
	for _, p := range t.Params {
		m, v, steps, err := t.dev.AdamState(p)
		if err != nil {
			return err
		}
		if steps == 0 {
			continue
		}
		if err := adam.SetMoments(p, m, v, steps); err != nil {
			return err
		}
	}
	return nil
}

// accumulate runs forward and backward over the micro-batches of one
// optimizer step. Each token's loss is weighted by 1/(trained tokens of all
// micro-batches together), so k micro-batches give exactly the gradient of
// one batch holding them all, however unevenly their tokens are spread. It
// returns the summed loss and the trained-token count.
func (t *Trainer) accumulate(batches []*model.Batch) (float64, int, error) {
	trained := 0
	for _, mb := range batches {
		trained += mb.TrainedTokens()
	}
	if trained == 0 {
		return 0, 0, nil
	}
	var sum float64
	for _, mb := range batches {
		s, _, err := t.dev.Step(mb, float32(1/float64(trained)))
		if err != nil {
			return 0, 0, err
		}
		sum += s
	}
	return sum, trained, nil
}

func (t *Trainer) zeroGrad() { t.dev.ZeroGrad() }

// gradNorm returns the gradients' global norm (the device clips inside its
// update).
func (t *Trainer) gradNorm() (float64, error) { return t.dev.GradNorm() }

func (t *Trainer) optimizerStep(lr, norm float64) error {
	c := t.Cfg
	if o, ok := t.opt.(*optim.SGD); ok {
		oc := o.Config()
		return t.dev.ApplySGD(model.SGDConfig{LR: lr, WeightDecay: c.WeightDecay, Momentum: oc.Momentum, Dampening: oc.Dampening,
			Nesterov: oc.Nesterov, MaxGradNorm: c.MaxGradNorm}, norm)
	}
	return t.dev.ApplyAdamW(model.AdamWConfig{LR: lr, WeightDecay: c.WeightDecay, Beta1: c.AdamBeta1, Beta2: c.AdamBeta2,
		Eps: c.AdamEpsilon, MaxGradNorm: c.MaxGradNorm}, norm)
}

// loss is the summed loss and trained tokens of one batch without training.
func (t *Trainer) loss(b *model.Batch) (float64, int, error) {
	return t.dev.Loss(b)
}

// Close releases the device copy of the model.
func (t *Trainer) Close() {
	if t.grpo != nil {
		t.grpo.closeSession()
	}
	if t.dev != nil {
		t.dev.Close()
		t.dev = nil
	}
}
