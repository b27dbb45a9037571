package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/compute/cpu/cputest"
	"gotune/gguf"
)

// ggufTestConfig is a tiny model of each architecture LoadGGUF reads.
func ggufTestConfig(t *testing.T, arch string) *Config {
	t.Helper()
	js := map[string]string{
		"llama": `{"model_type":"llama","vocab_size":96,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,
			"num_attention_heads":4,"num_key_value_heads":1,"head_dim":16,"rms_norm_eps":1e-5,"max_position_embeddings":128,
			"tie_word_embeddings":false,"bos_token_id":1,"eos_token_id":2,
			"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":64},
			"rope_theta":500000}`,
		"llama-bias": `{"model_type":"llama","vocab_size":96,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":1,
			"num_attention_heads":2,"num_key_value_heads":2,"rms_norm_eps":1e-6,"max_position_embeddings":128,"attention_bias":true,
			"rope_theta":10000}`,
		"qwen2": `{"model_type":"qwen2","vocab_size":96,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,
			"num_attention_heads":4,"num_key_value_heads":2,"rms_norm_eps":1e-6,"max_position_embeddings":128,
			"tie_word_embeddings":true,"rope_theta":1000000,"eos_token_id":5,"pad_token_id":4}`,
		"qwen3": `{"model_type":"qwen3","vocab_size":96,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,
			"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"rms_norm_eps":1e-6,"max_position_embeddings":128,
			"tie_word_embeddings":true,"rope_theta":1000000}`,
		// rows of 256 fit Q4_K's super-blocks
		"qwen3-wide": `{"model_type":"qwen3","vocab_size":96,"hidden_size":256,"intermediate_size":256,"num_hidden_layers":1,
			"num_attention_heads":4,"num_key_value_heads":2,"head_dim":64,"rms_norm_eps":1e-6,"max_position_embeddings":128,
			"tie_word_embeddings":false,"rope_theta":1000000}`,
	}[arch]
	c, err := ParseConfig(arch, []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ggufTestModel is a random model whose norms and biases are not trivial,
// so a wrongly mapped or permuted tensor changes the logits.
func ggufTestModel(t *testing.T, arch string, seed uint64) *Model {
	m := New(ggufTestConfig(t, arch))
	m.RandomInit(seed)
	r := rand.New(rand.NewPCG(seed, 7))
	for _, p := range m.Params() {
		if len(p.Shape) == 1 {
			for i := range p.Data {
				if strings.HasSuffix(p.Name, "norm.weight") {
					p.Data[i] = 1 + 0.2*float32(r.NormFloat64())
				} else {
					p.Data[i] = 0.1 * float32(r.NormFloat64())
				}
			}
		}
	}
	return m
}

// writeTestGGUF writes m as llama.cpp's converter would, independently of
// gguf.FromHF (which needs a tokenizer).
func writeTestGGUF(t *testing.T, m *Model, path string, typ gguf.TensorType) {
	t.Helper()
	c := m.Cfg
	a := c.ModelType + "."
	kv := []gguf.KV{
		{Key: "general.architecture", Value: c.ModelType},
		{Key: a + "context_length", Value: uint32(c.MaxPositions)},
		{Key: a + "embedding_length", Value: uint32(c.Hidden)},
		{Key: a + "block_count", Value: uint32(c.Layers)},
		{Key: a + "feed_forward_length", Value: uint32(c.Intermediate)},
		{Key: a + "attention.head_count", Value: uint32(c.Heads)},
		{Key: a + "attention.head_count_kv", Value: uint32(c.KVHeads)},
		{Key: a + "attention.layer_norm_rms_epsilon", Value: float32(c.RMSNormEps)},
		{Key: a + "rope.freq_base", Value: float32(c.Rope.Theta)},
		{Key: a + "attention.key_length", Value: uint32(c.HeadDim)},
		{Key: a + "attention.value_length", Value: uint32(c.HeadDim)},
	}
	if len(c.EOS) > 0 {
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.eos_token_id", Value: uint32(c.EOS[0])})
	}
	var ts []gguf.Tensor
	if c.Rope.Type == "llama3" {
		rs := &gguf.RopeScaling{RopeType: "llama3", Factor: c.Rope.Factor, LowFreqFactor: c.Rope.LowFreqFactor,
			HighFreqFactor: c.Rope.HighFreqFactor, OriginalMaxPositionEmbeddings: c.Rope.OriginalMaxPos}
		rf, err := gguf.NewTensor("rope_freqs.weight", []int{c.HeadDim / 2}, gguf.Llama3RopeFactors(c.HeadDim, c.Rope.Theta, rs), gguf.F32)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, rf)
	}
	for _, p := range m.Params() {
		name, ok := c.Family.GGUFName(p.Name)
		if !ok {
			t.Fatalf("no GGUF name for %s", p.Name)
		}
		v := p.Data
		if h := unpermuteHeads(c, p.Name); h > 0 {
			cols := 1
			if len(p.Shape) == 2 {
				cols = p.Shape[1]
			}
			var err error
			if v, err = gguf.PermuteQK(v, p.Shape[0], cols, h); err != nil {
				t.Fatal(err)
			}
		}
		tt := gguf.F32
		if len(p.Shape) == 2 {
			tt = typ
		}
		tn, err := gguf.NewTensor(name, p.Shape, v, tt)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tn)
	}
	if err := gguf.Write(path, kv, ts); err != nil {
		t.Fatal(err)
	}
}

func ggufTestLogits(t *testing.T, m *Model) []float32 {
	t.Helper()
	ids := []int32{1, 17, 33, 5, 90, 64, 2, 41, 8, 77, 3, 12}
	b := &Batch{B: 2, T: 6, IDs: ids}
	return logitsOn(t, m, cputest.Open(), b)
}

func ggufRelErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / den)
}

func TestLoadGGUFRoundTrip(t *testing.T) {
	tests := []struct {
		arch   string
		typ    gguf.TensorType
		params float64 // largest relative error of any parameter
		logits float64
	}{
		{"llama", gguf.F32, 0, 1e-6},
		{"llama-bias", gguf.F32, 0, 1e-6},
		{"qwen2", gguf.F32, 0, 1e-6},
		{"qwen3", gguf.F32, 0, 1e-6},
		{"qwen3", gguf.F16, 1e-3, 2e-3},
		{"llama", gguf.BF16, 5e-3, 1e-2},
		{"llama", gguf.Q8_0, 1e-2, 2e-2},
		{"qwen2", gguf.Q4_0, 0.15, 0.3},
		{"qwen3-wide", gguf.Q4_K, 0.15, 0.3},
	}
	for _, tc := range tests {
		t.Run(tc.arch+"/"+tc.typ.String(), func(t *testing.T) {
			src := ggufTestModel(t, tc.arch, 3)
			path := filepath.Join(t.TempDir(), "m.gguf")
			writeTestGGUF(t, src, path, tc.typ)
			got, err := LoadGGUF(path, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			gc, sc := *got.Cfg, *src.Cfg
			sc.ModelType = strings.TrimSuffix(strings.TrimSuffix(sc.ModelType, "-bias"), "-wide")
			sc.BOS, gc.BOS = nil, nil // the test file records only eos
			if sc.Pad >= 0 {
				sc.Pad = -1
			}
			if !ggufConfigsEqual(&gc, &sc) {
				t.Fatalf("config\n got %+v\nwant %+v", gc, sc)
			}
			sp, gp := src.Params(), got.Params()
			if len(sp) != len(gp) {
				t.Fatalf("%d params, want %d", len(gp), len(sp))
			}
			for i := range sp {
				if sp[i].Name != gp[i].Name {
					t.Fatalf("param %d is %s, want %s", i, gp[i].Name, sp[i].Name)
				}
				if e := ggufRelErr(gp[i].Data, sp[i].Data); e > tc.params {
					t.Errorf("%s: relative error %.3g > %.3g", sp[i].Name, e, tc.params)
				}
			}
			e := ggufRelErr(ggufTestLogits(t, got), ggufTestLogits(t, src))
			t.Logf("logits relative error %.3g", e)
			if e > tc.logits {
				t.Errorf("logits relative error %.3g > %.3g", e, tc.logits)
			}
		})
	}
}

func ggufConfigsEqual(a, b *Config) bool {
	if len(a.EOS) != len(b.EOS) || len(a.BOS) != len(b.BOS) {
		return false
	}
	for i := range a.EOS {
		if a.EOS[i] != b.EOS[i] {
			return false
		}
	}
	x, y := *a, *b
	x.EOS, y.EOS, x.BOS, y.BOS = nil, nil, nil, nil
	// The recovered llama3 parameters may differ in scale (only their ratios
	// shape the rope); compare the frequencies they give instead.
	if x.Rope.Type == "llama3" && y.Rope.Type == "llama3" {
		fx, _ := x.invFreq(0)
		fy, _ := y.invFreq(0)
		for i := range fx {
			if math.Abs(fx[i]-fy[i]) > 1e-6*fy[i] {
				return false
			}
		}
		x.Rope, y.Rope = Rope{}, Rope{}
	}
	return fmt.Sprintf("%+v", x) == fmt.Sprintf("%+v", y)
}

func TestLoadGGUFLlama3RopeCases(t *testing.T) {
	// Different theta/head sizes put 0, 1 or several frequencies in the
	// blended band; all must reproduce the stored divisors.
	tests := []struct {
		headDim   int
		theta     float64
		old       int
		low, high float64
	}{
		{16, 500000, 64, 1, 4},
		{128, 500000, 8192, 1, 4},
		{64, 10000, 2048, 1, 4},
		{8, 10000, 32, 2, 3},
	}
	for _, tc := range tests {
		c := &Config{HeadDim: tc.headDim, MaxPositions: 4 * tc.old, Rope: Rope{Type: "llama3", Theta: tc.theta, Factor: 8,
			LowFreqFactor: tc.low, HighFreqFactor: tc.high, OriginalMaxPos: tc.old, PartialFactor: 1}}
		rs := &gguf.RopeScaling{RopeType: "llama3", Factor: 8, LowFreqFactor: tc.low, HighFreqFactor: tc.high, OriginalMaxPositionEmbeddings: tc.old}
		div := gguf.Llama3RopeFactors(tc.headDim, tc.theta, rs)
		got := &Config{HeadDim: tc.headDim, MaxPositions: c.MaxPositions, Rope: Rope{Type: "default", Theta: tc.theta, Factor: 1, PartialFactor: 1, OriginalMaxPos: c.MaxPositions}}
		if err := got.llama3FromFactors(div); err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		fw, _ := c.invFreq(0)
		fg, _ := got.invFreq(0)
		for i := range fw {
			if math.Abs(fw[i]-fg[i]) > 1e-6*fw[i] {
				t.Errorf("%+v: frequency %d = %g, want %g", tc, i, fg[i], fw[i])
			}
		}
	}
	bad := &Config{HeadDim: 8, Rope: Rope{Type: "default", Theta: 10000, Factor: 1, PartialFactor: 1, OriginalMaxPos: 64}}
	if err := bad.llama3FromFactors([]float32{1, 8, 1, 8}); err == nil {
		t.Error("non-monotone divisors accepted")
	}
}

func TestLoadGGUFErrors(t *testing.T) {
	dir := t.TempDir()
	src := ggufTestModel(t, "qwen3", 1)
	good := filepath.Join(dir, "good.gguf")
	writeTestGGUF(t, src, good, gguf.F32)
	f, err := gguf.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	kvs := f.KV()
	var tensors []gguf.Tensor
	for _, ti := range f.Tensors() {
		b, _, err := f.TensorData(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, gguf.Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: append([]byte(nil), b...)})
	}
	f.Close()
	n := 0
	edit := func(kv func([]gguf.KV) []gguf.KV, ts func([]gguf.Tensor) []gguf.Tensor) string {
		k := append([]gguf.KV(nil), kvs...)
		tt := append([]gguf.Tensor(nil), tensors...)
		if kv != nil {
			k = kv(k)
		}
		if ts != nil {
			tt = ts(tt)
		}
		n++
		p := filepath.Join(dir, fmt.Sprintf("bad%d.gguf", n))
		if err := gguf.Write(p, k, tt); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dropKey := func(key string) func([]gguf.KV) []gguf.KV {
		return func(k []gguf.KV) []gguf.KV {
			var out []gguf.KV
			for _, e := range k {
				if e.Key != key {
					out = append(out, e)
				}
			}
			return out
		}
	}
	setKey := func(key string, v any) func([]gguf.KV) []gguf.KV {
		return func(k []gguf.KV) []gguf.KV {
			for i := range k {
				if k[i].Key == key {
					k[i].Value = v
				}
			}
			return k
		}
	}
	dropTensor := func(name string) func([]gguf.Tensor) []gguf.Tensor {
		return func(ts []gguf.Tensor) []gguf.Tensor {
			var out []gguf.Tensor
			for _, e := range ts {
				if e.Name != name {
					out = append(out, e)
				}
			}
			return out
		}
	}
	tests := []struct {
		name string
		path string
		want string
	}{
		{"no file", filepath.Join(dir, "absent.gguf"), "absent.gguf"},
		{"arch", edit(setKey("general.architecture", "gpt2"), nil), `general.architecture "gpt2"`},
		{"no arch", edit(dropKey("general.architecture"), nil), "general.architecture is missing"},
		{"block_count", edit(dropKey("qwen3.block_count"), nil), "qwen3.block_count is missing"},
		{"heads", edit(setKey("qwen3.attention.head_count", uint32(3)), nil), "not a multiple"},
		{"tensor", edit(nil, dropTensor("blk.1.ffn_up.weight")), "blk.1.ffn_up.weight"},
		{"shape", edit(setKey("qwen3.feed_forward_length", uint32(32)), nil), "has shape"},
		{"rope", edit(func(k []gguf.KV) []gguf.KV {
			return append(k, gguf.KV{Key: "qwen3.rope.scaling.type", Value: "longrope"})
		}, nil), "longrope"},
	}
	for _, tc := range tests {
		_, err := LoadGGUF(tc.path, LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
		if err != nil && tc.name != "no file" && !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: error %v does not name the file", tc.name, err)
		}
	}
}

// TestLoadGGUFReference converts the reference models with gguf.FromHF and
// checks the loaded model against the Hugging Face folder.
func TestLoadGGUFReference(t *testing.T) {
	root := filepath.Join("..", "testdata", "reference")
	if _, err := os.Stat(root); err != nil {
		t.Fatal("reference data missing from testdata/reference (it ships with the repository)")
	}
	for _, name := range []string{"qwen3", "llama", "qwen2", "phi3", "phi3_longrope"} {
		for _, tc := range []struct {
			typ gguf.TensorType
			tol float64
		}{{gguf.F32, 1e-5}, {gguf.F16, 2e-3}} {
			t.Run(name+"/"+tc.typ.String(), func(t *testing.T) {
				dir := filepath.Join(root, name, "model")
				hf, err := Load(dir, LoadOptions{})
				if err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(t.TempDir(), "m.gguf")
				if err := gguf.FromHF(dir, out, gguf.Options{Type: tc.typ}); err != nil {
					t.Fatal(err)
				}
				m, err := LoadGGUF(out, LoadOptions{})
				if err != nil {
					t.Fatal(err)
				}
				e := ggufRelErr(ggufTestLogits(t, m), ggufTestLogits(t, hf))
				t.Logf("logits relative error %.3g", e)
				if e > tc.tol {
					t.Errorf("logits relative error %.3g > %.3g", e, tc.tol)
				}
			})
		}
	}
}

// copyRef copies a reference model folder, letting edit change config.json.
func copyRef(t *testing.T, name string, edit func(string) string) string {
	t.Helper()
	src := filepath.Join("..", "testdata", "reference", name, "model")
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

// TestLoadGGUFNewFamilies: Gemma and MoE exports (norms stored as 1+w,
// stacked experts, windows and soft caps as keys) read back to the same
// logits, on configurations llama.cpp runs as transformers does (what it
// fixes rather than reads set accordingly), with sequences past the window.
func TestLoadGGUFNewFamilies(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(string) string
	}{
		{"gemma2", func(s string) string {
			return strings.Replace(s, `"query_pre_attn_scalar": 24`, `"query_pre_attn_scalar": 32`, 1)
		}},
		{"gemma3_text", func(s string) string {
			s = strings.Replace(s, `"query_pre_attn_scalar": 20`, `"query_pre_attn_scalar": 16`, 1)
			return strings.Replace(s, `"full_attention"
  ],`, `"sliding_attention"
  ],`, 1)
		}},
		{"mixtral", func(s string) string { return s }},
		{"qwen3_moe", func(s string) string {
			return strings.Replace(s, `"norm_topk_prob": false`, `"norm_topk_prob": true`, 1)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := copyRef(t, c.name, c.edit)
			hf, err := Load(dir, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "m.gguf")
			if err := gguf.FromHF(dir, out, gguf.Options{Type: gguf.F32}); err != nil {
				t.Fatal(err)
			}
			m, err := LoadGGUF(out, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]int32, 40)
			for i := range ids {
				ids[i] = int32((i*37 + 11) % hf.Cfg.Vocab)
			}
			b := &Batch{B: 1, T: len(ids), IDs: ids}
			be := cputest.Open()
			want := logitsOn(t, hf, be, b)
			if e := ggufRelErr(logitsOn(t, m, be, b), want); e > 1e-5 {
				t.Errorf("logits relative error %.3g", e)
			}
		})
	}
}
