package method

import (
	"gotune/config"
	"gotune/model"
	"gotune/nn"
	"gotune/peft"
	"gotune/plan"
)

// ia3 rescales keys, values and the feed-forward input by trained vectors.
var ia3 = Method{
	Name:     "ia3",
	PeftType: "IA3",
	Check:    func(*config.Config, Report) {},
	Attach: func(s Setup) (peft.Method, []*nn.Param, error) {
		c := s.Cfg
		return attachOrLoad(s, loadIA3, func() (peft.Method, error) {
			return peft.AttachIA3(s.Model, peft.IA3Config{Targets: c.IA3Target, Feedforward: c.IA3Feedforward, BaseModel: s.ModelDir}, s.Seed())
		})
	},
	Load:    loadIA3,
	Packing: true,
	Plan: []plan.Row{{
		Method: plan.IA3,
		// Keys and values scaled at the output, down_proj at its input.
		Footprint: func(s plan.Shape, o plan.Options) (plan.Footprint, error) {
			base, format := s.Frozen(o)
			n := int64(o.Batch) * int64(o.Seq)
			return plan.Footprint{Trainable: s.Layers() * (2*s.KVDim() + s.Intermediate()), Base: base, Format: format, Adapter: true,
				Tensors: []plan.Tensors{{Size: s.KVDim(), Count: 2 * s.Layers()}, {Size: s.Intermediate(), Count: s.Layers()}},
				Kept:    s.Layers() * 2 * n * s.KVDim(),          // k and v before scaling
				Buffers: 2*n*s.Intermediate() + n*s.KVDim()}, nil // down's scaled input and its gradient; an output gradient
		},
	}},
}

func loadIA3(m *model.Model, dir string) (peft.Method, error) { return peft.LoadIA3(m, dir) }
