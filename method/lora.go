package method

import (
	"math"

	"gotune/config"
	"gotune/model"
	"gotune/nn"
	"gotune/peft"
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
}

func loadLoRA(m *model.Model, dir string) (peft.Method, error) { return peft.LoadLoRA(m, dir) }

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
