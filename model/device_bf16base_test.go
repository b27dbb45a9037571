package model

import (
	"math"
	"testing"

	"gotune/compute"
	"gotune/dtype"
)

// TestDeviceBF16Base: a base loaded in bf16 (the linear layers hold WBF16
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
	for _, l := range m.Linears() {
		l.WBF16 = make([]uint16, len(l.W.Data))
		dtype.F32ToBF16(l.WBF16, l.W.Data)
		for i, v := range l.WBF16 {
			l.W.Data[i] = math.Float32frombits(uint32(v) << 16)
		}
	}
	want := refTokenLogProbs(t, m, b, 1)
	for _, l := range m.Linears() {
		l.W = nil
	}
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
		if l.W != nil {
			t.Fatalf("%s: the host layer got a float weight", l.Name)
		}
	}
}
