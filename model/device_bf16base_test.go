package model

import (
	"math"
	"runtime"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
	"gotune/nn"
)

// TestDeviceBF16Base: a base loaded in bf16 (the linear layers hold nn.BF16 weights
// and no float parameter, as model.Load with Storage BF16 leaves them)
// goes to the device and scores as the model whose float weights hold the
// same rounded values, and the host model is left as it was (on the
// reference and the CPU backend).
func TestDeviceBF16Base(t *testing.T) {
	onBackends(t, testDeviceBF16Base)
}

func testDeviceBF16Base(t *testing.T, be compute.Backend) {
	m := tinyModel(t, "ref-qwen3", 25)
	b := gradBatch(m.Cfg.Vocab)
	want := bf16Base(t, m, b)
	dm, err := NewDeviceModel(m, be, DeviceOptions{Compute: compute.F32, Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	got, err := dm.TokenLogProbs(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-5*math.Max(1, math.Abs(want[i])) {
			t.Errorf("token %d: log p %.7g, float weights %.7g", i, got[i], want[i])
		}
	}
	for _, l := range m.Linears() {
		if l.F32() != nil {
			t.Fatalf("%s: the host layer got a float weight", l.Name)
		}
	}
}

// bf16Base rounds m's linear weights to bf16, returns the log-probabilities
// of b under the rounded float weights on the reference backend, and
// leaves m as a bf16 load does: nn.BF16 weights and no float parameter.
func bf16Base(t *testing.T, m *Model, b *Batch) []float64 {
	t.Helper()
	var held []nn.Weight
	for _, l := range m.Linears() {
		w := l.F32()
		bw := nn.NewBF16(w.Data, l.Out, l.In)
		bw.Dense(w.Data)
		held = append(held, bw)
	}
	want := refTokenLogProbs(t, m, b, 1)
	for i, l := range m.Linears() {
		l.W = held[i]
	}
	return want
}

// TestDeviceBF16BaseHeldInPlace: on the CPU backend a bf16 base is not
// expanded: every frozen linear weight of the device copy is the host's
// 16-bit words (a BF16 tensor in F32 compute), the heap does not grow by a
// float copy of them, and scoring equals the rounded float weights' on the
// reference backend, in F32 compute and within bf16's tolerance in BF16
// compute.
func TestDeviceBF16BaseHeldInPlace(t *testing.T) {
	m := tinyModel(t, "ref-qwen3", 25)
	b := gradBatch(m.Cfg.Vocab)
	want := bf16Base(t, m, b)
	bytes := 0
	for _, l := range m.Linears() {
		bytes += 2 * int(l.W.Bytes())
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	dm, err := NewDeviceModel(m, cputest.Open(), DeviceOptions{Compute: compute.F32, Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > int64(bytes)/4 {
		t.Errorf("the heap grew by %d bytes for the device copy; a float copy of the linear weights is %d", grew, bytes)
	}
	for _, l := range dm.layers {
		for _, lin := range []*dlinear{l.q, l.k, l.v, l.o, l.gate, l.up, l.down} {
			if lin.w.w.DType() != compute.BF16 {
				t.Fatalf("layer %d: a frozen weight is held as %v, want the host's bf16 words", l.index, lin.w.w.DType())
			}
		}
	}
	for _, ct := range []compute.DType{compute.F32, compute.BF16} {
		d := dm
		tol := 1e-5
		if ct == compute.BF16 {
			if d, err = NewDeviceModel(m, cputest.Open(), DeviceOptions{Compute: ct, Inference: true}); err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			tol = 5e-2
		}
		got, err := d.TokenLogProbs(b)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if math.Abs(got[i]-want[i]) > tol*math.Max(1, math.Abs(want[i])) {
				t.Errorf("%v compute: token %d: log p %.7g, float weights %.7g", ct, i, got[i], want[i])
			}
		}
	}
}
