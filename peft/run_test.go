package peft

import (
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
	"gotune/model"
)

// run evaluates a host model with its method attached through the block
// over the compute seam on the CPU backend. Every call copies the model
// afresh, so it sees the host weights as they are at that moment (the
// finite-difference checks change them between calls).
type run struct {
	t          testing.TB
	m          *model.Model
	Checkpoint bool
}

func newRun(t testing.TB, m *model.Model) *run { return &run{t: t, m: m} }

func (r *run) device(inference bool) *model.DeviceModel {
	r.t.Helper()
	dm, err := model.NewDeviceModel(r.m, cputest.Open(), model.DeviceOptions{Compute: compute.F32, Inference: inference, Checkpoint: r.Checkpoint})
	if err != nil {
		r.t.Fatal(err)
	}
	return dm
}

// Logits are the logits of every position of b.
func (r *run) Logits(b *model.Batch) []float32 {
	r.t.Helper()
	dm := r.device(true)
	defer dm.Close()
	lg, err := dm.Logits(b)
	if err != nil {
		r.t.Fatal(err)
	}
	return lg
}

// Loss is the summed loss of b's trained tokens and their count.
func (r *run) Loss(b *model.Batch) (float64, int) {
	r.t.Helper()
	dm := r.device(true)
	defer dm.Close()
	s, n, err := dm.Loss(b)
	if err != nil {
		r.t.Fatal(err)
	}
	return s, n
}

// Step runs forward and backward and adds the gradient of scale·loss to
// the host parameters' Grad, as a training step accumulates it.
func (r *run) Step(b *model.Batch, scale float32) (float64, int) {
	r.t.Helper()
	dm := r.device(false)
	defer dm.Close()
	s, n, err := dm.Step(b, scale)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, p := range dm.Trainable() {
		g, err := dm.Grad(p)
		if err != nil {
			r.t.Fatal(err)
		}
		for i, v := range g {
			p.Grad[i] += v
		}
	}
	return s, n
}

// newSession is a key/value-cache decoding session of m on the CPU backend.
func newSession(t testing.TB, m *model.Model, maxLen int) *model.DeviceSession {
	t.Helper()
	dm, err := model.NewDeviceModel(m, cputest.Open(), model.DeviceOptions{Compute: compute.F32, Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dm.Close)
	s, err := dm.NewSession(maxLen)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
