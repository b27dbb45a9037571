package method

import (
	"fmt"
	"strings"

	"gotune/config"
	"gotune/model"
	"gotune/nn"
	"gotune/peft"
	"gotune/plan"
)

// freeze is LLaMA-Factory's freeze tuning: the weights of the last n layers
// (the first -n when negative), limited to the named modules, plus extra
// top-level modules, train; the rest stays frozen.
var freeze = Method{
	Name: "freeze",
	Check: func(c *config.Config, bad Report) {
		if c.FreezeTrainableLayers == 0 {
			bad("freeze_trainable_layers", "must not be 0 (positive: train the last n layers, negative: the first n)")
		}
		if len(c.FreezeTrainableModules) == 0 {
			bad("freeze_trainable_modules", "must name modules or be \"all\"")
		}
	},
	Attach: func(s Setup) (peft.Method, []*nn.Param, error) {
		c := s.Cfg
		ps, err := freezeParams(s.Model, c.FreezeTrainableLayers, c.FreezeTrainableModules, c.FreezeExtraModules)
		return nil, ps, err
	},
	Packing: true,
	GRPO:    true,
	// The planner assumes freeze_trainable_modules: all over the last
	// FreezeLayers layers.
	Plan: []plan.Row{{
		Method: "freeze",
		Footprint: func(s plan.Shape, o plan.Options) (plan.Footprint, error) {
			k := min(int64(o.FreezeLayers), s.Layers())
			var ts []plan.Tensors
			for _, t := range s.LayerTensors() {
				ts = append(ts, plan.Tensors{Size: t.Size, Count: k * t.Count})
			}
			return plan.Footprint{Trainable: k * s.LayerParams(), Tensors: ts, Base: s.F32(), Format: "f32"}, nil
		},
		// Weight gradients of the trained share of the projections.
		Work: func(p plan.Pass) plan.Work {
			return plan.Work{WeightGrads: 2 * p.Tokens * p.Products * float64(p.Trainable) / float64(max(p.Shape.Params(), 1))}
		},
	}},
}

func freezeParams(m *model.Model, n int, modules, extra []string) ([]*nn.Param, error) {
	L := len(m.Layers)
	var layers []int
	switch {
	case n > 0:
		for i := max(L-n, 0); i < L; i++ {
			layers = append(layers, i)
		}
	case n < 0:
		for i := 0; i < min(-n, L); i++ {
			layers = append(layers, i)
		}
	default:
		return nil, fmt.Errorf("freeze_trainable_layers must not be 0")
	}
	want := func(name string) bool {
		for _, mod := range modules {
			if mod == "all" || strings.Contains(name, "."+mod+".") {
				return true
			}
		}
		return false
	}
	var out []*nn.Param
	for _, p := range m.Params() {
		name := p.Name
		for _, i := range layers {
			if strings.HasPrefix(name, fmt.Sprintf("model.layers.%d.", i)) && want(name) {
				p.SetTrainable(true)
				out = append(out, p)
			}
		}
		for _, e := range extra {
			if strings.HasPrefix(name, e) || strings.HasPrefix(name, "model."+e) {
				p.SetTrainable(true)
				out = append(out, p)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("freeze: modules %v of layers %v matched no parameter", modules, layers)
	}
	return out, nil
}
