package gguf

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gotune/safetensors"
)

const refDir = "../testdata/reference"

func refModel(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(refDir, name, "model")
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		t.Fatalf("reference model %s missing (it ships with the repository): %v", dir, err)
	}
	return dir
}

// directPermute is llama.cpp's reshape(heads, 2, hd/2, cols).swapaxes(1, 2)
// written as explicit index arithmetic on a 4-D view.
func directPermute(w []float32, rows, cols, heads int) []float32 {
	hd := rows / heads
	out := make([]float32, len(w))
	// out viewed as [heads][hd/2][2][cols] equals in viewed as [heads][2][hd/2][cols]
	// with the middle axes swapped.
	for h := 0; h < heads; h++ {
		for a := 0; a < hd/2; a++ {
			for b := 0; b < 2; b++ {
				for c := 0; c < cols; c++ {
					out[((h*(hd/2)+a)*2+b)*cols+c] = w[((h*2+b)*(hd/2)+a)*cols+c]
				}
			}
		}
	}
	return out
}

func TestPermuteQK(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct{ rows, cols, heads int }{{64, 64, 4}, {16, 64, 1}, {32, 5, 2}, {12, 1, 3}, {8, 3, 4}} {
		w := make([]float32, c.rows*c.cols)
		for i := range w {
			w[i] = float32(rng.NormFloat64())
		}
		p, err := PermuteQK(w, c.rows, c.cols, c.heads)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(p, directPermute(w, c.rows, c.cols, c.heads)) {
			t.Errorf("%+v: PermuteQK differs from the reshape/swapaxes definition", c)
		}
		back, _ := UnpermuteQK(p, c.rows, c.cols, c.heads)
		if !slices.Equal(back, w) {
			t.Errorf("%+v: UnpermuteQK(PermuteQK(w)) != w", c)
		}
		if c.rows/c.heads > 2 && slices.Equal(p, w) {
			t.Errorf("%+v: permutation left the rows in place", c)
		}
	}
	// Rotate-half pairs (i, i+hd/2) must become adjacent rows (2i, 2i+1).
	w := []float32{0, 1, 2, 3, 4, 5, 6, 7} // one head, hd 8, one column
	p, _ := PermuteQK(w, 8, 1, 1)
	if !slices.Equal(p, []float32{0, 4, 1, 5, 2, 6, 3, 7}) {
		t.Errorf("permuted %v", p)
	}
	if _, err := PermuteQK(w, 8, 1, 3); err == nil {
		t.Error("accepted rows not divisible into heads")
	}
}

// TestLlama3RopeFactors compares against transformers' llama3 rule written
// directly: inv_freq is kept above the high-frequency wavelength cut, divided
// by factor below the low one, and blended in between.
func TestLlama3RopeFactors(t *testing.T) {
	rs := &RopeScaling{Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 64}
	const dim, theta = 16, 500000.0
	got := Llama3RopeFactors(dim, theta, rs)
	kinds := map[string]bool{}
	for i, g := range got {
		inv := math.Pow(theta, -float64(2*i)/dim)
		wl := 2 * math.Pi / inv
		var scaled float64
		switch {
		case wl < 64.0/4:
			scaled, kinds["high"] = inv, true
		case wl > 64.0/1:
			scaled, kinds["low"] = inv/8, true
		default:
			s := (64/wl - 1) / (4 - 1)
			scaled, kinds["mid"] = (1-s)*inv/8+s*inv, true
		}
		// llama.cpp divides the base frequency by the stored factor.
		if r := inv / float64(g); math.Abs(r-scaled)/scaled > 1e-6 {
			t.Errorf("dim pair %d: inv_freq/factor = %g, transformers gives %g", i, r, scaled)
		}
	}
	if len(kinds) != 3 {
		t.Errorf("test covered only %v of the three regimes", kinds)
	}
}

func convertRef(t *testing.T, name string, typ TensorType) (*File, string) {
	t.Helper()
	dir := refModel(t, name)
	out := filepath.Join(t.TempDir(), name+".gguf")
	if err := FromHF(dir, out, Options{Type: typ}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, dir
}

func TestFromHFReferenceModels(t *testing.T) {
	cases := []struct {
		model, arch, tokModel, pre string
		tied, permuted             bool
		extra                      []string // tensors that must be present
	}{
		{"qwen3", "qwen3", "gpt2", "qwen2", true, false, []string{"blk.0.attn_q_norm.weight", "blk.1.attn_k_norm.weight"}},
		{"qwen2", "qwen2", "gpt2", "qwen2", true, false, []string{"blk.0.attn_q.bias", "blk.1.attn_v.bias"}},
		{"llama", "llama", "llama", "default", false, true, []string{"output.weight", "rope_freqs.weight"}},
		{"phi3", "phi3", "gpt2", "qwen2", true, false, []string{"blk.0.attn_qkv.weight", "blk.1.ffn_up.weight"}},
		{"phi3_longrope", "phi3", "gpt2", "qwen2", true, false, []string{"rope_factors_long.weight", "rope_factors_short.weight"}},
	}
	for _, c := range cases {
		t.Run(c.model, func(t *testing.T) {
			f, dir := convertRef(t, c.model, F32)
			if errs := CheckModel(f); len(errs) > 0 {
				t.Fatalf("checker rejects the export: %v", errs)
			}
			if a, _ := f.String("general.architecture"); a != c.arch {
				t.Errorf("architecture %q", a)
			}
			if m, _ := f.String("tokenizer.ggml.model"); m != c.tokModel {
				t.Errorf("tokenizer model %q", m)
			}
			if p, _ := f.String("tokenizer.ggml.pre"); p != c.pre {
				t.Errorf("pre-tokenizer %q, want %q", p, c.pre)
			}
			if _, has := f.Tensor("output.weight"); has == c.tied {
				t.Errorf("output.weight present = %v with tied embeddings = %v", has, c.tied)
			}
			for _, n := range c.extra {
				if _, ok := f.Tensor(n); !ok {
					t.Errorf("missing %s", n)
				}
			}
			tmpl, _ := f.String("tokenizer.chat_template")
			if want, _ := os.ReadFile(filepath.Join(dir, "chat_template.jinja")); tmpl != string(want) {
				t.Error("chat template differs from chat_template.jinja")
			}
			// Every weight equals the safetensors original (q/k un-permuted for llama).
			st, err := safetensors.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			cfg, _ := ReadHFConfig(dir)
			n := 0
			for _, hf := range st.Names() {
				name, ok := cfg.Family.GGUFName(hf)
				if !ok || (hf == "lm_head.weight" && c.tied) {
					continue
				}
				want, info, _ := st.Float32s(hf)
				got, ti, err := f.TensorFloat32s(name)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(ti.Shape(), info.Shape) {
					t.Errorf("%s: shape %v, want %v", name, ti.Shape(), info.Shape)
				}
				if h := permuteHeads(c.arch, name, cfg); h > 0 {
					cols := 1
					if len(info.Shape) == 2 {
						cols = info.Shape[1]
					}
					if slices.Equal(got, want) {
						t.Errorf("%s: not permuted", name)
					}
					got, _ = UnpermuteQK(got, info.Shape[0], cols, h)
					n++
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s: values differ from %s", name, hf)
				}
			}
			if c.permuted && n != 2*cfg.NumHiddenLayers {
				t.Errorf("%d permuted tensors, want %d", n, 2*cfg.NumHiddenLayers)
			}
		})
	}
}

func TestFromHFTokenizerMetadata(t *testing.T) {
	q, _ := convertRef(t, "qwen3", F32)
	toks, _ := q.Strings("tokenizer.ggml.tokens")
	types, _ := q.Ints("tokenizer.ggml.token_type")
	checks := []struct {
		id       int
		tok      string
		typ      int32
		describe string
	}{
		{0, "!", TokenNormal, "vocab"},
		{2000, "<|endoftext|>", TokenControl, "special added"},
		{2002, "<|im_end|>", TokenControl, "special added"},
		{2003, "<think>", TokenUserDefined, "non-special added"},
		{2047, "[PAD2047]", TokenUnused, "padding up to vocab_size"},
	}
	for _, c := range checks {
		if toks[c.id] != c.tok || int32(types[c.id]) != c.typ {
			t.Errorf("qwen3 token %d (%s) = %q type %d, want %q type %d", c.id, c.describe, toks[c.id], types[c.id], c.tok, c.typ)
		}
	}
	ids := map[string]int64{"eos_token_id": 2002, "padding_token_id": 2000}
	for k, want := range ids {
		if v, _ := q.Int("tokenizer.ggml." + k); v != want {
			t.Errorf("qwen3 %s = %d, want %d", k, v, want)
		}
	}
	if b, _ := q.Bool("tokenizer.ggml.add_bos_token"); b {
		t.Error("qwen3 add_bos_token = true")
	}
	merges, _ := q.Strings("tokenizer.ggml.merges")
	if len(merges) != 1744 || merges[0] != "Ġ t" {
		t.Errorf("qwen3 merges: %d, first %q", len(merges), merges[0])
	}

	l, _ := convertRef(t, "llama", F32)
	toks, _ = l.Strings("tokenizer.ggml.tokens")
	types, _ = l.Ints("tokenizer.ggml.token_type")
	scores, _ := l.Float32s("tokenizer.ggml.scores")
	if toks[3] != "<0x00>" || types[3] != int64(TokenByte) || types[0] != int64(TokenUnknown) || types[1] != int64(TokenControl) {
		t.Errorf("llama types: %q %d, unk %d, bos %d", toks[3], types[3], types[0], types[1])
	}
	for k, want := range map[string]int64{"bos_token_id": 1, "eos_token_id": 2, "unknown_token_id": 0, "padding_token_id": 2} {
		if v, _ := l.Int("tokenizer.ggml." + k); v != want {
			t.Errorf("llama %s = %d, want %d", k, v, want)
		}
	}
	if b, _ := l.Bool("tokenizer.ggml.add_bos_token"); !b {
		t.Error("llama add_bos_token = false, but its post-processor adds <s>")
	}
	if b, _ := l.Bool("tokenizer.ggml.add_space_prefix"); !b {
		t.Error("llama add_space_prefix = false, but its normalizer prepends ▁")
	}
	// The result of the first merge outranks that of a later one.
	idx := func(s string) int { return slices.Index(toks, s) }
	first, later := idx("e▁"), idx("th")
	if first < 0 || later < 0 || !(scores[first] > scores[later]) {
		t.Errorf("merge scores: e▁ %v, th %v", scores[max(first, 0)], scores[max(later, 0)])
	}
}

func TestFromHFQuantized(t *testing.T) {
	for _, typ := range []TensorType{F16, BF16, Q8_0, Q4_0, Q4_K} {
		t.Run(typ.String(), func(t *testing.T) {
			f, dir := convertRef(t, "qwen2", typ)
			if errs := CheckModel(f); len(errs) > 0 {
				t.Fatalf("checker: %v", errs)
			}
			st, _ := safetensors.OpenDir(dir)
			defer st.Close()
			want, _, _ := st.Float32s("model.layers.0.mlp.up_proj.weight")
			got, ti, err := f.TensorFloat32s("blk.0.ffn_up.weight")
			if err != nil {
				t.Fatal(err)
			}
			// Rows of 64 do not fit Q4_K's 256-blocks: it falls back to Q8_0.
			wantType := map[TensorType]TensorType{Q4_K: Q8_0}[typ]
			if wantType == 0 {
				wantType = typ
			}
			if ti.Type != wantType {
				t.Errorf("type %s, want %s", ti.Type, wantType)
			}
			if norm, _ := f.Tensor("blk.0.attn_norm.weight"); norm.Type != F32 {
				t.Errorf("norm stored as %s", norm.Type)
			}
			var se, sw float64
			for i := range want {
				d := float64(got[i] - want[i])
				se, sw = se+d*d, sw+float64(want[i])*float64(want[i])
			}
			limit := map[TensorType]float64{F16: 1e-3, BF16: 5e-3, Q8_0: 1e-2, Q4_0: 0.15, Q4_K: 1e-2}[typ]
			if rel := math.Sqrt(se / sw); rel > limit {
				t.Errorf("relative error %g > %g", rel, limit)
			}
			ft, _ := f.Int("general.file_type")
			if FileType(ft) != fileTypes[typ] {
				t.Errorf("file_type %d", ft)
			}
		})
	}
}

// TestCheckModelFails removes or breaks one thing at a time in a valid export
// and expects the checker to name it.
func TestCheckModelFails(t *testing.T) {
	good, _ := convertRef(t, "qwen3", F32)
	var tensors []Tensor
	for _, ti := range good.Tensors() {
		b, _, _ := good.TensorData(ti.Name)
		tensors = append(tensors, Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: b})
	}
	without := func(key string) []KV {
		var out []KV
		for _, kv := range good.KV() {
			if kv.Key != key {
				out = append(out, kv)
			}
		}
		return out
	}
	replace := func(key string, v any) []KV {
		out := slices.Clone(good.KV())
		for i := range out {
			if out[i].Key == key {
				out[i].Value = v
			}
		}
		return out
	}
	dropTensor := func(name string) []Tensor {
		return slices.DeleteFunc(slices.Clone(tensors), func(t Tensor) bool { return t.Name == name })
	}
	cases := []struct {
		name    string
		kv      []KV
		tensors []Tensor
		want    string
	}{
		{"no context length", without("qwen3.context_length"), tensors, "qwen3.context_length is missing"},
		{"no eps", without("qwen3.attention.layer_norm_rms_epsilon"), tensors, "layer_norm_rms_epsilon is missing"},
		{"chat template of another type", replace("tokenizer.chat_template", int32(1)), tensors, "tokenizer.chat_template"},
		{"no merges", without("tokenizer.ggml.merges"), tensors, "merges"},
		{"no eos", without("tokenizer.ggml.eos_token_id"), tensors, "eos_token_id is missing"},
		{"no file type", without("general.file_type"), tensors, "general.file_type is missing"},
		{"no key_length", without("qwen3.attention.key_length"), tensors, "attn_q.weight has dims"},
		{"wrong type", replace("qwen3.block_count", int32(2)), tensors, "has type int32"},
		{"eos out of range", replace("tokenizer.ggml.eos_token_id", uint32(5000)), tensors, "outside"},
		{"missing q norm", good.KV(), dropTensor("blk.1.attn_q_norm.weight"), "blk.1.attn_q_norm.weight is missing"},
		{"extra tensor", good.KV(), append(slices.Clone(tensors), Tensor{Name: "blk.9.attn_q.weight", Dims: []uint64{4}, Type: F32, Data: make([]byte, 16)}), "unexpected tensor"},
	}
	// tokenizer.chat_template is optional in llama.cpp: a base model without
	// one passes (issue 13.16).
	t.Run("no chat template passes", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "base.gguf")
		if err := Write(p, without("tokenizer.chat_template"), tensors); err != nil {
			t.Fatal(err)
		}
		f, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if errs := CheckModel(f); len(errs) > 0 {
			t.Errorf("a model without tokenizer.chat_template fails: %v", errs)
		}
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.gguf")
			if err := Write(p, c.kv, c.tensors); err != nil {
				t.Fatal(err)
			}
			f, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			errs := CheckModel(f)
			found := false
			for _, e := range errs {
				found = found || strings.Contains(e.Error(), c.want)
			}
			if !found {
				t.Errorf("errors %v do not mention %q", errs, c.want)
			}
		})
	}
}

// copyModel copies a reference model folder, letting edit change its
// config.json text.
func copyModel(t *testing.T, name string, edit func(string) string) string {
	t.Helper()
	src := refModel(t, name)
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "config.json" {
			b = []byte(edit(string(b)))
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestFromHFGemma: Gemma exports with llama.cpp's names, the norms stored
// as 1+weight, the window and soft caps as keys; what llama.cpp fixes
// instead of reading (the attention scale, the layer pattern, the local
// rope base) is refused with the field named.
func TestFromHFGemma(t *testing.T) {
	for _, c := range []struct{ model, want string }{
		{"gemma2", "query_pre_attn_scalar"},
		{"gemma3_text", "query_pre_attn_scalar"},
	} {
		err := FromHF(refModel(t, c.model), filepath.Join(t.TempDir(), "m.gguf"), Options{Type: F32})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "config.json") {
			t.Errorf("%s: FromHF error %v, want one naming config.json and %s", c.model, err, c.want)
		}
	}
	g3 := copyModel(t, "gemma3_text", func(s string) string {
		return strings.Replace(s, `"query_pre_attn_scalar": 20`, `"query_pre_attn_scalar": 16`, 1)
	})
	if err := FromHF(g3, filepath.Join(t.TempDir(), "m.gguf"), Options{Type: F32}); err == nil || !strings.Contains(err.Error(), "layer 1") {
		t.Errorf("gemma3 with a global second layer: FromHF error %v, want one naming layer 1", err)
	}

	dir := copyModel(t, "gemma2", func(s string) string {
		return strings.Replace(s, `"query_pre_attn_scalar": 24`, `"query_pre_attn_scalar": 32`, 1)
	})
	out := filepath.Join(t.TempDir(), "g.gguf")
	if err := FromHF(dir, out, Options{Type: F32}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if errs := CheckModel(f); len(errs) > 0 {
		t.Fatalf("checker rejects the export: %v", errs)
	}
	if a, _ := f.String("general.architecture"); a != "gemma2" {
		t.Errorf("architecture %q", a)
	}
	for key, want := range map[string]float64{"gemma2.attention.sliding_window": 8, "gemma2.attn_logit_softcapping": 5, "gemma2.final_logit_softcapping": 10} {
		got, ok := f.Float(key)
		if !ok {
			if n, ok2 := f.Int(key); ok2 {
				got, ok = float64(n), true
			}
		}
		if !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	st, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for hf, name := range map[string]string{
		"model.layers.0.post_attention_layernorm.weight":   "blk.0.post_attention_norm.weight",
		"model.layers.1.pre_feedforward_layernorm.weight":  "blk.1.ffn_norm.weight",
		"model.layers.1.post_feedforward_layernorm.weight": "blk.1.post_ffw_norm.weight",
		"model.norm.weight":                 "output_norm.weight",
		"model.layers.0.mlp.up_proj.weight": "blk.0.ffn_up.weight",
	} {
		want, _, err := st.Float32s(hf)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := f.TensorFloat32s(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		shift := float32(0)
		if strings.HasSuffix(name, "norm.weight") {
			shift = 1
		}
		for i := range want {
			if got[i] != want[i]+shift {
				t.Fatalf("%s[%d] = %v, want %v (+%v)", name, i, got[i], want[i], shift)
			}
		}
	}
}

// TestFromHFMoE: Mixtral exports as llama.cpp's llama with stacked expert
// tensors, Qwen3-MoE as qwen3moe; the stacks hold each expert's weight in
// turn, the checker accepts the files, and what llama.cpp would run
// differently (weights not renormalised) is refused.
func TestFromHFMoE(t *testing.T) {
	err := FromHF(refModel(t, "qwen3_moe"), filepath.Join(t.TempDir(), "m.gguf"), Options{Type: F32})
	if err == nil || !strings.Contains(err.Error(), "norm_topk_prob") {
		t.Errorf("qwen3_moe with norm_topk_prob false: FromHF error %v, want one naming norm_topk_prob", err)
	}
	qwen := copyModel(t, "qwen3_moe", func(s string) string {
		return strings.Replace(s, `"norm_topk_prob": false`, `"norm_topk_prob": true`, 1)
	})
	for _, c := range []struct {
		dir, arch, block, gate string
		keys                   map[string]int64
	}{
		{refModel(t, "mixtral"), "llama", "block_sparse_moe", "w1", map[string]int64{"llama.expert_count": 4, "llama.expert_used_count": 2}},
		{qwen, "qwen3moe", "mlp", "gate_proj", map[string]int64{"qwen3moe.expert_count": 4, "qwen3moe.expert_used_count": 2, "qwen3moe.expert_feed_forward_length": 32}},
	} {
		out := filepath.Join(t.TempDir(), "m.gguf")
		if err := FromHF(c.dir, out, Options{Type: F32}); err != nil {
			t.Fatal(err)
		}
		f, err := Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if errs := CheckModel(f); len(errs) > 0 {
			t.Fatalf("%s: checker rejects the export: %v", c.arch, errs)
		}
		if a, _ := f.String("general.architecture"); a != c.arch {
			t.Errorf("architecture %q, want %q", a, c.arch)
		}
		for k, want := range c.keys {
			if v, ok := f.Int(k); !ok || v != want {
				t.Errorf("%s: %s = %d (present %v), want %d", c.arch, k, v, ok, want)
			}
		}
		got, ti, err := f.TensorFloat32s("blk.1.ffn_gate_exps.weight")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ti.Dims, []uint64{64, 32, 4}) {
			t.Errorf("%s: ffn_gate_exps dims %v, want [64 32 4]", c.arch, ti.Dims)
		}
		st, err := safetensors.OpenDir(c.dir)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		for e := 0; e < 4; e++ {
			want, _, err := st.Float32s(fmt.Sprintf("model.layers.1.%s.experts.%d.%s.weight", c.block, e, c.gate))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got[e*len(want):(e+1)*len(want)], want) {
				t.Errorf("%s: expert %d of ffn_gate_exps differs from its weight", c.arch, e)
			}
		}
		if _, ok := f.Tensor("blk.0.ffn_gate_inp.weight"); !ok {
			t.Errorf("%s: router blk.0.ffn_gate_inp.weight missing", c.arch)
		}
	}
}
