package gguf

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gotune/safetensors"
)

func TestAdapterFromPEFT(t *testing.T) {
	for _, model := range []string{"qwen3", "qwen2", "llama"} {
		t.Run(model, func(t *testing.T) {
			base, baseDir := convertRef(t, model, F32)
			adir := filepath.Join(refDir, model, "ref", "lora", "adapter_init")
			if _, err := os.Stat(adir); err != nil {
				t.Skipf("reference adapter %s not present", adir)
			}
			out := filepath.Join(t.TempDir(), "lora.gguf")
			if err := AdapterFromPEFT(adir, baseDir, out, AdapterOptions{}); err != nil {
				t.Fatal(err)
			}
			f, err := Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if errs := CheckAdapter(f, base); len(errs) > 0 {
				t.Fatalf("llama.cpp's adapter rules reject it: %v", errs)
			}
			cfg, _ := ReadHFConfig(baseDir)
			if a, _ := f.Float("adapter.lora.alpha"); a != 8 {
				t.Errorf("alpha %g", a)
			}
			if ty, _ := f.String("general.type"); ty != "adapter" {
				t.Errorf("general.type %q", ty)
			}
			// 7 projections × layers × (A, B).
			if n := len(f.Tensors()); n != 7*cfg.NumHiddenLayers*2 {
				t.Errorf("%d tensors", n)
			}
			ti, ok := f.Tensor("blk.1.attn_k.weight.lora_b")
			if !ok || !slices.Equal(ti.Dims, []uint64{4, uint64(cfg.NumKeyValueHeads * cfg.HeadDim)}) {
				t.Errorf("blk.1.attn_k.weight.lora_b: %+v", ti)
			}
			ti, ok = f.Tensor("blk.0.ffn_down.weight.lora_a")
			if !ok || !slices.Equal(ti.Dims, []uint64{uint64(cfg.IntermediateSize), 4}) {
				t.Errorf("blk.0.ffn_down.weight.lora_a: %+v", ti)
			}
			// Values: B of q/k permuted like the base weights for llama only, the
			// rest unchanged.
			st, _ := safetensors.OpenOne(filepath.Join(adir, "adapter_model.safetensors"))
			defer st.Close()
			for _, c := range []struct{ hf, gguf string }{
				{"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", "blk.0.attn_q.weight.lora_b"},
				{"base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight", "blk.1.attn_k.weight.lora_b"},
				{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "blk.0.attn_q.weight.lora_a"},
				{"base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight", "blk.0.attn_v.weight.lora_b"},
			} {
				want, info, err := st.Float32s(c.hf)
				if err != nil {
					t.Fatal(err)
				}
				got, _, err := f.TensorFloat32s(c.gguf)
				if err != nil {
					t.Fatal(err)
				}
				if h := permuteHeads(model, strings.TrimSuffix(c.gguf, ".lora_b"), cfg); h > 0 {
					want, _ = PermuteQK(want, info.Shape[0], info.Shape[1], h)
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s differs from %s", c.gguf, c.hf)
				}
			}
		})
	}
}

func TestAdapterRejects(t *testing.T) {
	baseDir := refModel(t, "qwen2")
	src := filepath.Join(refDir, "qwen2", "ref", "lora", "adapter_init")
	cfg, err := os.ReadFile(filepath.Join(src, "adapter_config.json"))
	if err != nil {
		t.Skip("reference adapter not present")
	}
	weights, _ := os.ReadFile(filepath.Join(src, "adapter_model.safetensors"))
	for _, c := range []struct{ name, from, to, want string }{
		{"dora", `"use_dora": false`, `"use_dora": true`, "DoRA"},
		{"prefix", `"peft_type": "LORA"`, `"peft_type": "PREFIX_TUNING"`, "only LORA"},
		{"saved modules", `"modules_to_save": null`, `"modules_to_save": ["lm_head"]`, "modules_to_save"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := string(cfg)
			if !strings.Contains(s, c.from) {
				t.Fatalf("reference config lacks %q", c.from)
			}
			os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(strings.Replace(s, c.from, c.to, 1)), 0o644)
			os.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), weights, 0o644)
			err := AdapterFromPEFT(dir, baseDir, filepath.Join(dir, "out.gguf"), AdapterOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "adapter_config.json") {
				t.Errorf("err = %v, want %q naming the file", err, c.want)
			}
		})
	}
}

// rsLoRA scales by alpha/√r; llama.cpp by alpha/r, so the stored alpha is
// alpha·√r.
func TestAdapterRSLoRAAlpha(t *testing.T) {
	baseDir := refModel(t, "qwen3")
	adir := filepath.Join(refDir, "qwen3", "ref", "lora_rslora", "adapter_init")
	if _, err := os.Stat(adir); err != nil {
		t.Skipf("reference adapter %s not present", adir)
	}
	out := filepath.Join(t.TempDir(), "rs.gguf")
	if err := AdapterFromPEFT(adir, baseDir, out, AdapterOptions{Type: F16}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if a, _ := f.Float("adapter.lora.alpha"); a != 16 { // 8·√4
		t.Errorf("alpha %g, want 16", a)
	}
	if ti, _ := f.Tensor("blk.0.attn_q.weight.lora_a"); ti.Type != F16 {
		t.Errorf("type %s", ti.Type)
	}
}
