package model

import (
	"math/rand/v2"
	"testing"

	"gotune/compute"
	"gotune/compute/ref"
	"gotune/nn"
	"gotune/quant"
)

// TestSharedWeights: device copies of two clones of one model, each with its
// own adapter, hold the base once: the second copy adds only its adapter's
// memory, both score as a copy of their own made alone, and the base stays
// on the device until the last copy closes.
func TestSharedWeights(t *testing.T) {
	base := tinyModel(t, "ref-qwen3", 31)
	b := gradBatch(base.Cfg.Vocab)
	r := rand.New(rand.NewPCG(7, 8))
	clone := func() *Model {
		m := base.Clone()
		for _, l := range m.Linears() {
			a := &nn.Param{Name: l.Name + ".lora_A", Shape: []int{2, l.In}, Data: randVec32(r, 2*l.In, 0.3)}
			bb := &nn.Param{Name: l.Name + ".lora_B", Shape: []int{l.Out, 2}, Data: randVec32(r, 2*l.Out, 0.3)}
			l.Adapter = &testLoRA{a: a, b: bb, scale: 1}
		}
		return m
	}
	m1, m2 := clone(), clone()
	want1 := refTokenLogProbs(t, m1, b, 1)
	want2 := refTokenLogProbs(t, m2, b, 1)

	be := ref.New()
	alone, err := NewDeviceModel(m1, be, DeviceOptions{Compute: compute.F32, Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	own := be.MemStats().InUse
	alone.Close()

	shared := NewSharedWeights(be)
	d1, err := NewDeviceModel(m1, be, DeviceOptions{Compute: compute.F32, Inference: true, Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	one := be.MemStats().InUse
	d2, err := NewDeviceModel(m2, be, DeviceOptions{Compute: compute.F32, Inference: true, Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	two := be.MemStats().InUse
	var adapter int64
	for _, l := range m2.Linears() {
		adapter += int64(4 * (2*l.In + 2*l.Out))
	}
	if one != own || two-one != adapter {
		t.Errorf("device memory: alone %d, first shared copy %d, second adds %d bytes; want the same, then only the adapter's %d", own, one, two-one, adapter)
	}
	for i, c := range []struct {
		dm   *DeviceModel
		want []float64
	}{{d1, want1}, {d2, want2}} {
		got, err := c.dm.TokenLogProbs(b)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(got, c.want); d > 1e-5 {
			t.Errorf("copy %d: log p differs from its model alone by %.3g", i+1, d)
		}
		c.dm.freeShape()
	}
	d1.Close()
	if got, err := d2.TokenLogProbs(b); err != nil || maxAbsDiff(got, want2) > 1e-5 {
		t.Errorf("the second copy after the first closed: %v", err)
	}
	d2.Close()
	if left := be.MemStats().InUse; left != 0 {
		t.Errorf("%d bytes still held after both copies closed", left)
	}
}

func maxAbsDiff(a, b []float64) float64 {
	var d float64
	for i := range a {
		d = max(d, abs(a[i]-b[i]))
	}
	return d
}

// TestSharedWeightsBF16Base: on a backend whose memory is not the host's,
// copies of clones of a bf16 base upload each bf16 weight once (the second
// copy adds nothing), and score as a copy made alone.
func TestSharedWeightsBF16Base(t *testing.T) {
	base := tinyModel(t, "ref-qwen3", 32)
	if err := base.StoreLinears(quant.Options{Type: quant.BF16}); err != nil {
		t.Fatal(err)
	}
	b := gradBatch(base.Cfg.Vocab)
	be := ref.New()
	alone, err := NewDeviceModel(base.Clone(), be, DeviceOptions{Compute: compute.F32, Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	want, err := alone.TokenLogProbs(b)
	if err != nil {
		t.Fatal(err)
	}
	alone.Close()
	shared := NewSharedWeights(be)
	var held []int64
	var copies []*DeviceModel
	for range 2 {
		dm, err := NewDeviceModel(base.Clone(), be, DeviceOptions{Compute: compute.F32, Inference: true, Shared: shared})
		if err != nil {
			t.Fatal(err)
		}
		copies = append(copies, dm)
		held = append(held, be.MemStats().InUse)
	}
	if held[1] != held[0] {
		t.Errorf("device memory: first copy %d, second adds %d bytes; want nothing added", held[0], held[1]-held[0])
	}
	for i, dm := range copies {
		got, err := dm.TokenLogProbs(b)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(got, want); d != 0 {
			t.Errorf("copy %d: log p differs from a copy alone by %.3g", i+1, d)
		}
		dm.freeShape()
	}
	for _, dm := range copies {
		dm.Close()
	}
	if left := be.MemStats().InUse; left != 0 {
		t.Errorf("%d bytes still held after both copies closed", left)
	}
}
