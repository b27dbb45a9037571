package peft

import (
	"fmt"
	"gotune/hfconfig"
	"path/filepath"
	"slices"
	"strings"

	"gotune/model"
	"gotune/nn"
	"gotune/safetensors"
)

// PeftType returns the peft_type of an adapter folder ("LORA", "IA3", …).
func PeftType(dir string) (string, error) {
	c, err := hfconfig.ReadAdapterConfig(dir)
	if err != nil {
		return "", err
	}
	if c.PeftType == "" {
		return "", fmt.Errorf("%s: peft_type is missing", c.Path)
	}
	return c.PeftType, nil
}

// LoadLoRA attaches the LoRA adapter saved in dir (PEFT layout) to m.
func LoadLoRA(m *model.Model, dir string) (*LoRASet, error) {
	pc, err := hfconfig.ReadAdapterConfig(dir)
	if err != nil {
		return nil, err
	}
	path := pc.Path
	if pc.PeftType != "LORA" {
		return nil, fmt.Errorf("%s: peft_type %q, want LORA", path, pc.PeftType)
	}
	if pc.FanInFanOut {
		return nil, fmt.Errorf("%s: fan_in_fan_out=true is for GPT-2 style Conv1D layers, which Llama-family models do not have", path)
	}
	if pc.Bias != "" && pc.Bias != "none" {
		return nil, fmt.Errorf("%s: bias=%q is not supported (none)", path, pc.Bias)
	}
	if len(pc.ModulesToSave) > 0 {
		return nil, fmt.Errorf("%s: modules_to_save %v is not supported yet", path, pc.ModulesToSave)
	}
	// AttachLoRA reads no targets as "all"; a saved adapter names the
	// modules its weights are for, so a missing list is the file's fault.
	if !pc.TargetModules.Set && len(pc.TargetParameters) == 0 {
		return nil, fmt.Errorf("%s: target_modules must be a list of names or a regex string", path)
	}
	cfg := LoRAConfig{R: pc.R, Alpha: pc.LoRAAlpha, Dropout: pc.LoRADropout, RSLoRA: pc.UseRSLoRA, DoRA: pc.UseDoRA,
		RankPattern: pc.RankPattern, AlphaPattern: pc.AlphaPattern, Init: "zero", BaseModel: pc.BaseModel,
		Targets: pc.TargetModules.Names, TargetRegex: pc.TargetModules.Regex, Layers: pc.LayersToTransform.Indices,
		TargetParameters: pc.TargetParameters}
	set, err := AttachLoRA(m, cfg, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := set.LoadWeights(dir); err != nil {
		set.Detach()
		return nil, err
	}
	return set, nil
}

// LoadWeights reads the adapter's parameters from dir/adapter_model.safetensors
// (a PEFT folder or a checkpoint).
func (s *LoRASet) LoadWeights(dir string) error {
	path := filepath.Join(dir, "adapter_model.safetensors")
	st, err := safetensors.OpenOne(path)
	if err != nil {
		return err
	}
	defer st.Close()
	return loadParams(st, path, s.Params())
}

// loadParams fills params from a PEFT file, accepting keys with or without
// the adapter name, and reports tensors that belong to no parameter.
func loadParams(st *safetensors.Set, path string, params []*nn.Param) error {
	used := map[string]bool{}
	for _, p := range params {
		key := SavedName(p.Name)
		if !st.Has(key) {
			key = p.Name
		}
		b, info, err := st.Bytes(key)
		if err != nil {
			return fmt.Errorf("%s: missing tensor %q", path, SavedName(p.Name))
		}
		if !slices.Equal(info.Shape, p.Shape) {
			return fmt.Errorf("%s: tensor %q has shape %v, the model and adapter_config.json imply %v", path, key, info.Shape, p.Shape)
		}
		if err := safetensors.DecodeFloat32s(p.Data, b, info); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		used[key] = true
	}
	var extra []string
	for _, n := range st.Names() {
		if !used[n] {
			extra = append(extra, n)
		}
	}
	if len(extra) > 0 {
		return fmt.Errorf("%s: tensors %s match no adapted layer of this model (is it the right base model?)", path, strings.Join(extra[:min(3, len(extra))], ", "))
	}
	return nil
}
