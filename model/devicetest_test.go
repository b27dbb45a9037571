package model

import (
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
	"gotune/compute/ref"
	"gotune/nn"
)

// The package's tests run the block over the compute seam (DeviceModel).
// The tests of the block's math run on the CPU backend, the default, and on
// the reference backend (float64 loops); the device tests compare a backend
// with the reference backend or with an oracle independent of the block
// (full-sequence logits for the caches, merged weights for LoRA).

// testBackend is a backend the math tests run on, by name.
type testBackend struct {
	name string
	be   compute.Backend
}

// mathBackends are the CPU backend and the reference backend.
func mathBackends() []testBackend {
	return []testBackend{{"cpu", cputest.Open()}, {"ref", ref.New()}}
}

// onBackends runs f as a subtest on each of mathBackends.
func onBackends(t *testing.T, f func(t *testing.T, be compute.Backend)) {
	for _, b := range mathBackends() {
		t.Run(b.name, func(t *testing.T) { f(t, b.be) })
	}
}

// newDM copies m to be in f32 (or as o says), closing the copy when the
// test ends.
func newDM(t testing.TB, m *Model, be compute.Backend, o DeviceOptions) *DeviceModel {
	t.Helper()
	if o.Compute == 0 {
		o.Compute = compute.F32
	}
	dm, err := NewDeviceModel(m, be, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dm.Close)
	return dm
}

// deviceLogits is dm.Logits, failing the test on an error: the logits of
// every position ([B·T, Vocab], T counting an attached method's virtual
// tokens), soft cap applied, without temperature.
func deviceLogits(t testing.TB, dm *DeviceModel, b *Batch) []float32 {
	t.Helper()
	lg, err := dm.Logits(b)
	if err != nil {
		t.Fatal(err)
	}
	return lg
}

// logitsOn is deviceLogits of a fresh inference copy of m on be.
func logitsOn(t testing.TB, m *Model, be compute.Backend, b *Batch) []float32 {
	t.Helper()
	dm := newDM(t, m, be, DeviceOptions{Inference: true})
	defer dm.Close()
	return deviceLogits(t, dm, b)
}

// refLogits is logitsOn the reference backend: the oracle of the caches.
func refLogits(t testing.TB, m *Model, b *Batch) []float32 {
	t.Helper()
	return logitsOn(t, m, ref.New(), b)
}

// deviceGrads downloads the gradient of each of ps from dm.
func deviceGrads(t testing.TB, dm *DeviceModel, ps []*nn.Param) [][]float32 {
	t.Helper()
	out := make([][]float32, len(ps))
	for i, p := range ps {
		g, err := dm.Grad(p)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = g
	}
	return out
}

// refStep runs one step of b on a fresh f32 copy of m on the reference
// backend, returning the loss, the trained tokens and the gradient of each
// of m's trainable parameters (by parameter).
func refStep(t testing.TB, m *Model, b *Batch, scale float32) (float64, int, map[*nn.Param][]float32) {
	t.Helper()
	dm := newDM(t, m, ref.New(), DeviceOptions{})
	defer dm.Close()
	sum, n, err := dm.Step(b, scale)
	if err != nil {
		t.Fatal(err)
	}
	grads := map[*nn.Param][]float32{}
	for _, p := range dm.Trainable() {
		g, err := dm.Grad(p)
		if err != nil {
			t.Fatal(err)
		}
		grads[p] = g
	}
	return sum, n, grads
}

// mustLoss is dm.Loss, failing the test on an error.
func mustLoss(t testing.TB, dm *DeviceModel, b *Batch) (float64, int) {
	t.Helper()
	s, n, err := dm.Loss(b)
	if err != nil {
		t.Fatal(err)
	}
	return s, n
}

// mustStep is dm.Step, failing the test on an error.
func mustStep(t testing.TB, dm *DeviceModel, b *Batch, scale float32) (float64, int) {
	t.Helper()
	s, n, err := dm.Step(b, scale)
	if err != nil {
		t.Fatal(err)
	}
	return s, n
}

// mustLogProbs is dm.TokenLogProbs, failing the test on an error.
func mustLogProbs(t testing.TB, dm *DeviceModel, b *Batch) []float64 {
	t.Helper()
	lp, err := dm.TokenLogProbs(b)
	if err != nil {
		t.Fatal(err)
	}
	return lp
}

// reload uploads the host's trainable parameters to dm again (after a test
// moved them for a finite difference).
func reload(t testing.TB, dm *DeviceModel) {
	t.Helper()
	if err := dm.LoadTrainableFromHost(); err != nil {
		t.Fatal(err)
	}
}
