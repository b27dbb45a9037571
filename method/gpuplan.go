package method

import (
	"gotune/compute"
	"gotune/plan"
	"gotune/quant"
)

// GPURows gives the planner's rows their GPU footprints by row name: what
// each method places on the device beside the model (model.DeviceModel's
// arenas, kept activations and scratch; model/device_step.go and
// model/device_peft.go). They sit apart from the rows' CPU footprints only
// until plan.Row has a field for them.
func GPURows() map[plan.Method]plan.GPURow {
	return map[plan.Method]plan.GPURow{
		plan.Full: func(plan.Shape, plan.Options, plan.GPUOptions) (plan.GPUFootprint, error) {
			return plan.GPUFootprint{TrainModel: true}, nil
		},
		"freeze": func(s plan.Shape, o plan.Options, _ plan.GPUOptions) (plan.GPUFootprint, error) {
			return plan.GPUFootprint{TrainLayers: min(int64(o.FreezeLayers), s.Layers())}, nil
		},
		plan.LoRA:    loraGPU(false, false),
		"dora":       loraGPU(true, false),
		plan.QLoRA:   loraGPU(false, true),
		plan.Prompt:  promptGPU,
		"p-tuning":   pTuningGPU,
		plan.Prefix:  prefixGPU,
		plan.IA3:     ia3GPU,
		"bottleneck": bottleneckGPU,
	}
}

// loraGPU is LoRA's footprint on every projection (lora_target: all), as
// the device block holds them (plan.Shape.GPULinears: Phi-3's fused
// qkv_proj and gate_up_proj are one layer each): A [r, in] and B [out, r]
// trained through compute-type copies, x·Aᵀ kept per layer, and the
// gradient of x·Aᵀ in scratch — one [n, members·r] buffer for the widest
// group of layers sharing an input (q/k/v, gate/up) when the A matrices of
// a group lie adjacent in the arena, one [n, r] for the layers outside a
// group. On a mixture of experts, target all also adapts the stacked
// expert weights (plan counts those from ExpertLoRA). DoRA adds its
// magnitude (float), three float32 vectors per layer (the factor, its
// inverse and the squared row norms), the product before the rescaling
// kept per layer, and in scratch the rows of W + s·B·A (float32) and two
// output-sized gradients.
func loraGPU(dora, qlora bool) plan.GPURow {
	return func(s plan.Shape, o plan.Options, g plan.GPUOptions) (plan.GPUFootprint, error) {
		A := g.Compute
		r, n := int64(o.LoRARank), int64(o.Batch)*int64(o.Seq)
		var f plan.GPUFootprint
		var wide, out int64
		members := map[int]int64{}
		for _, l := range s.GPULinears() {
			f.Tensors = append(f.Tensors, plan.GPUTensors{Size: r * l.In, Count: l.Count}, plan.GPUTensors{Size: l.Out * r, Count: l.Count})
			kept := []plan.Buffer{{DType: A, Values: n * r, Count: 1}}
			if dora {
				f.Tensors = append(f.Tensors, plan.GPUTensors{Size: l.Out, Count: l.Count, Float: true})
				f.Fixed = append(f.Fixed, plan.Buffer{DType: compute.F32, Values: l.Out, Count: 3 * l.Count})
				kept = append(kept, plan.Buffer{DType: A, Values: n * l.Out, Count: 1})
				f.Sums = append(f.Sums, [2]int64{n, l.Out}) // the magnitude's gradient
			}
			if l.MLP {
				f.KeptDense = append(f.KeptDense, kept...)
			} else {
				f.Kept = append(f.Kept, kept...)
			}
			if l.Group > 0 {
				members[l.Group]++
			}
			wide, out = max(wide, l.Out*l.In), max(out, l.Out)
		}
		// A group's members read the hidden states: their A matrices are
		// r·hidden values each.
		var group int64
		for _, m := range members {
			group = max(group, m)
		}
		if group > 0 && plan.ArenaAligned(r*s.Hidden(), o.Adam8bit) {
			f.Scratch = append(f.Scratch, plan.Buffer{DType: A, Values: n * group * r, Count: 1})
		}
		f.Scratch = append(f.Scratch, plan.Buffer{DType: A, Values: n * r, Count: 1})
		if dora {
			f.Scratch = append(f.Scratch, plan.Buffer{DType: compute.F32, Values: wide, Count: 1}, plan.Buffer{DType: A, Values: n * out, Count: 2})
		}
		if s.ExpertLayers() > 0 {
			if dora {
				// PEFT allows no DoRA on stacked expert weights: target
				// all refuses the model, a list of the other modules not.
				f.Notes = append(f.Notes, "DoRA on a mixture of experts: counted on the projections outside the experts (lora_target all refuses it)")
			} else {
				f.ExpertLoRA = r
			}
		}
		if qlora {
			f.Quant = &quant.Options{Type: quant.NF4, DoubleQuant: !o.SingleQuant}
		}
		return f, nil
	}
}

// promptGPU: prompt tuning trains the virtual tokens themselves [P,
// hidden]; the block adds their rows to every sequence.
func promptGPU(s plan.Shape, o plan.Options, _ plan.GPUOptions) (plan.GPUFootprint, error) {
	return plan.GPUFootprint{Tensors: []plan.GPUTensors{{Size: int64(o.Virtual) * s.Hidden(), Count: 1}}}, nil
}

// pTuningGPU: the virtual tokens and the MLP encoder h→h→h→h (weights
// through compute-type copies, biases in float); the encoder keeps its
// hidden layers' outputs before and after the activation and its output,
// and backward takes two input gradients in turn.
func pTuningGPU(s plan.Shape, o plan.Options, g plan.GPUOptions) (plan.GPUFootprint, error) {
	P, h := int64(o.Virtual), s.Hidden()
	return plan.GPUFootprint{
		Tensors: []plan.GPUTensors{{Size: P * h, Count: 1}, {Size: h * h, Count: 3}, {Size: h, Count: 3, Float: true}},
		Fixed:   []plan.Buffer{{DType: g.Compute, Values: P * h, Count: 5}},
		Scratch: []plan.Buffer{{DType: g.Compute, Values: P * h, Count: 2}},
		Sums:    [][2]int64{{P, h}},
	}, nil
}

// prefixGPU: prefix tuning (without prefix_projection) trains the keys and
// values of every layer [P, layers·2·kv]; the block lays them out and
// attends to them (plan counts those buffers from the footprint's Prefix).
func prefixGPU(s plan.Shape, o plan.Options, _ plan.GPUOptions) (plan.GPUFootprint, error) {
	return plan.GPUFootprint{Tensors: []plan.GPUTensors{{Size: int64(o.Virtual) * s.Layers() * 2 * s.KVDim(), Count: 1}}}, nil
}

// ia3GPU: IA3's vectors (float) scale k and v on their outputs, which are
// kept before the scaling, and down on its input (every expert's down in
// a mixture of experts, which then runs its experts one after another);
// scratch holds down's scaled input and its gradient, and an output's
// scaled gradient.
func ia3GPU(s plan.Shape, o plan.Options, g plan.GPUOptions) (plan.GPUFootprint, error) {
	L, n, kd, inter := s.Layers(), int64(o.Batch)*int64(o.Seq), s.KVDim(), s.Intermediate()
	M := s.ExpertLayers()
	A := g.Compute
	f := plan.GPUFootprint{
		Tensors: []plan.GPUTensors{{Size: kd, Count: 2 * L, Float: true}},
		Kept:    []plan.Buffer{{DType: A, Values: n * kd, Count: 2}},
		Scratch: []plan.Buffer{{DType: A, Values: n * kd, Count: 1}},
		Sums:    [][2]int64{{n, kd}},
	}
	// down's input width: the dense MLP's, or at most n rows of an
	// expert's.
	var in int64
	if D := L - M; D > 0 {
		f.Tensors = append(f.Tensors, plan.GPUTensors{Size: inter, Count: D, Float: true})
		in = inter
	}
	if M > 0 {
		E, ei := s.Experts()
		f.Tensors = append(f.Tensors, plan.GPUTensors{Size: ei, Count: E * M, Float: true})
		f.SerialExperts = true
		in = max(in, ei)
	}
	f.Scratch = append(f.Scratch, plan.Buffer{DType: A, Values: n * in, Count: 2})
	f.Sums = append(f.Sums, [2]int64{n, in})
	return f, nil
}

// bottleneckGPU: two adapters a layer (after attention, after the MLP),
// down [r, h] and up [h, r] through compute-type copies, their biases in
// float; each keeps its input and the down projection's output; scratch
// holds the activation, its gradient, the scaled up bias (float) and the
// input gradient.
func bottleneckGPU(s plan.Shape, o plan.Options, g plan.GPUOptions) (plan.GPUFootprint, error) {
	L, h, r, n := s.Layers(), s.Hidden(), int64(o.BottleneckSize), int64(o.Batch)*int64(o.Seq)
	A := g.Compute
	return plan.GPUFootprint{
		Tensors: []plan.GPUTensors{{Size: r * h, Count: 4 * L}, {Size: r, Count: 2 * L, Float: true}, {Size: h, Count: 2 * L, Float: true}},
		Kept:    []plan.Buffer{{DType: A, Values: n * h, Count: 2}, {DType: A, Values: n * r, Count: 2}},
		Scratch: []plan.Buffer{{DType: A, Values: n * r, Count: 2}, {DType: compute.F32, Values: h, Count: 1}, {DType: A, Values: n * h, Count: 1}},
		Sums:    [][2]int64{{n, h}, {n, r}},
	}, nil
}
