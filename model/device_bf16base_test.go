package model

import (
	"math"
	"testing"

	"gotune/compute"
	"gotune/compute/ref"
	"gotune/dtype"
)

// TestDeviceBF16Base: a base loaded in bf16 (the linear layers hold WBF16
// and no float parameter, as model.Load with Storage BF16 leaves them)
// goes to the device and scores as on the CPU, and the host model is left
// as it was.
func TestDeviceBF16Base(t *testing.T) {
	m := tinyModel(t, "ref-qwen3", 25)
	for _, l := range m.Linears() {
		l.WBF16 = make([]uint16, len(l.W.Data))
		dtype.F32ToBF16(l.WBF16, l.W.Data)
		l.W = nil
	}
	b := gradBatch(m.Cfg.Vocab)
	want := m.NewWorkspace().TokenLogProbs(b)
	dm, err := NewDeviceModel(m, ref.New(), DeviceOptions{Compute: compute.F32, Inference: true})
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
			t.Errorf("token %d: log p %.7g, CPU %.7g", i, got[i], want[i])
		}
	}
	for _, l := range m.Linears() {
		if l.W != nil {
			t.Fatalf("%s: the host layer got a float weight", l.Name)
		}
	}
}
