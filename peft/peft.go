package peft

import (
	"gotune/safetensors"
	"os"
	"path/filepath"
	"strings"

	"gotune/nn"
)

// Method is a PEFT method attached to a model.
type Method interface {
	// Type is PEFT's peft_type ("LORA", "IA3", "PROMPT_TUNING", …).
	Type() string
	// Params lists the trainable parameters, named as in PEFT's module tree.
	Params() []*nn.Param
	// Save writes the adapter folder in PEFT's layout.
	Save(dir string) error
	// Detach removes the method from the model.
	Detach()
}

// Merger is a method whose effect can be folded into the model's weights
// (LoRA, IA3), so an export needs no adapter.
type Merger interface {
	Method
	Merge() error
}

// Type implements Method.
func (s *LoRASet) Type() string { return "LORA" }

// SavedName turns an in-memory parameter name into the key PEFT saves.
func SavedName(name string) string {
	n := strings.Replace(name, "."+adapterName+".weight", ".weight", 1)
	n = strings.Replace(n, "."+adapterName+".", ".", 1)
	return strings.Replace(n, "lora_magnitude_vector.weight", "lora_magnitude_vector", 1)
}

// writeTensors creates dir and writes params as adapter_model.safetensors,
// each under the key savedAs gives it — the part every method's Save shares.
func writeTensors(dir string, params []*nn.Param, savedAs func(string) string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ts := make([]safetensors.Tensor, 0, len(params))
	for _, p := range params {
		ts = append(ts, safetensors.F32Tensor(savedAs(p.Name), p.Shape, p.Data))
	}
	return safetensors.Write(filepath.Join(dir, "adapter_model.safetensors"), ts, map[string]string{"format": "pt"})
}

// ForInference readies a loaded adapter for scoring and generation: dropout
// acts only in training (PEFT's eval mode), so it is switched off; the
// saved configuration keeps its value.
func ForInference(m Method) {
	if s, ok := m.(*LoRASet); ok {
		for _, l := range s.Modules {
			l.Dropout = 0
		}
	}
}
