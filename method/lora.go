package method

import (
	"math"

	"gotune/config"
	"gotune/model"
	"gotune/nn"
	"gotune/peft"
	"gotune/plan"
	"gotune/quant"
)

// lora is LoRA and its variants (rsLoRA, DoRA, LoRA+), and QLoRA when the
// base is quantized.
var lora = Method{
	Name:     "lora",
	PeftType: "LORA",
	Check: func(c *config.Config, bad Report) {
		if c.LoRARank <= 0 {
			bad("lora_rank", "must be positive, got %d", c.LoRARank)
		}
		if a := c.LoRAAlphaValue; a != nil && !(*a > 0 && finite(*a)) {
			bad("lora_alpha", "must be positive, got %v", *a)
		}
		if !(c.LoRADropout >= 0 && c.LoRADropout < 1) {
			bad("lora_dropout", "must be in [0, 1), got %v", c.LoRADropout)
		}
		if len(c.LoRATarget) == 0 {
			bad("lora_target", "must be \"all\" or a comma-separated list of module names")
		}
		if r := c.LoRAPlusLRRatio; r != nil && !(*r > 0 && finite(*r)) {
			bad("loraplus_lr_ratio", "must be positive, got %v", *r)
		}
	},
	Exclusive: func(c *config.Config) []string {
		var on []string
		if c.UseDoRA {
			on = append(on, "use_dora")
		}
		if c.UseRSLoRA {
			on = append(on, "use_rslora")
		}
		if c.LoRAPlusLRRatio != nil {
			on = append(on, "loraplus_lr_ratio")
		}
		return on
	},
	Attach: func(s Setup) (peft.Method, []*nn.Param, error) {
		c := s.Cfg
		return attachOrLoad(s, loadLoRA, func() (peft.Method, error) {
			return peft.AttachLoRA(s.Model, peft.LoRAConfig{R: c.LoRARank, Alpha: c.LoRAAlpha(), Dropout: c.LoRADropout,
				Targets: c.LoRATarget, RSLoRA: c.UseRSLoRA, DoRA: c.UseDoRA, BaseModel: s.ModelDir}, s.Seed())
		})
	},
	Load:          loadLoRA,
	Packing:       true,
	QuantizedBase: true,
	BF16Base:      true,
	GRPO:          true,
	// The planner lists plain LoRA, DoRA and QLoRA (NF4 base) apart, all
	// seven projections of every layer targeted (lora_target: all).
	Plan: []plan.Row{loraRow(plan.LoRA), loraRow("dora"), loraRow(plan.QLoRA)},
}

// loraRow is the planner's row of LoRA (m plan.LoRA), DoRA or QLoRA.
func loraRow(m plan.Method) plan.Row {
	dora, qlora := m == "dora", m == plan.QLoRA
	return plan.Row{
		Method: m,
		Footprint: func(s plan.Shape, o plan.Options) (plan.Footprint, error) {
			rank, L := int64(o.LoRARank), s.Layers()
			n := int64(o.Batch) * int64(o.Seq)
			var fp plan.Footprint
			var widest int64 // DoRA's scratch: the largest layer's weight and two outputs
			for _, l := range s.Linears() {
				fp.Trainable += L * rank * (l[0] + l[1])
				// A (rank × in) and B (out × rank) of every layer.
				fp.Tensors = append(fp.Tensors, plan.Tensors{Size: rank * l[1], Count: L}, plan.Tensors{Size: l[0] * rank, Count: L})
				fp.Kept += L * n * rank // x·Aᵀ
				if dora {
					fp.Trainable += L * l[0]
					fp.Tensors = append(fp.Tensors, plan.Tensors{Size: l[0], Count: L}) // the magnitude
					// The product before rescaling.
					fp.Kept += L * n * l[0]
					widest = max(widest, l[0]*l[1]+2*n*l[0])
				}
			}
			fp.Buffers += 2 * n * 3 * rank // gradients of x·Aᵀ (a fused q/k/v group at most)
			fp.Buffers += widest
			fp.Adapter = true
			if !qlora {
				fp.Base, fp.Format = s.Frozen(o)
				if o.Storage == model.F32 {
					fp.Notes = append(fp.Notes, "frozen projections in f32; bf16 storage halves them")
				}
				return fp, nil
			}
			qo := quant.Options{Type: quant.NF4, DoubleQuant: !o.SingleQuant}
			qb, err := s.Projections(func(out, in int64) (int64, error) { return quant.BytesFor(int(out), int(in), qo) })
			if err != nil {
				return plan.Footprint{}, err
			}
			fp.Base = 4*s.Dense() + qb
			// Dequantized weight panels are pooled process-wide by quant
			// (1 MiB each, one to three resident); like the matrix kernel's
			// buffers they are part of the runtime allowance.
			fp.Pooled = 2 << 20
			fp.Format = "nf4"
			if !o.SingleQuant {
				fp.Format = "nf4-dq"
			}
			return fp, nil
		},
		Work: func(p plan.Pass) plan.Work {
			rank, L := float64(p.Options.LoRARank), float64(p.Shape.Layers())
			// The adapters' products: forward, and the input and weight
			// gradients of A and B; forward again when checkpointing.
			var ad float64
			for _, l := range p.Shape.Linears() {
				ad += L * 2 * p.Tokens * rank * float64(l[0]+l[1])
			}
			passes := 3.0
			if p.Checkpoint {
				passes++
			}
			w := plan.Work{Own: []float64{passes * ad}}
			if dora {
				// ‖W + s·B·A‖ per row on every forward.
				fwds := 1.0
				if p.Checkpoint {
					fwds = 2
				}
				var norm float64
				for _, l := range p.Shape.Linears() {
					norm += L * float64(l[0]*l[1]) * float64(2*p.Options.LoRARank+2)
				}
				w.Own = append(w.Own, fwds*norm)
			}
			if qlora {
				// The base's forward and input-gradient products run with
				// NF4 weights (recomputed forward too when checkpointing).
				passes := 2.0
				if p.Checkpoint {
					passes++
				}
				w.NF4 = passes * 2 * p.Tokens * p.Products
			}
			return w
		},
	}
}

func loadLoRA(m *model.Model, dir string) (peft.Method, error) { return peft.LoadLoRA(m, dir) }

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
