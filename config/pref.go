package config

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// prefLosses are LLaMA-Factory's pref_loss values.
var prefLosses = []string{"sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"}

// Pref holds the settings of the preference stages, `stage: dpo` (with
// pref_loss sigmoid, hinge, ipo, kto_pair, orpo or simpo) and `stage: kto`,
// under LLaMA-Factory's keys and with its defaults.
type Pref struct {
	PrefBeta          float64 `yaml:"pref_beta"`           // β (ORPO's λ)
	PrefFTX           float64 `yaml:"pref_ftx"`            // weight of the SFT loss mixed in
	PrefLoss          string  `yaml:"pref_loss"`           // sigmoid, hinge, ipo, kto_pair, orpo, simpo
	DPOLabelSmoothing float64 `yaml:"dpo_label_smoothing"` // cDPO's ε, sigmoid only
	SimPOGamma        float64 `yaml:"simpo_gamma"`         // SimPO's target margin
	KTOChosenWeight   float64 `yaml:"kto_chosen_weight"`   // weight of desirable answers
	KTORejectedWeight float64 `yaml:"kto_rejected_weight"` // weight of undesirable answers
	// KTOUndesirableWeight is TRL's name for kto_rejected_weight.
	KTOUndesirableWeight *float64 `yaml:"kto_undesirable_weight"`
	// PrecomputeRefLogProbs (TRL's precompute_ref_log_probs) scores the
	// whole dataset under the reference once before training. Full and
	// freeze fine-tuning always do (their reference is the initial
	// weights, of which gotune keeps no second copy); PEFT methods
	// otherwise score each batch with the adapter switched off.
	PrecomputeRefLogProbs *bool `yaml:"precompute_ref_log_probs"`

	// LLaMA-Factory keys gotune reads only to refuse a value it would
	// otherwise ignore: a separate reference model (gotune's reference is
	// the base without the adapter, or the initial weights), BCO mixing and
	// LD-DPO's length weighting.
	RefModel                string   `yaml:"ref_model"`
	RefModelAdapters        string   `yaml:"ref_model_adapters"`
	RefModelQuantizationBit *int     `yaml:"ref_model_quantization_bit"`
	PrefBCOWeight           float64  `yaml:"pref_bco_weight"`
	LDAlpha                 *float64 `yaml:"ld_alpha"`
}

func defaultPref() Pref {
	return Pref{PrefBeta: 0.1, PrefLoss: "sigmoid", SimPOGamma: 0.5, KTOChosenWeight: 1, KTORejectedWeight: 1}
}

// IsPreference reports whether the stage trains on preferences.
func (c *Config) IsPreference() bool { return c.Stage == "dpo" || c.Stage == "kto" }

// KTOUndesirable is the weight of undesirable answers, under either name.
func (c *Config) KTOUndesirable() float64 {
	if w := c.KTOUndesirableWeight; w != nil {
		return *w
	}
	return c.KTORejectedWeight
}

// validatePref checks the preference keys against the stage and method.
func (c *Config) validatePref(bad func(key, format string, args ...any)) {
	if c.RefModel != "" || c.RefModelAdapters != "" || c.RefModelQuantizationBit != nil {
		key := "ref_model"
		if c.RefModel == "" {
			key = "ref_model_adapters"
			if c.RefModelAdapters == "" {
				key = "ref_model_quantization_bit"
			}
		}
		bad(key, "a separate reference model is not supported: the reference is the model without the adapter (PEFT methods) or its initial weights (full and freeze), which costs no second copy")
	}
	if c.PrefBCOWeight != 0 {
		bad("pref_bco_weight", "BCO mixing is not supported yet; leave it at 0")
	}
	if c.LDAlpha != nil {
		bad("ld_alpha", "LD-DPO's length weighting is not supported yet; remove the key")
	}
	if !c.IsPreference() {
		return
	}
	fin := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	if !(c.PrefBeta > 0 && fin(c.PrefBeta)) {
		bad("pref_beta", "must be positive, got %v", c.PrefBeta)
	}
	if !(c.PrefFTX >= 0 && fin(c.PrefFTX)) {
		bad("pref_ftx", "must be 0 or more, got %v", c.PrefFTX)
	}
	if c.Stage == "dpo" {
		if !slices.Contains(prefLosses, c.PrefLoss) {
			bad("pref_loss", "%q is not one of %s", c.PrefLoss, strings.Join(prefLosses, ", "))
		}
		if !(c.DPOLabelSmoothing >= 0 && c.DPOLabelSmoothing <= 0.5) {
			bad("dpo_label_smoothing", "must be in [0, 0.5], got %v", c.DPOLabelSmoothing)
		} else if c.DPOLabelSmoothing > 0 && c.PrefLoss != "sigmoid" {
			bad("dpo_label_smoothing", "applies to pref_loss sigmoid only, not %s", c.PrefLoss)
		}
		if !fin(c.SimPOGamma) {
			bad("simpo_gamma", "must be a finite number, got %v", c.SimPOGamma)
		}
	}
	if c.Stage == "kto" {
		if w := c.KTOChosenWeight; !(w >= 0 && fin(w)) {
			bad("kto_chosen_weight", "must be 0 or more, got %v", w)
		}
		if w := c.KTOUndesirable(); !(w >= 0 && fin(w)) {
			bad("kto_rejected_weight", "must be 0 or more, got %v", w)
		}
	}
	if c.PackingEnabled() {
		bad("packing", "stage %s scores whole answers one sequence a row: set packing: false", c.Stage)
	}
	if c.KTOUndesirableWeight != nil {
		if _, set := c.src.line["kto_rejected_weight"]; set || c.src.flags["kto_rejected_weight"] {
			bad("kto_undesirable_weight", "set together with kto_rejected_weight, its LLaMA-Factory name: keep one")
		}
	}
	if c.Stage == "kto" && c.PrefLoss != "sigmoid" {
		if _, set := c.src.line["pref_loss"]; set || c.src.flags["pref_loss"] {
			bad("pref_loss", "applies to stage dpo; stage kto has its own loss")
		}
	}
}

// PrefSummary is a one-line description of the preference loss for logs.
func (c *Config) PrefSummary() string {
	if c.Stage == "kto" {
		return fmt.Sprintf("kto (beta %g, desirable weight %g, undesirable weight %g, ftx %g)", c.PrefBeta, c.KTOChosenWeight, c.KTOUndesirable(), c.PrefFTX)
	}
	s := fmt.Sprintf("dpo %s (beta %g", c.PrefLoss, c.PrefBeta)
	switch {
	case c.PrefLoss == "simpo":
		s += fmt.Sprintf(", gamma %g", c.SimPOGamma)
	case c.DPOLabelSmoothing > 0:
		s += fmt.Sprintf(", label smoothing %g", c.DPOLabelSmoothing)
	}
	return s + fmt.Sprintf(", ftx %g)", c.PrefFTX)
}
