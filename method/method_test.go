package method

import (
	"strings"
	"testing"

	"gotune/config"
)

// TestValidate: Validate reports the shared keys' problems and the chosen
// method's together, each naming file and line.
func TestValidate(t *testing.T) {
	base := "model_name_or_path: m\ndataset: d\n"
	for _, tt := range []struct {
		name, yaml string
		want       []string // substrings; empty means valid
	}{
		{"default lora", base, nil},
		{"every method's defaults", "", nil},
		{"many at once", base + "lora_rank: 0\nlora_dropout: 1\nlearning_rate: -1\n",
			[]string{"v.yaml:3: lora_rank: must be positive, got 0", "v.yaml:4: lora_dropout", "v.yaml:5: learning_rate"}},
		{"unknown method", base + "finetuning_type: galore\n", []string{`v.yaml:3: finetuning_type: "galore" is not one of full, freeze, lora`}},
		{"alias", base + "finetuning_type: p_tuning_v2\npacking: false\n", nil},
		{"qlora needs lora", base + "finetuning_type: full\nquantization_bit: 4\n", []string{"quantization_bit: quantized training needs"}},
		{"bad bits", base + "quantization_bit: 3\n", []string{"must be 4 or 8"}},
		{"dora on full", base + "finetuning_type: full\nuse_dora: true\n", []string{"v.yaml:4: use_dora: only applies to finetuning_type lora, got full"}},
		{"loraplus on ia3", base + "finetuning_type: ia3\nloraplus_lr_ratio: 16\n", []string{"loraplus_lr_ratio: only applies to finetuning_type lora"}},
		{"freeze zero layers", base + "finetuning_type: freeze\nfreeze_trainable_layers: 0\n", []string{"freeze_trainable_layers"}},
		{"prompt with packing", base + "finetuning_type: prompt_tuning\npacking: true\n", []string{"v.yaml:4: packing: finetuning_type prompt_tuning cannot be combined with packing"}},
		{"prompt needs tokens", base + "finetuning_type: p_tuning\nnum_virtual_tokens: 0\n", []string{"num_virtual_tokens: must be positive"}},
		{"text init needs text", base + "finetuning_type: prompt_tuning\nprompt_tuning_init: TEXT\n", []string{"prompt_tuning_init_text: required"}},
		{"adapter placement", base + "finetuning_type: adapter\nadapter_placement: middle\n", []string{`adapter_placement: "middle" is not one of houlsby, pfeiffer, attention`}},
		{"ia3 packs", base + "finetuning_type: ia3\npacking: true\n", nil},
		{"full needs precomputed reference", base + "stage: dpo\nfinetuning_type: full\nprecompute_ref_log_probs: false\n", []string{"v.yaml:5: precompute_ref_log_probs: false needs a PEFT method"}},
		{"lora keeps its reference", base + "stage: dpo\nprecompute_ref_log_probs: false\n", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.yaml == "" {
				for _, name := range Names() {
					c, err := config.Parse([]byte(base+"finetuning_type: "+name+"\n"), "v.yaml")
					if err != nil {
						t.Fatal(err)
					}
					if err := Validate(c); err != nil {
						t.Errorf("%s with its defaults: %v", name, err)
					}
				}
				return
			}
			c, err := config.Parse([]byte(tt.yaml), "v.yaml")
			if err != nil {
				t.Fatal(err)
			}
			err = Validate(c)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate passed, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// Every registered method has a name no other uses, and the adapter
// methods a peft_type no other uses, so Lookup and Load are unambiguous.
func TestRegistryUnique(t *testing.T) {
	names, types := map[string]bool{}, map[string]bool{}
	for _, m := range registry {
		for _, n := range append([]string{m.Name}, m.Aliases...) {
			if names[n] {
				t.Errorf("finetuning_type %q registered twice", n)
			}
			names[n] = true
		}
		if m.PeftType != "" {
			if types[m.PeftType] {
				t.Errorf("peft_type %q registered twice", m.PeftType)
			}
			types[m.PeftType] = true
			if m.Load == nil {
				t.Errorf("%s saves peft_type %s but cannot load it", m.Name, m.PeftType)
			}
		}
		if m.Attach == nil {
			t.Errorf("%s cannot attach", m.Name)
		}
	}
}
