package peft

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"gotune/model"
	"gotune/nn"
)

// ExpertLoRA is LoRA on one stacked expert weight of an MoE layer, as PEFT
// applies it to a 3-D parameter named in target_parameters (its
// ParamWrapper): A is [r·E, in] (expert e's rows e·r … e·r+r−1) and B is
// [out, r·E] (expert e's columns r_i·E + e), and expert e's weight [in,
// out] gains scale·(B_e·A_e)ᵀ. gotune keeps experts as separate linear
// layers, so each expert's layers get an adapter reading its part: the
// fused gate_up_proj's B rows split between the gate (first half) and up
// (second half) layers, which share A_e.
type ExpertLoRA struct {
	Param  string // "gate_up_proj" or "down_proj"
	Module string // PEFT's module path, "model.layers.N.mlp.experts"
	A, B   *nn.Param
	Scale  float32
	r, e   int
	adapt  []*expertAdapter
}

// expertParams are the stacked expert weights PEFT can target, in the
// order transformers registers them (the first is wrapped innermost).
var expertParams = []string{"gate_up_proj", "down_proj"}

// attachExperts adds LoRA to the stacked expert weights target_parameters
// names, for every MoE layer.
func (s *LoRASet) attachExperts(m *model.Model, cfg LoRAConfig, rng *rand.Rand) error {
	if len(cfg.TargetParameters) == 0 {
		return nil
	}
	matched := map[string]bool{}
	for _, l := range m.Layers {
		if l.MoE == nil {
			continue
		}
		module := fmt.Sprintf("model.layers.%d.%s", l.Index, m.Cfg.Family.MoE.PEFTExperts)
		var wanted []string
		for _, p := range expertParams {
			for _, t := range cfg.TargetParameters {
				if full := module + "." + p; full == t || strings.HasSuffix(full, "."+t) {
					wanted = append(wanted, p)
					matched[t] = true
					break
				}
			}
		}
		for i, p := range wanted {
			// PEFT nests one wrapper per parameter: every one but the
			// outermost (the last) sits under .base_layer once per wrapper
			// around it.
			path := module + strings.Repeat(".base_layer", len(wanted)-1-i)
			el, err := newExpertLoRA(m, l, p, path, cfg, rng)
			if err != nil {
				return err
			}
			s.Experts = append(s.Experts, el)
		}
	}
	for _, t := range cfg.TargetParameters {
		if !matched[t] {
			return fmt.Errorf("lora: target_parameters %q matches no stacked expert weight (%s of %s layers)", t, strings.Join(expertParams, ", "), "MoE")
		}
	}
	return nil
}

func newExpertLoRA(m *model.Model, l *model.Layer, param, path string, cfg LoRAConfig, rng *rand.Rand) (*ExpertLoRA, error) {
	if cfg.Dropout != 0 || cfg.DoRA {
		return nil, fmt.Errorf("lora: target_parameters %s: PEFT allows neither dropout nor DoRA on stacked expert weights", param)
	}
	c := m.Cfg
	E, r := c.Experts, cfg.R
	in, out := c.Hidden, 2*c.ExpertIntermediate
	if param == "down_proj" {
		in, out = c.ExpertIntermediate, c.Hidden
	}
	scale := cfg.Alpha / float64(r)
	if cfg.RSLoRA {
		scale = cfg.Alpha / math.Sqrt(float64(r))
	}
	pre := namePrefix + path
	el := &ExpertLoRA{Param: param, Module: path, r: r, e: E, Scale: float32(scale),
		A: nn.NewParam(pre+".lora_A."+adapterName+".weight", r*E, in),
		B: nn.NewParam(pre+".lora_B."+adapterName+".weight", out, r*E)}
	switch cfg.Init {
	case "", "default", "true":
		bound := 1 / math.Sqrt(float64(in))
		for i := range el.A.Data {
			el.A.Data[i] = float32((rng.Float64()*2 - 1) * bound)
		}
	case "zero":
	default:
		return nil, fmt.Errorf("lora: init %q is not supported on stacked expert weights (default)", cfg.Init)
	}
	el.A.SetTrainable(true)
	el.B.SetTrainable(true)
	for e, ex := range l.MoE.Experts {
		targets := []struct {
			lin    *nn.Linear
			rowOff int
		}{{ex.Down, 0}}
		if param == "gate_up_proj" {
			targets = targets[:0]
			targets = append(targets, struct {
				lin    *nn.Linear
				rowOff int
			}{ex.Gate, 0}, struct {
				lin    *nn.Linear
				rowOff int
			}{ex.Up, c.ExpertIntermediate})
		}
		for _, t := range targets {
			if t.lin.Adapter != nil {
				return nil, fmt.Errorf("lora: %s already has an adapter", t.lin.Name)
			}
			a := &expertAdapter{l: el, e: e, rowOff: t.rowOff, lin: t.lin}
			t.lin.Adapter = a
			el.adapt = append(el.adapt, a)
		}
	}
	return el, nil
}

// Params lists A and B.
func (el *ExpertLoRA) Params() []*nn.Param { return []*nn.Param{el.A, el.B} }

// detach removes the adapters from the expert layers.
func (el *ExpertLoRA) detach() {
	for _, a := range el.adapt {
		if a.lin.Adapter == a {
			a.lin.Adapter = nil
		}
	}
}

// merge folds the adapter into the experts' float32 weights.
func (el *ExpertLoRA) merge() error {
	for _, a := range el.adapt {
		w := a.lin.F32()
		if w == nil || w.Data == nil {
			return fmt.Errorf("merge: %s is not stored in float32; load the base in f32 to merge", a.lin.Name)
		}
		bp := a.bPart()
		in, r := a.lin.In, el.r
		ae := el.A.Data[a.e*r*in : (a.e+1)*r*in]
		for o := 0; o < a.lin.Out; o++ {
			row := w.Data[o*in : (o+1)*in]
			for k := 0; k < r; k++ {
				c := el.Scale * bp[o*r+k]
				for i, v := range ae[k*in : (k+1)*in] {
					row[i] += c * v
				}
			}
		}
	}
	return nil
}

// expertAdapter runs expert e's share of an ExpertLoRA on one of the
// expert's linear layers: B's rows rowOff … rowOff+Out−1.
type expertAdapter struct {
	l      *ExpertLoRA
	e      int
	rowOff int
	lin    *nn.Linear
}

// bPart gathers B_e's rows for this layer, [Out, r] (B stores expert e's
// columns strided by E).
func (a *expertAdapter) bPart() []float32 {
	r, E, out := a.l.r, a.l.e, a.lin.Out
	cols := r * E
	bp := make([]float32, out*r)
	for o := 0; o < out; o++ {
		src := a.l.B.Data[(a.rowOff+o)*cols:]
		for k := 0; k < r; k++ {
			bp[o*r+k] = src[k*E+a.e]
		}
	}
	return bp
}

// Params implements nn.Adapter (the shared A and B, listed by the set).
func (a *expertAdapter) Params() []*nn.Param { return nil }

// ExpertLowRank implements model.ExpertLowRank: the device path runs this
// expert's part of the stacked matrices.
func (a *expertAdapter) ExpertLowRank() (aa, b *nn.Param, scale float32, expert, rowOff int) {
	return a.l.A, a.l.B, a.l.Scale, a.e, a.rowOff
}
