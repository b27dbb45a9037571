package train

import (
	"errors"
	"fmt"

	"gotune/compute"
	"gotune/model"
	"gotune/optim"
)

// Options are the choices of NewWithOptions beyond the configuration.
type Options struct {
	// Backend, when set, runs the training steps on that device: weights,
	// activations, gradients and AdamW state live there, and the host copy
	// is brought up to date before every checkpoint and at the end.
	Backend compute.Backend
	// Required makes a run that cannot use Backend an error; otherwise it
	// trains on the CPU and says why.
	Required bool
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

// requireDeviceFor8bit refuses an 8-bit AdamW run that ends up without a
// device: the CPU Workspace keeps float optimizer state only. why says
// what kept the device away ("" when none was asked for).
func (t *Trainer) requireDeviceFor8bit(why string) error {
	if _, ok := t.opt.(*optim.AdamW8bit); !ok || t.dev != nil {
		return nil
	}
	msg := fmt.Sprintf("optim %s keeps 8-bit optimizer state, which only the device block has: train with device: host (the CPU as a compute backend) or cuda", t.Cfg.Optim)
	if why != "" {
		msg += "; here the device could not be used: " + why
	}
	return errors.New(msg)
}

// attachDevice copies the model to o.Backend, or explains why it stays on
// the CPU.
func (t *Trainer) attachDevice(o Options) error {
	if t.Cfg.Optim == "paged_adamw_8bit" {
		t.printf("note: optim paged_adamw_8bit trains as adamw_8bit: its 8-bit state stays in device memory (no paging needed)\n")
	}
	if o.Backend == nil {
		return t.requireDeviceFor8bit("")
	}
	fail := func(err error) error {
		if o.Required {
			return fmt.Errorf("device %s: %w", o.Backend.Name(), err)
		}
		if err := t.requireDeviceFor8bit(err.Error()); err != nil {
			return err
		}
		t.printf("note: training on the CPU: %s cannot run this yet: %v\n", o.Backend.Name(), err)
		return nil
	}
	if why := t.deviceUnsupported(); why != "" {
		return fail(errors.New(why))
	}
	dt := compute.F32
	if t.Cfg.BF16 || t.Cfg.FP16 {
		// fp16 trains in bf16 on the GPU: same range as f32, no loss scaling.
		dt = compute.BF16
	}
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
	dm, err := model.NewDeviceModel(t.Model, o.Backend, model.DeviceOptions{Compute: dt, Decays: optim.Decays, LRScale: lrScale,
		Checkpoint: t.Cfg.UseGradientCheckpointing(), HostViews: true, Adam8bit: adam8})
	if err != nil {
		return fail(err)
	}
	t.dev = dm
	t.printf("device: %s, %s\n", o.Backend.Name(), dt)
	return nil
}

// deviceResumed brings the device copy up to what a checkpoint restored on
// the host: trainable weights and AdamW state.
func (t *Trainer) deviceResumed() error {
	if t.dev == nil {
		return nil
	}
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
	if t.dev == nil {
		return nil
	}
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

// accumulate is Accumulate on whichever device trains.
func (t *Trainer) accumulate(batches []*model.Batch) (float64, int, error) {
	if t.dev == nil {
		sum, trained := Accumulate(t.ws, batches)
		return sum, trained, nil
	}
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

func (t *Trainer) zeroGrad() {
	if t.dev != nil {
		t.dev.ZeroGrad()
		return
	}
	t.opt.ZeroGrad()
}

// gradNorm returns the gradients' global norm; on the CPU it also clips
// them (the device clips inside its update).
func (t *Trainer) gradNorm() (float64, error) {
	if t.dev == nil {
		return optim.ClipGradNorm(t.Params, t.Cfg.MaxGradNorm), nil
	}
	return t.dev.GradNorm()
}

func (t *Trainer) optimizerStep(lr, norm float64) error {
	if t.dev == nil {
		t.opt.Step(lr)
		return nil
	}
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
	if t.dev == nil {
		s, n := t.ws.Loss(b)
		return s, n, nil
	}
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
