package model

import (
	"bytes"
	"slices"
	"testing"

	"gotune/compute"
	"gotune/compute/ref"
	"gotune/optim"
)

// TestDeviceAdamW8bit: with DeviceOptions.Adam8bit every trainable tensor
// of at least compute.Adam8MinSize elements keeps 8-bit state and the rest
// float state; three updates on the device give the weights and state of
// the host optimizer (optim.AdamW8bit) fed the device's gradients, bit for
// bit — so the arenas' block-aligned parameters quantize exactly as
// per-tensor state — and a state uploaded back continues the same way.
func TestDeviceAdamW8bit(t *testing.T) {
	m, host := tinyModel(t, "ref-qwen2", 41), tinyModel(t, "ref-qwen2", 41)
	setTrainable(m)
	setTrainable(host)
	dm, err := NewDeviceModel(m, ref.New(), DeviceOptions{Compute: compute.F32, Adam8bit: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	opt, err := optim.NewAdamW8bit([]optim.Group{{Params: host.Params(), WeightDecay: 0.01}}, optim.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	q8 := 0
	for _, p := range m.Params() {
		if dm.Adam8bit(p) != (p.Len() >= compute.Adam8MinSize) {
			t.Fatalf("%s (%d values): 8-bit %v", p.Name, p.Len(), dm.Adam8bit(p))
		}
		if dm.Adam8bit(p) {
			q8++
			if _, _, _, err := dm.AdamState(p); err == nil {
				t.Errorf("%s: AdamState of 8-bit state is not an error", p.Name)
			}
		}
	}
	if q8 == 0 || q8 == len(m.Params()) {
		t.Fatalf("%d of %d tensors 8-bit: the test needs both kinds", q8, len(m.Params()))
	}
	b := gradBatch(m.Cfg.Vocab)
	c := AdamWConfig{LR: 1e-2, WeightDecay: 0.01, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
	step := func() {
		t.Helper()
		dm.ZeroGrad()
		if _, _, err := dm.Step(b, 0.05); err != nil {
			t.Fatal(err)
		}
		for i, p := range m.Params() {
			g, err := dm.Grad(p)
			if err != nil {
				t.Fatal(err)
			}
			copy(host.Params()[i].Grad, g)
		}
		if _, err := dm.AdamW(c); err != nil {
			t.Fatal(err)
		}
		opt.Step(c.LR)
	}
	compare := func(when string) {
		t.Helper()
		if err := dm.CopyToHost(); err != nil {
			t.Fatal(err)
		}
		for i, p := range m.Params() {
			hp := host.Params()[i]
			if !slices.Equal(p.Data, hp.Data) {
				t.Fatalf("%s: %s: device weights differ from the host optimizer's", when, p.Name)
			}
			if !dm.Adam8bit(p) {
				continue
			}
			st, steps, err := dm.Adam8State(p)
			if err != nil {
				t.Fatal(err)
			}
			m8, v8, ms, vs, hsteps, ok := opt.Moments8(hp)
			if !ok || steps != hsteps || !bytes.Equal(st.M, m8) || !bytes.Equal(st.V, v8) || !slices.Equal(st.MScale, ms) || !slices.Equal(st.VScale, vs) {
				t.Fatalf("%s: %s: 8-bit state differs from the host optimizer's (steps %d vs %d)", when, p.Name, steps, hsteps)
			}
		}
	}
	for range 3 {
		step()
	}
	compare("after 3 steps")

	// Resume: a fresh device copy given the host's state continues alike.
	dm2, err := NewDeviceModel(host, ref.New(), DeviceOptions{Compute: compute.F32, Adam8bit: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dm2.Close()
	for _, p := range host.Params() {
		if dm2.Adam8bit(p) {
			m8, v8, ms, vs, steps, _ := opt.Moments8(p)
			err = dm2.SetAdam8State(p, Adam8State{M: m8, V: v8, MScale: ms, VScale: vs}, steps)
		} else {
			mm, vv, steps, _ := opt.Moments(p)
			err = dm2.SetAdamState(p, mm, vv, steps)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	dm.Close()
	dm, m = dm2, host
	host = tinyModel(t, "ref-qwen2", 41) // not used again but for its gradients' shapes
	setTrainable(host)
	if err := dm.CopyToHost(); err != nil {
		t.Fatal(err)
	}
	for i, p := range m.Params() {
		copy(host.Params()[i].Data, p.Data)
	}
	opt2, err := optim.NewAdamW8bit([]optim.Group{{Params: host.Params(), WeightDecay: 0.01}}, optim.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Params() {
		i := slices.Index(m.Params(), p)
		hp := host.Params()[i]
		if dm.Adam8bit(p) {
			m8, v8, ms, vs, steps, _ := opt.Moments8(p)
			err = opt2.SetMoments8(hp, m8, v8, ms, vs, steps)
		} else {
			mm, vv, steps, _ := opt.Moments(p)
			err = opt2.SetMoments(hp, mm, vv, steps)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	opt = opt2
	step()
	compare("after a resumed step")
}
