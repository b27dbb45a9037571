package optim

import (
	"fmt"
	"math"

	"gotune/compute"
	"gotune/nn"
)

// AdamW8bit is bitsandbytes' AdamW8bit (transformers' optim adamw_8bit,
// adamw_bnb_8bit, paged_adamw_8bit): AdamW whose two moments are kept
// block-wise in 8 bits — a code per element into a dynamic quantization
// map and one float32 scale (the block's largest magnitude) per
// compute.Adam8Block elements, decoded, updated and re-encoded at every
// step. Parameters under compute.Adam8MinSize elements keep float32
// moments. State is 2 bytes per element plus 8 bytes per block instead of
// AdamW's 8 bytes per element.
//
// The trainer runs the update on a device (model.DeviceModel); this type
// holds the host copy of the state that checkpoints save and resume
// uploads, and Step applies the same update on host memory (the CPU
// backend's kernel, so both agree bit for bit).
type AdamW8bit struct {
	params
	cfg    Config
	q8     []bool // slot i keeps 8-bit state
	m8, v8 [][]byte
	ms, vs [][]float32 // per-block scales (8-bit slots)
	m, v   [][]float32 // float moments (small slots)
	steps  []int64
}

// NewAdamW8bit builds an 8-bit AdamW optimizer over groups.
func NewAdamW8bit(groups []Group, cfg Config) (*AdamW8bit, error) {
	if cfg.Float64State {
		return nil, fmt.Errorf("adamw_8bit: float64 state is not available (the state is 8-bit)")
	}
	if _, err := NewAdamW(nil, cfg); err != nil { // the same hyperparameter checks
		return nil, fmt.Errorf("adamw_8bit: %w", err)
	}
	ps, err := newParams(groups)
	if err != nil {
		return nil, fmt.Errorf("adamw_8bit: %w", err)
	}
	n := len(ps.slots)
	o := &AdamW8bit{params: ps, cfg: cfg, q8: make([]bool, n), m8: make([][]byte, n), v8: make([][]byte, n),
		ms: make([][]float32, n), vs: make([][]float32, n), m: make([][]float32, n), v: make([][]float32, n), steps: make([]int64, n)}
	for i, s := range ps.slots {
		o.q8[i] = len(s.p.Data) >= compute.Adam8MinSize
	}
	return o, nil
}

// Name implements Optimizer.
func (o *AdamW8bit) Name() string { return "adamw_8bit" }

// Quantized reports whether p keeps 8-bit state (false: float moments, or
// not this optimizer's parameter).
func (o *AdamW8bit) Quantized(p *nn.Param) bool {
	i := o.slotByName(p.Name)
	return i >= 0 && o.q8[i]
}

func (o *AdamW8bit) ensureState(i int) {
	n := len(o.slots[i].p.Data)
	switch {
	case o.q8[i] && o.m8[i] == nil:
		nb := compute.Adam8Blocks(n, compute.Adam8Block)
		o.m8[i], o.v8[i], o.ms[i], o.vs[i] = make([]byte, n), make([]byte, n), make([]float32, nb), make([]float32, nb)
	case !o.q8[i] && o.m[i] == nil:
		o.m[i], o.v[i] = make([]float32, n), make([]float32, n)
	}
}

// Step implements Optimizer: one update of every parameter with a gradient,
// in the device's arithmetic (compute.AdamStep's scalars in float32).
func (o *AdamW8bit) Step(lr float64) {
	for i, s := range o.slots {
		if s.p.Grad == nil {
			continue
		}
		o.ensureState(i)
		o.steps[i]++
		glr := lr * o.lrScale(s.group)
		t := float64(o.steps[i])
		st := compute.AdamStep{GradScale: 1, Decay: float32(1 - glr*o.groups[s.group].WeightDecay),
			Beta1: float32(o.cfg.Beta1), Beta2: float32(o.cfg.Beta2), StepSize: float32(glr / (1 - math.Pow(o.cfg.Beta1, t))),
			BC2Sqrt: float32(math.Sqrt(1 - math.Pow(o.cfg.Beta2, t))), Eps: float32(o.cfg.Eps)}
		if o.q8[i] {
			// Sizes are the optimizer's own: no error is possible.
			_ = compute.AdamW8bitSlices(s.p.Data, s.p.Grad, o.m8[i], o.v8[i], o.ms[i], o.vs[i], nil, nil, st, compute.Adam8Block)
			continue
		}
		p, g, m, v := s.p.Data, s.p.Grad, o.m[i], o.v[i]
		for j := range p {
			gj := g[j] * st.GradScale
			mj := st.Beta1*m[j] + (1-st.Beta1)*gj
			vj := st.Beta2*v[j] + (1-st.Beta2)*gj*gj
			m[j], v[j] = mj, vj
			p[j] = p[j]*st.Decay - st.StepSize*mj/(float32(math.Sqrt(float64(vj)))/st.BC2Sqrt+st.Eps)
		}
	}
}

// slot returns p's slot or an error naming it.
func (o *AdamW8bit) slot(p *nn.Param) (int, error) {
	i := o.slotByName(p.Name)
	if i < 0 || o.slots[i].p != p {
		return -1, fmt.Errorf("adamw_8bit: %s is not one of this optimizer's parameters", p.Name)
	}
	return i, nil
}

// Moments8 returns an 8-bit parameter's codes, block scales and step count;
// ok is false before its first update or for a parameter with float state.
func (o *AdamW8bit) Moments8(p *nn.Param) (m8, v8 []byte, mScale, vScale []float32, steps int64, ok bool) {
	i, err := o.slot(p)
	if err != nil || !o.q8[i] || o.m8[i] == nil {
		return nil, nil, nil, nil, 0, false
	}
	return o.m8[i], o.v8[i], o.ms[i], o.vs[i], o.steps[i], true
}

// SetMoments8 replaces an 8-bit parameter's state (updates made on a
// device), so that checkpoints hold it.
func (o *AdamW8bit) SetMoments8(p *nn.Param, m8, v8 []byte, mScale, vScale []float32, steps int64) error {
	i, err := o.slot(p)
	if err != nil {
		return err
	}
	n := len(p.Data)
	nb := compute.Adam8Blocks(n, compute.Adam8Block)
	switch {
	case !o.q8[i]:
		return fmt.Errorf("adamw_8bit: %s keeps float moments (%d elements, under %d)", p.Name, n, compute.Adam8MinSize)
	case len(m8) != n || len(v8) != n || len(mScale) != nb || len(vScale) != nb:
		return fmt.Errorf("adamw_8bit: %s: %d/%d codes and %d/%d scales, want %d and %d", p.Name, len(m8), len(v8), len(mScale), len(vScale), n, nb)
	}
	o.m8[i], o.v8[i] = append([]byte(nil), m8...), append([]byte(nil), v8...)
	o.ms[i], o.vs[i] = append([]float32(nil), mScale...), append([]float32(nil), vScale...)
	o.steps[i] = steps
	return nil
}

// Moments returns a small parameter's float moments and step count; ok is
// false before its first update or for an 8-bit parameter.
func (o *AdamW8bit) Moments(p *nn.Param) (m, v []float32, steps int64, ok bool) {
	i, err := o.slot(p)
	if err != nil || o.q8[i] || o.m[i] == nil {
		return nil, nil, 0, false
	}
	return o.m[i], o.v[i], o.steps[i], true
}

// SetMoments replaces a small parameter's float moments and step count.
func (o *AdamW8bit) SetMoments(p *nn.Param, m, v []float32, steps int64) error {
	i, err := o.slot(p)
	if err != nil {
		return err
	}
	n := len(p.Data)
	switch {
	case o.q8[i]:
		return fmt.Errorf("adamw_8bit: %s keeps 8-bit moments", p.Name)
	case len(m) != n || len(v) != n:
		return fmt.Errorf("adamw_8bit: %s: moments of %d and %d values, want %d", p.Name, len(m), len(v), n)
	}
	o.m[i], o.v[i], o.steps[i] = append([]float32(nil), m...), append([]float32(nil), v...), steps
	return nil
}

// State: "<name>.state1"/".state2" (U8 codes) and ".absmax1"/".absmax2"
// (F32 block scales) as bitsandbytes names them, or ".exp_avg"/
// ".exp_avg_sq" for float moments, and ".step".

func (o *AdamW8bit) stateTensors() []tensor {
	var ts []tensor
	for i, s := range o.slots {
		if o.steps[i] == 0 {
			continue
		}
		shape := shapeOf(len(s.p.Data), s.p.Shape)
		if o.q8[i] {
			nb := []int{len(o.ms[i])}
			ts = append(ts, tensor{name: s.p.Name + ".state1", shape: shape, u8: o.m8[i]},
				tensor{name: s.p.Name + ".state2", shape: shape, u8: o.v8[i]},
				tensor{name: s.p.Name + ".absmax1", shape: nb, f32: o.ms[i]},
				tensor{name: s.p.Name + ".absmax2", shape: nb, f32: o.vs[i]})
		} else {
			ts = append(ts, tensor{name: s.p.Name + ".exp_avg", shape: shape, f32: o.m[i]},
				tensor{name: s.p.Name + ".exp_avg_sq", shape: shape, f32: o.v[i]})
		}
		ts = append(ts, tensor{name: s.p.Name + ".step", shape: []int{}, i64: o.steps[i : i+1]})
	}
	return ts
}

func (o *AdamW8bit) stateFields(i int) []string {
	if o.q8[i] {
		return []string{"state1", "state2", "absmax1", "absmax2", "step"}
	}
	return []string{"exp_avg", "exp_avg_sq", "step"}
}

func (o *AdamW8bit) stateTarget(name string) (tensor, bool) {
	pname, field := splitStateName(name)
	i := o.slotByName(pname)
	if i < 0 {
		return tensor{}, false
	}
	p := o.slots[i].p
	shape := shapeOf(len(p.Data), p.Shape)
	o.ensureState(i)
	t := tensor{name: name, shape: shape}
	nb := []int{len(o.ms[i])}
	switch {
	case field == "step":
		return tensor{name: name, shape: []int{}, i64: o.steps[i : i+1]}, true
	case o.q8[i] && field == "state1":
		t.u8 = o.m8[i]
	case o.q8[i] && field == "state2":
		t.u8 = o.v8[i]
	case o.q8[i] && field == "absmax1":
		t.shape, t.f32 = nb, o.ms[i]
	case o.q8[i] && field == "absmax2":
		t.shape, t.f32 = nb, o.vs[i]
	case !o.q8[i] && field == "exp_avg":
		t.f32 = o.m[i]
	case !o.q8[i] && field == "exp_avg_sq":
		t.f32 = o.v[i]
	default:
		return tensor{}, false
	}
	return t, true
}

func (o *AdamW8bit) stateMissing(loaded map[string]bool) []string {
	var out []string
	for i, s := range o.slots {
		has := true
		for _, f := range o.stateFields(i) {
			has = has && loaded[s.p.Name+"."+f]
		}
		if !has && (s.p.Grad != nil || loaded[s.p.Name+".step"]) {
			out = append(out, s.p.Name)
		}
		if !has {
			o.steps[i] = 0
			clear(o.m8[i])
			clear(o.v8[i])
			clear(o.ms[i])
			clear(o.vs[i])
			clear(o.m[i])
			clear(o.v[i])
		}
	}
	return out
}
