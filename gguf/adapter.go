package gguf

import (
	"fmt"
	"gotune/hfconfig"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"gotune/safetensors"
)

// AdapterOptions control AdapterFromPEFT.
type AdapterOptions struct {
	// Type of the lora_a/lora_b tensors: F32 (default when zero) or F16.
	Type TensorType
	// Name is general.name; the adapter folder's name when empty.
	Name string
}

// AdapterFromPEFT converts a PEFT LoRA folder (adapter_config.json +
// adapter_model.safetensors) into a llama.cpp LoRA adapter GGUF for the base
// model in baseModelDir (whose config.json fixes the architecture and head
// counts). Tensors are named <base tensor>.lora_a / .lora_b with GGUF dims
// [in, r] and [r, out]; for the llama architecture lora_b of q and k gets
// the same row permutation as the base weights.
func AdapterFromPEFT(adapterDir, baseModelDir, outPath string, opt AdapterOptions) error {
	if opt.Type == 0 {
		opt.Type = F32
	}
	if opt.Type != F32 && opt.Type != F16 {
		return fmt.Errorf("adapter tensors can be F32 or F16, not %s", opt.Type)
	}
	pc, err := hfconfig.ReadAdapterConfig(adapterDir)
	if err != nil {
		return err
	}
	cfgPath := pc.Path
	switch {
	case pc.PeftType != "LORA":
		return fmt.Errorf("%s: peft_type %q: only LORA adapters convert to GGUF", cfgPath, pc.PeftType)
	case pc.UseDoRA:
		return fmt.Errorf("%s: use_dora: llama.cpp adapters cannot express DoRA's magnitude vector; merge the adapter instead", cfgPath)
	case pc.R <= 0 || pc.LoRAAlpha <= 0:
		return fmt.Errorf("%s: r = %d and lora_alpha = %g must be positive", cfgPath, pc.R, pc.LoRAAlpha)
	case len(pc.RankPattern) > 0 || len(pc.AlphaPattern) > 0:
		return fmt.Errorf("%s: rank_pattern/alpha_pattern give modules different scales; a llama.cpp adapter has one alpha", cfgPath)
	case len(pc.ModulesToSave) > 0:
		return fmt.Errorf("%s: modules_to_save %v are full weights, which a llama.cpp LoRA adapter cannot carry", cfgPath, pc.ModulesToSave)
	case pc.FanInFanOut:
		return fmt.Errorf("%s: fan_in_fan_out adapters (GPT-2 Conv1D) are not supported", cfgPath)
	case pc.LoRABias || (pc.Bias != "" && pc.Bias != "none"):
		return fmt.Errorf("%s: LoRA bias terms are not supported by llama.cpp adapters", cfgPath)
	}
	// llama.cpp scales by alpha/r; rsLoRA scales by alpha/√r, so store the
	// alpha that gives the same product.
	alpha := pc.LoRAAlpha
	if pc.UseRSLoRA {
		alpha *= math.Sqrt(float64(pc.R))
	}

	cfg, err := ReadHFConfig(baseModelDir)
	if err != nil {
		return err
	}
	arch, err := Arch(cfg.ModelType)
	if err != nil {
		return err
	}
	want, _ := expectedTensors(cfg.hparams(arch))
	weights := filepath.Join(adapterDir, "adapter_model.safetensors")
	st, err := safetensors.OpenOne(weights)
	if err != nil {
		return err
	}
	defer st.Close()

	type pair struct{ a, b string }
	pairs := map[string]*pair{}
	for _, n := range st.Names() {
		module, half, ok := splitLoraName(n)
		if !ok {
			return fmt.Errorf("%s: tensor %q is not a LoRA A/B weight (embedding LoRA and saved modules are not supported)", weights, n)
		}
		gname, ok := cfg.Family.GGUFName(module + ".weight")
		if !ok || !strings.HasSuffix(gname, ".weight") || gname == "output_norm.weight" {
			return fmt.Errorf("%s: tensor %q targets %s, which has no llama.cpp LoRA counterpart", weights, n, module)
		}
		if gname == "token_embd.weight" {
			return fmt.Errorf("%s: tensor %q: LoRA on the embeddings is not supported", weights, n)
		}
		p := pairs[gname]
		if p == nil {
			p = &pair{}
			pairs[gname] = p
		}
		if half == "A" {
			p.a = n
		} else {
			p.b = n
		}
	}
	names := make([]string, 0, len(pairs))
	for g := range pairs {
		names = append(names, g)
	}
	slices.SortFunc(names, func(x, y string) int {
		if d := tensorOrder(x) - tensorOrder(y); d != 0 {
			return d
		}
		return strings.Compare(x, y)
	})
	var tensors []Tensor
	for _, g := range names {
		p := pairs[g]
		if p.a == "" || p.b == "" {
			return fmt.Errorf("%s: %s has only one of lora_A/lora_B", weights, g)
		}
		ia, _ := st.Info(p.a)
		ib, _ := st.Info(p.b)
		base := want[g]
		if len(ia.Shape) != 2 || len(ib.Shape) != 2 || ia.Shape[0] != ib.Shape[1] ||
			uint64(ia.Shape[1]) != base[0] || uint64(ib.Shape[0]) != base[1] {
			return fmt.Errorf("%s: %s: lora_A %v and lora_B %v do not fit the base weight [out %d, in %d] with a common rank",
				weights, g, ia.Shape, ib.Shape, base[1], base[0])
		}
		av, _, err := st.Float32s(p.a)
		if err != nil {
			return err
		}
		bv, _, err := st.Float32s(p.b)
		if err != nil {
			return err
		}
		if h := permuteHeads(arch, g, cfg); h > 0 {
			// B·A's rows are the weight's rows: permuting B's rows permutes the product.
			if bv, err = PermuteQK(bv, ib.Shape[0], ib.Shape[1], h); err != nil {
				return fmt.Errorf("%s: %s: %w", weights, p.b, err)
			}
		}
		ta, err := NewTensor(g+".lora_a", ia.Shape, av, opt.Type)
		if err != nil {
			return err
		}
		tb, err := NewTensor(g+".lora_b", ib.Shape, bv, opt.Type)
		if err != nil {
			return err
		}
		tensors = append(tensors, ta, tb)
	}
	if len(tensors) == 0 {
		return fmt.Errorf("%s: no LoRA tensors", weights)
	}
	name := opt.Name
	if name == "" {
		name = filepath.Base(filepath.Clean(adapterDir))
	}
	ft := FileF32
	if opt.Type == F16 {
		ft = FileF16
	}
	kv := []KV{
		{"general.architecture", arch},
		{"general.type", "adapter"},
		{"general.name", name},
		{"general.file_type", uint32(ft)},
		{"general.quantization_version", uint32(2)},
		{"adapter.type", "lora"},
		{"adapter.lora.alpha", float32(alpha)},
	}
	return Write(outPath, kv, tensors)
}

// splitLoraName turns "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
// (optionally with ".default" before ".weight") into the module path and "A"/"B".
func splitLoraName(n string) (module, half string, ok bool) {
	n = strings.TrimPrefix(n, "base_model.model.")
	n = strings.TrimSuffix(n, ".weight")
	n = strings.TrimSuffix(n, ".default")
	for _, h := range []string{"A", "B"} {
		if m, found := strings.CutSuffix(n, ".lora_"+h); found {
			return m, h, true
		}
	}
	return "", "", false
}

// CheckAdapter applies llama.cpp's adapter loading rules against a base
// model file: matching architecture, general.type adapter with adapter.type
// lora, every tensor a <base tensor>.lora_a/.lora_b pair, lora_a dims
// [in, r] and lora_b dims [r, out] for a base weight of dims [in, out].
func CheckAdapter(adapter, base *File) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	aa, _ := adapter.String("general.architecture")
	ba, _ := base.String("general.architecture")
	if aa != ba {
		fail("%s: architecture %q, base model %s is %q", adapter.Path, aa, base.Path, ba)
	}
	if t, _ := adapter.String("general.type"); t != "adapter" {
		fail("%s: general.type = %q, want adapter", adapter.Path, t)
	}
	if t, _ := adapter.String("adapter.type"); t != "lora" {
		fail("%s: adapter.type = %q, want lora", adapter.Path, t)
	}
	if v, ok := adapter.Lookup("adapter.lora.alpha"); ok {
		if _, isF := v.(float32); !isF {
			fail("%s: adapter.lora.alpha is %T, llama.cpp reads float32", adapter.Path, v)
		}
	}
	halves := map[string][2]*TensorInfo{}
	for _, ti := range adapter.Tensors() {
		ti := ti
		baseName, h, ok := strings.Cut(ti.Name, ".lora_")
		if !ok || (h != "a" && h != "b") {
			fail("%s: tensor %s is not a .lora_a/.lora_b tensor", adapter.Path, ti.Name)
			continue
		}
		p := halves[baseName]
		if h == "a" {
			p[0] = &ti
		} else {
			p[1] = &ti
		}
		halves[baseName] = p
	}
	for name, p := range halves {
		if p[0] == nil || p[1] == nil {
			fail("%s: %s lacks its lora_a or lora_b half", adapter.Path, name)
			continue
		}
		bt, ok := base.Tensor(name)
		if !ok {
			fail("%s: %s does not exist in the base model", adapter.Path, name)
			continue
		}
		a, b := p[0].Dims, p[1].Dims
		if len(a) != 2 || len(b) != 2 || len(bt.Dims) != 2 {
			fail("%s: %s: lora tensors and base weight must be 2-D", adapter.Path, name)
			continue
		}
		if bt.Dims[0] != a[0] || bt.Dims[1] != b[1] {
			fail("%s: %s: lora_a %v / lora_b %v do not match base dims %v", adapter.Path, name, a, b, bt.Dims)
		}
		if a[1] != b[0] {
			fail("%s: %s: lora_a rank %d differs from lora_b rank %d", adapter.Path, name, a[1], b[0])
		}
	}
	return errs
}
