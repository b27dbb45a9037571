package method

import (
	"gotune/config"
	"gotune/model"
	"gotune/nn"
	"gotune/peft"
	"gotune/plan"
)

// bottleneck is the bottleneck adapter (Houlsby, Pfeiffer or after
// attention only): LLaMA-Factory's finetuning_type adapter.
var bottleneck = Method{
	Name:     "adapter",
	PeftType: "BOTTLENECK",
	Check: func(c *config.Config, bad Report) {
		if c.AdapterSize <= 0 {
			bad("adapter_size", "must be positive, got %d", c.AdapterSize)
		}
		oneOf(bad, "adapter_placement", c.AdapterPlacement, "houlsby", "pfeiffer", "attention")
	},
	Attach: func(s Setup) (peft.Method, []*nn.Param, error) {
		c := s.Cfg
		return attachOrLoad(s, loadBottleneck, func() (peft.Method, error) {
			return peft.AttachBottleneck(s.Model, peft.BottleneckConfig{Size: c.AdapterSize, Placement: c.AdapterPlacement,
				Activation: c.AdapterActivation, BaseModel: s.ModelDir}, s.Seed())
		})
	},
	Load:    loadBottleneck,
	Packing: true,
	// The planner's row is the Houlsby placement: after attention and after
	// the MLP.
	Plan: []plan.Row{{
		Method: "bottleneck",
		Footprint: func(s plan.Shape, o plan.Options) (plan.Footprint, error) {
			base, format := s.Frozen(o)
			size, h := int64(o.BottleneckSize), s.Hidden()
			n := int64(o.Batch) * int64(o.Seq)
			return plan.Footprint{Trainable: s.Layers() * 2 * (2*size*h + size + h), Base: base, Format: format, Adapter: true,
				// Down and up weights and biases of two adapters a layer.
				Tensors: []plan.Tensors{{Size: size * h, Count: 4 * s.Layers()}, {Size: size, Count: 2 * s.Layers()}, {Size: h, Count: 2 * s.Layers()}},
				Kept:    s.Layers() * 2 * (n*h + n*size), // each adapter's input and down projection
				Buffers: 2*n*size + n*h,                  // activation, its gradient, the input gradient
				Hooks:   true}, nil
		},
	}},
}

func loadBottleneck(m *model.Model, dir string) (peft.Method, error) {
	return peft.LoadBottleneck(m, dir)
}
