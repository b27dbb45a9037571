package model

import (
	"fmt"

	"gotune/compute"
	"gotune/nn"
)

// placeAdam8 allocates a group's 8-bit AdamW state: zero codes and zero
// scales, which decode to zero moments (a fresh optimizer).
func (dm *DeviceModel) placeAdam8(g *dgroup) error {
	blocks := compute.Adam8Blocks(g.n, compute.Adam8Block)
	var err error
	for _, t := range []*compute.Tensor{&g.m8, &g.v8} {
		if *t, err = dm.alloc(compute.U8, g.n); err != nil {
			return fmt.Errorf("device model: 8-bit optimizer state (%d values): %w", g.n, err)
		}
		dm.be.Zero(*t)
	}
	for _, t := range []*compute.Tensor{&g.mScale, &g.vScale} {
		if *t, err = dm.alloc(compute.F32, blocks); err != nil {
			return fmt.Errorf("device model: 8-bit optimizer scales (%d blocks): %w", blocks, err)
		}
		dm.be.Zero(*t)
	}
	return nil
}

// Adam8State is one parameter's 8-bit AdamW state: a code per element for
// each moment (into compute.DynamicMap signed and unsigned) and a scale per
// block of compute.Adam8Block elements.
type Adam8State struct {
	M, V           []byte
	MScale, VScale []float32
}

// Adam8bit reports whether a trainable parameter keeps its AdamW state in
// 8 bits (DeviceOptions.Adam8bit and at least compute.Adam8MinSize
// elements); the others use AdamState and SetAdamState.
func (dm *DeviceModel) Adam8bit(p *nn.Param) bool {
	d := dm.byHost[p]
	return d != nil && d.trainable && d.grp.q8
}

// adam8Views are a parameter's slices of its group's 8-bit state.
func (dm *DeviceModel) adam8Views(p *nn.Param) (d *dparam, m8, v8, ms, vs compute.Tensor, err error) {
	d = dm.byHost[p]
	if d == nil || !d.trainable {
		return nil, nil, nil, nil, nil, fmt.Errorf("device model: %s is not trained on the device", p.Name)
	}
	g := d.grp
	if !g.q8 {
		return nil, nil, nil, nil, nil, fmt.Errorf("device model: %s keeps float AdamW state, not 8-bit", p.Name)
	}
	// d.off is a multiple of the block size (placeTrainable).
	b0, nb := d.off/compute.Adam8Block, compute.Adam8Blocks(d.n, compute.Adam8Block)
	return d, g.m8.Slice(d.off, d.n), g.v8.Slice(d.off, d.n), g.mScale.Slice(b0, nb), g.vScale.Slice(b0, nb), nil
}

// Adam8State downloads a parameter's 8-bit AdamW state and step count (for
// checkpoints).
func (dm *DeviceModel) Adam8State(p *nn.Param) (st Adam8State, steps int64, err error) {
	d, m8, v8, ms, vs, err := dm.adam8Views(p)
	if err != nil {
		return st, 0, err
	}
	codes := make([]float32, d.n)
	for _, c := range []struct {
		dst *[]byte
		src compute.Tensor
	}{{&st.M, m8}, {&st.V, v8}} {
		if err := dm.be.Download(codes, c.src); err != nil {
			return st, 0, fmt.Errorf("device model: %s: 8-bit state: %w", p.Name, err)
		}
		b := make([]byte, d.n)
		for i, x := range codes {
			b[i] = byte(x)
		}
		*c.dst = b
	}
	st.MScale, st.VScale = make([]float32, ms.Len()), make([]float32, vs.Len())
	if err := dm.be.Download(st.MScale, ms); err != nil {
		return st, 0, fmt.Errorf("device model: %s: 8-bit state: %w", p.Name, err)
	}
	if err := dm.be.Download(st.VScale, vs); err != nil {
		return st, 0, fmt.Errorf("device model: %s: 8-bit state: %w", p.Name, err)
	}
	return st, d.grp.steps, nil
}

// SetAdam8State uploads a parameter's 8-bit AdamW state and step count
// (resume).
func (dm *DeviceModel) SetAdam8State(p *nn.Param, st Adam8State, steps int64) error {
	d, m8, v8, ms, vs, err := dm.adam8Views(p)
	if err != nil {
		return err
	}
	if len(st.M) != d.n || len(st.V) != d.n || len(st.MScale) != ms.Len() || len(st.VScale) != vs.Len() {
		return fmt.Errorf("device model: %s: 8-bit optimizer state of %d/%d codes and %d/%d scales, want %d and %d",
			p.Name, len(st.M), len(st.V), len(st.MScale), len(st.VScale), d.n, ms.Len())
	}
	dm.be.UploadBytes(m8, st.M)
	dm.be.UploadBytes(v8, st.V)
	dm.be.Upload(ms, st.MScale)
	dm.be.Upload(vs, st.VScale)
	d.grp.steps = steps
	return dm.be.Err()
}
