package method

import (
	"gotune/config"
	"gotune/nn"
	"gotune/peft"
	"gotune/plan"
)

// full trains every weight of the model.
var full = Method{
	Name: "full",
	Attach: func(s Setup) (peft.Method, []*nn.Param, error) {
		var ps []*nn.Param
		for _, p := range s.Model.Params() {
			p.SetTrainable(true)
			ps = append(ps, p)
		}
		return nil, ps, nil
	},
	Packing: true,
	GRPO:    true,
	Check:   func(*config.Config, Report) {},
	Plan: []plan.Row{{
		Method: plan.Full,
		Footprint: func(s plan.Shape, o plan.Options) (plan.Footprint, error) {
			return plan.Footprint{Trainable: s.Params(), Tensors: s.ParamTensors(), Base: s.F32(), Format: "f32"}, nil
		},
		// Every projection's weight gradient, and the head's.
		Work: func(p plan.Pass) plan.Work {
			return plan.Work{WeightGrads: 2 * p.Tokens * p.Products, HeadGrad: true}
		},
	}},
}
