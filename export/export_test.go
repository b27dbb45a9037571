package export

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotune/assets"
	"gotune/compute"
	"gotune/compute/cpu/cputest"
	"gotune/gguf"
	"gotune/method"
	"gotune/model"
	"gotune/peft"
	"gotune/quant"
	"gotune/safetensors"
)

const refRoot = "../testdata/reference"

// llamaConfig is a tiny Llama 3 shaped config (MQA, llama3 rope, untied head)
// that shares the bundled model's tokenizer.
const llamaConfig = `{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "dtype": "float32",
  "vocab_size": 2048,
  "hidden_size": 64,
  "intermediate_size": 128,
  "num_hidden_layers": 2,
  "num_attention_heads": 4,
  "num_key_value_heads": 1,
  "head_dim": 16,
  "rms_norm_eps": 1e-05,
  "max_position_embeddings": 256,
  "tie_word_embeddings": false,
  "eos_token_id": 2002,
  "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
    "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
}`

// tinyModel writes a randomly initialised model folder of the given
// architecture (qwen3 or llama) with the bundled model's tokenizer and
// chat template, and returns its path.
func tinyModel(t *testing.T, arch string, seed uint64) string {
	t.Helper()
	root := t.TempDir()
	src, err := assets.ModelDir(assets.DefaultModel, filepath.Join(root, "asset"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "base-"+arch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := model.CopyModelFiles(src, dir); err != nil {
		t.Fatal(err)
	}
	if arch == "llama" {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(llamaConfig), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := model.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := model.New(cfg)
	m.RandomInit(seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for _, p := range m.Params() {
		if len(p.Shape) == 1 { // norms away from 1 so mis-wiring shows
			for i := range p.Data {
				p.Data[i] = 1 + 0.2*float32(r.NormFloat64())
			}
		}
	}
	if err := model.SaveWeights(dir, m.Params(), model.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// randomLoRA attaches a fresh adapter to base and randomises every tensor
// (PEFT would start B at zero, which would make merging a no-op).
func randomLoRA(t *testing.T, base string, cfg peft.LoRAConfig, seed uint64) string {
	t.Helper()
	m, err := model.Load(base, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := peft.AttachLoRA(m, cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 2))
	for _, p := range set.Params() {
		for i := range p.Data {
			switch {
			case strings.Contains(p.Name, "magnitude"):
				p.Data[i] *= 1 + 0.3*float32(r.NormFloat64())
			default:
				p.Data[i] = 0.2 * float32(r.NormFloat64())
			}
		}
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := set.Save(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func randomIA3(t *testing.T, base string, seed uint64) string {
	t.Helper()
	m, err := model.Load(base, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := peft.AttachIA3(m, peft.IA3Config{}, seed)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 3))
	for _, p := range set.Params() {
		for i := range p.Data {
			p.Data[i] = 1 + 0.5*float32(r.NormFloat64())
		}
	}
	dir := filepath.Join(t.TempDir(), "ia3")
	if err := set.Save(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testBatch is two sequences, the second right-padded.
func testBatch() *model.Batch {
	ids := []int32{3, 140, 977, 15, 1200, 64, 2, 41, 8, 770, 1111, 12, 5, 900, 33, 0}
	mask := []int32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0}
	return &model.Batch{B: 2, T: 8, IDs: ids, Mask: mask}
}

func logits(t *testing.T, m *model.Model) []float32 {
	t.Helper()
	b := testBatch()
	// Every position's logits, one token at a time through a decoding
	// session on the CPU backend; padded positions carry no meaning and
	// stay zero.
	dm, err := model.NewDeviceModel(m, cputest.Open(), model.DeviceOptions{Compute: compute.F32, Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	v := m.Cfg.Vocab
	res := make([]float32, b.B*b.T*v)
	for r := range b.B {
		// Room for the virtual tokens and KV prefix of a prompt method.
		s, err := dm.NewSession(b.T + 64)
		if err != nil {
			t.Fatal(err)
		}
		for i := range b.T {
			k := r*b.T + i
			if b.Mask[k] == 0 {
				continue
			}
			out, err := s.Feed([]int32{b.IDs[k]})
			if err != nil {
				t.Fatal(err)
			}
			copy(res[k*v:(k+1)*v], out)
		}
		s.Close()
	}
	return res
}

// adapted is base with the adapter attached, unmerged: the truth a merged
// export must reproduce.
func adapted(t *testing.T, base, adapter string) []float32 {
	t.Helper()
	m, err := model.Load(base, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if adapter != "" {
		if _, err := method.Load(m, adapter); err != nil {
			t.Fatal(err)
		}
	}
	return logits(t, m)
}

func relErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / den)
}

func loadLogits(t *testing.T, dir string) []float32 {
	t.Helper()
	m, err := model.Load(dir, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return logits(t, m)
}

func run(t *testing.T, o Options) *Result {
	t.Helper()
	res, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestMergeRoundTripSelfContained(t *testing.T) {
	for _, arch := range []string{"qwen3", "llama"} {
		base := tinyModel(t, arch, 11)
		tests := []struct {
			name    string
			adapter func() string
		}{
			{"lora", func() string {
				return randomLoRA(t, base, peft.LoRAConfig{R: 4, Alpha: 8, Targets: []string{"all"}}, 5)
			}},
			{"rslora", func() string {
				return randomLoRA(t, base, peft.LoRAConfig{R: 4, Alpha: 8, RSLoRA: true, Targets: []string{"q_proj", "v_proj", "down_proj"}}, 6)
			}},
			{"dora", func() string {
				return randomLoRA(t, base, peft.LoRAConfig{R: 2, Alpha: 4, DoRA: true, Targets: []string{"all"}}, 7)
			}},
			{"ia3", func() string { return randomIA3(t, base, 8) }},
		}
		for _, tc := range tests {
			t.Run(arch+"/"+tc.name, func(t *testing.T) {
				adapter := tc.adapter()
				want := adapted(t, base, adapter)
				if e := relErr(want, adapted(t, base, "")); e < 1e-2 {
					t.Fatalf("adapter barely changes the logits (%.3g): the test would prove nothing", e)
				}
				out := filepath.Join(t.TempDir(), "merged")
				res := run(t, Options{Model: base, Adapter: adapter, Out: out, Format: HF})
				if res.Merged == "" {
					t.Error("Result.Merged is empty")
				}
				e := relErr(loadLogits(t, out), want)
				t.Logf("merged vs base+adapter: relative error %.3g", e)
				if e > 1e-4 {
					t.Errorf("relative error %.3g > 1e-4", e)
				}
			})
		}
	}
}

// TestMergeRoundTripReference merges PEFT's own trained adapters.
func TestMergeRoundTripReference(t *testing.T) {
	if _, err := os.Stat(refRoot); err != nil {
		t.Fatal("reference data missing from testdata/reference (it ships with the repository)")
	}
	for _, name := range []string{"qwen3", "llama", "qwen2"} {
		base := filepath.Join(refRoot, name, "model")
		for _, method := range []string{"lora", "dora", "lora_rslora", "ia3"} {
			t.Run(name+"/"+method, func(t *testing.T) {
				adapter := filepath.Join(refRoot, name, "ref", method, "adapter_after_5_steps")
				want := adapted(t, base, adapter)
				out := filepath.Join(t.TempDir(), "merged")
				run(t, Options{Model: base, Adapter: adapter, Out: out})
				e := relErr(loadLogits(t, out), want)
				t.Logf("relative error %.3g", e)
				if e > 1e-4 {
					t.Errorf("relative error %.3g > 1e-4", e)
				}
			})
		}
	}
}

func TestHFFolder(t *testing.T) {
	base := tinyModel(t, "qwen3", 2)
	adapter := randomLoRA(t, base, peft.LoRAConfig{R: 4, Alpha: 8, Targets: []string{"all"}}, 3)
	out := filepath.Join(t.TempDir(), "bf16")
	run(t, Options{Model: base, Adapter: adapter, Out: out, DType: safetensors.BF16})
	for _, f := range []string{"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "model.safetensors"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("export lacks %s", f)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["dtype"] != "bfloat16" {
		t.Errorf("config.json dtype = %v, want bfloat16", cfg["dtype"])
	}
	orig, _ := os.ReadFile(filepath.Join(base, "config.json"))
	if want := strings.Replace(string(orig), `"dtype": "float32"`, `"dtype": "bfloat16"`, 1); string(b) != want {
		t.Errorf("config.json changed beyond dtype:\n%s", b)
	}
	set, err := safetensors.OpenDir(out)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := set.Info("model.norm.weight")
	set.Close()
	if info.DType != safetensors.BF16 {
		t.Errorf("weights written as %s, want BF16", info.DType)
	}
	e := relErr(loadLogits(t, out), adapted(t, base, adapter))
	t.Logf("bf16 merged export: relative error %.3g", e)
	if e > 2e-2 {
		t.Errorf("bf16 export relative error %.3g", e)
	}
}

func TestSharding(t *testing.T) {
	base := tinyModel(t, "llama", 4)
	out := filepath.Join(t.TempDir(), "sharded")
	res := run(t, Options{Model: base, Out: out, ShardBytes: 100 << 10})
	shards := 0
	for _, f := range res.Files {
		if strings.HasPrefix(f, "model-") && strings.HasSuffix(f, ".safetensors") {
			shards++
		}
	}
	if shards < 3 {
		t.Fatalf("%d shards, want several: %v", shards, res.Files)
	}
	b, err := os.ReadFile(filepath.Join(out, "model.safetensors.index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	a, err := model.Load(base, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(out, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ap, mp := a.Params(), m.Params()
	if len(idx.WeightMap) != len(ap) {
		t.Errorf("index maps %d tensors, model has %d", len(idx.WeightMap), len(ap))
	}
	for i := range ap {
		for j := range ap[i].Data {
			if ap[i].Data[j] != mp[i].Data[j] {
				t.Fatalf("%s[%d] = %v after sharding, want %v", ap[i].Name, j, mp[i].Data[j], ap[i].Data[j])
			}
		}
	}
}

func TestAtomicOut(t *testing.T) {
	base := tinyModel(t, "qwen3", 5)
	lora := randomLoRA(t, base, peft.LoRAConfig{R: 2, Alpha: 2, Targets: []string{"q_proj"}}, 1)
	other := tinyModel(t, "llama", 5)
	wrongBase := randomLoRA(t, other, peft.LoRAConfig{R: 2, Alpha: 2, Targets: []string{"k_proj"}}, 1)
	prompt := filepath.Join(t.TempDir(), "prompt")
	{
		m, err := model.Load(base, model.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pt, err := peft.AttachPromptTuning(m, peft.PromptTuningConfig{Virtual: 4}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := pt.Save(prompt); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		opt  Options
		want string
	}{
		{"adapter for another model", Options{Model: base, Adapter: wrongBase}, "k_proj"},
		{"not mergeable", Options{Model: base, Adapter: prompt}, "cannot be merged"},
		{"gguf adapter of prompt tuning", Options{Model: base, Adapter: prompt, Format: GGUF, GGUFAdapter: true}, "LORA only"},
		{"missing base", Options{Model: filepath.Join(base, "nope"), Adapter: lora}, "nope"},
		{"bad format", Options{Model: base, Format: "onnx"}, "onnx"},
		{"modelfile without gguf", Options{Model: base, Modelfile: true}, "--modelfile"},
		{"quant without merge", Options{Model: base, Quant: &quant.Options{Type: quant.NF4}}, "merging"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			tc.opt.Out = filepath.Join(parent, "out")
			_, err := Run(tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("a failed export left %v behind", ents)
			}
		})
	}

	// A non-empty --out is refused, and left as it was; --force replaces it.
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	os.MkdirAll(out, 0o755)
	os.WriteFile(filepath.Join(out, "keep.txt"), []byte("mine"), 0o644)
	if _, err := Run(Options{Model: base, Out: out}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("non-empty out: error %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "keep.txt")); string(b) != "mine" {
		t.Error("refused export touched the existing folder")
	}
	// --force does not replace a folder gotune did not write (issue 13:
	// `--out gguf --force` from the repository root deleted the gguf/
	// package), and says so.
	_, err := Run(Options{Model: base, Out: out, Force: true})
	if err == nil || !strings.Contains(err.Error(), MarkerFile) || !strings.Contains(err.Error(), out) {
		t.Fatalf("forced export over a folder gotune did not write: error %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "keep.txt")); string(b) != "mine" {
		t.Error("refused forced export touched the existing folder")
	}
	// A marker that is not a plain file does not count either.
	os.Mkdir(filepath.Join(out, MarkerFile), 0o755)
	if _, err := Run(Options{Model: base, Out: out, Force: true}); err == nil {
		t.Fatal("a folder named like the marker let --force through")
	}
	os.Remove(filepath.Join(out, MarkerFile))
	os.RemoveAll(out)
	// An export writes the marker (not listed among its files)...
	res := run(t, Options{Model: base, Out: out})
	if _, err := os.Stat(filepath.Join(out, MarkerFile)); err != nil {
		t.Fatalf("export wrote no %s: %v", MarkerFile, err)
	}
	for _, f := range res.Files {
		if f == MarkerFile {
			t.Errorf("Result.Files lists the marker %s", MarkerFile)
		}
	}
	os.WriteFile(filepath.Join(out, "keep.txt"), []byte("mine"), 0o644)
	// ...a failing forced export keeps the old folder...
	if _, err := Run(Options{Model: base, Adapter: prompt, Out: out, Force: true}); err == nil {
		t.Fatal("forced export of a prompt adapter succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(out, "keep.txt")); string(b) != "mine" {
		t.Error("failed forced export lost the existing folder")
	}
	// ...and a forced export over it replaces it.
	run(t, Options{Model: base, Out: out, Force: true})
	if _, err := os.Stat(filepath.Join(out, "keep.txt")); err == nil {
		t.Error("--force kept the old files")
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 1 {
		t.Errorf("parent holds %d entries after a forced export, want 1", len(ents))
	}
	// An existing empty folder is fine without --force.
	empty := filepath.Join(parent, "empty")
	os.Mkdir(empty, 0o755)
	run(t, Options{Model: base, Out: empty})
}

func TestPEFTExport(t *testing.T) {
	base := tinyModel(t, "qwen3", 9)
	adapter := randomLoRA(t, base, peft.LoRAConfig{R: 4, Alpha: 8, DoRA: true, Targets: []string{"all"}}, 4)
	want := adapted(t, base, adapter)
	for _, tc := range []struct {
		dtype safetensors.DType
		tol   float64
	}{{"", 0}, {safetensors.F32, 0}, {safetensors.BF16, 2e-2}, {safetensors.F16, 2e-3}} {
		t.Run(string(tc.dtype), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "peft")
			run(t, Options{Model: base, Adapter: adapter, Out: out, Format: PEFT, DType: tc.dtype})
			m, err := model.Load(base, model.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			meth, err := method.Load(m, out)
			if err != nil {
				t.Fatal(err)
			}
			if meth.Type() != "LORA" {
				t.Errorf("type %s", meth.Type())
			}
			e := relErr(logits(t, m), want)
			t.Logf("dtype %q: relative error %.3g", tc.dtype, e)
			if e > tc.tol {
				t.Errorf("relative error %.3g > %.3g", e, tc.tol)
			}
			if tc.dtype != "" {
				set, err := safetensors.OpenOne(filepath.Join(out, "adapter_model.safetensors"))
				if err != nil {
					t.Fatal(err)
				}
				defer set.Close()
				for _, n := range set.Names() {
					if info, _ := set.Info(n); info.DType != tc.dtype {
						t.Fatalf("%s stored as %s", n, info.DType)
					}
				}
			}
		})
	}
	// Without a base the adapter is copied unchecked but intact.
	out := filepath.Join(t.TempDir(), "peft")
	run(t, Options{Adapter: adapter, Out: out, Format: PEFT})
	a, _ := os.ReadFile(filepath.Join(adapter, "adapter_config.json"))
	b, _ := os.ReadFile(filepath.Join(out, "adapter_config.json"))
	if string(a) != string(b) {
		t.Error("adapter_config.json changed")
	}
}

func TestPEFTExportReference(t *testing.T) {
	if _, err := os.Stat(refRoot); err != nil {
		t.Fatal("reference data missing from testdata/reference (it ships with the repository)")
	}
	for _, name := range []string{"lora", "ia3", "prompt_tuning", "prefix_tuning"} {
		base := filepath.Join(refRoot, "qwen2", "model")
		adapter := filepath.Join(refRoot, "qwen2", "ref", name, "adapter_after_5_steps")
		out := filepath.Join(t.TempDir(), name)
		run(t, Options{Model: base, Adapter: adapter, Out: out, Format: PEFT, DType: safetensors.F32})
		m, err := model.Load(base, model.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := adapted(t, base, adapter)
		if _, err := method.Load(m, out); err != nil {
			t.Fatal(err)
		}
		// virtual tokens change the logits' length; compare what both give
		got := logits(t, m)
		if len(got) != len(want) {
			t.Fatalf("%s: %d logits, want %d", name, len(got), len(want))
		}
		if e := relErr(got, want); e > 1e-6 {
			t.Errorf("%s: F64→F32 adapter relative error %.3g", name, e)
		}
	}
}

func TestQLoRAMerge(t *testing.T) {
	base := tinyModel(t, "qwen3", 12)
	adapter := randomLoRA(t, base, peft.LoRAConfig{R: 4, Alpha: 8, Targets: []string{"all"}}, 13)
	q := &quant.Options{Type: quant.NF4, DoubleQuant: true}
	// The training-time model: NF4 base weights with the adapter on top.
	m, err := model.Load(base, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.StoreLinears(*q); err != nil {
		t.Fatal(err)
	}
	if _, err := method.Load(m, adapter); err != nil {
		t.Fatal(err)
	}
	want := logits(t, m)
	out := filepath.Join(t.TempDir(), "merged")
	run(t, Options{Model: base, Adapter: adapter, Out: out, Quant: q})
	e := relErr(loadLogits(t, out), want)
	t.Logf("QLoRA merge vs NF4 base + adapter: relative error %.3g", e)
	if e > 1e-4 {
		t.Errorf("relative error %.3g > 1e-4", e)
	}
	// Merging onto the full-precision base instead differs by the rounding.
	full := filepath.Join(t.TempDir(), "full")
	run(t, Options{Model: base, Adapter: adapter, Out: full})
	d := relErr(loadLogits(t, full), want)
	t.Logf("full-precision merge vs NF4 base + adapter: relative error %.3g", d)
	if d < 1e-3 {
		t.Errorf("full-precision merge equals the NF4 model (%.3g): quantization had no effect", d)
	}
}

func TestGGUFExport(t *testing.T) {
	for _, arch := range []string{"qwen3", "llama"} {
		base := tinyModel(t, arch, 21)
		adapter := randomLoRA(t, base, peft.LoRAConfig{R: 4, Alpha: 8, Targets: []string{"all"}}, 22)
		want := adapted(t, base, adapter)
		for _, tc := range []struct {
			typ gguf.TensorType
			tol float64
		}{{gguf.F32, 1e-5}, {gguf.F16, 2e-3}, {gguf.Q8_0, 6e-2}} {
			t.Run(arch+"/"+tc.typ.String(), func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "gguf")
				res := run(t, Options{Model: base, Adapter: adapter, Out: out, Format: GGUF, GGUFType: tc.typ, Modelfile: true})
				if len(res.Files) != 2 {
					t.Errorf("files %v, want model.gguf and Modelfile", res.Files)
				}
				path := filepath.Join(out, ModelGGUF)
				checkModelFile(t, path)
				m, err := model.LoadGGUF(path, model.LoadOptions{})
				if err != nil {
					t.Fatal(err)
				}
				e := relErr(logits(t, m), want)
				t.Logf("merged GGUF vs base+adapter: relative error %.3g", e)
				if e > tc.tol {
					t.Errorf("relative error %.3g > %.3g", e, tc.tol)
				}
				mf, _ := os.ReadFile(filepath.Join(out, ModelfileName))
				if !strings.Contains(string(mf), "FROM ./model.gguf") || strings.Contains(string(mf), "ADAPTER") {
					t.Errorf("Modelfile:\n%s", mf)
				}
				if !strings.Contains(string(mf), "<|im_start|>") {
					t.Errorf("Modelfile lacks the ChatML template of the bundled model:\n%s", mf)
				}
			})
		}
		t.Run(arch+"/adapter", func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "gguf")
			res := run(t, Options{Model: base, Adapter: adapter, Out: out, Format: GGUF, GGUFAdapter: true, GGUFType: gguf.F16, Modelfile: true})
			if res.Merged != "" {
				t.Errorf("Merged = %q for an adapter export", res.Merged)
			}
			checkModelFile(t, filepath.Join(out, ModelGGUF))
			mf, _ := os.ReadFile(filepath.Join(out, ModelfileName))
			if !strings.Contains(string(mf), "ADAPTER ./adapter.gguf") {
				t.Errorf("Modelfile:\n%s", mf)
			}
			a, err := gguf.Open(filepath.Join(out, AdapterGGUF))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			b, err := gguf.Open(filepath.Join(out, ModelGGUF))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if errs := gguf.CheckAdapter(a, b); len(errs) > 0 {
				t.Errorf("CheckAdapter: %v", errs)
			}
			m, err := model.LoadGGUF(filepath.Join(out, ModelGGUF), model.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr(logits(t, m), adapted(t, base, "")); e > 2e-3 {
				t.Errorf("base GGUF relative error %.3g", e)
			}
		})
	}
}

// A base model without a chat template (a pretrained model for continued
// pre-training) exports to GGUF: llama.cpp treats tokenizer.chat_template
// as optional (issue 13.16).
func TestGGUFExportWithoutChatTemplate(t *testing.T) {
	base := tinyModel(t, "qwen3", 23)
	if err := os.Remove(filepath.Join(base, "chat_template.jinja")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "gguf")
	run(t, Options{Model: base, Out: out, Format: GGUF, GGUFType: gguf.F16})
	path := filepath.Join(out, ModelGGUF)
	checkModelFile(t, path)
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if tmpl, ok := f.String("tokenizer.chat_template"); ok {
		t.Errorf("tokenizer.chat_template = %q for a model without one", tmpl)
	}
}

// Options.Progress follows writing the weights up to their total, for HF
// and GGUF exports (issue 13.8).
func TestExportProgress(t *testing.T) {
	base := tinyModel(t, "qwen3", 24)
	for _, f := range []Format{HF, GGUF} {
		var calls int
		var last, total int64
		out := filepath.Join(t.TempDir(), string(f))
		run(t, Options{Model: base, Out: out, Format: f, GGUFType: gguf.Q8_0, Progress: func(done, tot int64) {
			calls++
			if done < last || done > tot {
				t.Errorf("%s: progress %d/%d after %d", f, done, tot, last)
			}
			last, total = done, tot
		}})
		if calls < 2 || last != total || total == 0 {
			t.Errorf("%s: %d progress calls ending at %d of %d", f, calls, last, total)
		}
	}
}

func checkModelFile(t *testing.T, path string) {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if errs := gguf.CheckModel(f); len(errs) > 0 {
		t.Errorf("CheckModel: %v", errs)
	}
}

// TestGGUFExportReference converts the reference models and compares the
// loaded GGUF with the Hugging Face model.
func TestGGUFExportReference(t *testing.T) {
	if _, err := os.Stat(refRoot); err != nil {
		t.Fatal("reference data missing from testdata/reference (it ships with the repository)")
	}
	for _, name := range []string{"qwen3", "llama", "qwen2"} {
		base := filepath.Join(refRoot, name, "model")
		want := adapted(t, base, "")
		for _, tc := range []struct {
			typ gguf.TensorType
			tol float64
		}{{gguf.F32, 1e-5}, {gguf.F16, 2e-3}} {
			t.Run(name+"/"+tc.typ.String(), func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "gguf")
				run(t, Options{Model: base, Out: out, Format: GGUF, GGUFType: tc.typ, Modelfile: true})
				checkModelFile(t, filepath.Join(out, ModelGGUF))
				m, err := model.LoadGGUF(filepath.Join(out, ModelGGUF), model.LoadOptions{})
				if err != nil {
					t.Fatal(err)
				}
				e := relErr(logits(t, m), want)
				t.Logf("relative error %.3g", e)
				if e > tc.tol {
					t.Errorf("relative error %.3g > %.3g", e, tc.tol)
				}
			})
		}
	}
	fam, err := Family(filepath.Join(refRoot, "llama", "model"), "")
	if err != nil || fam != "mistral" {
		t.Errorf("llama reference (Mistral-Nemo template): family %q, %v; want mistral", fam, err)
	}
}

func TestParse(t *testing.T) {
	sizes := []struct {
		in   string
		want int64
		ok   bool
	}{{"5GB", 5e9, true}, {"500MiB", 500 << 20, true}, {"1.5kb", 1500, true}, {"123", 123, true},
		{"0", 0, false}, {"-1GB", 0, false}, {"GB", 0, false}, {"5 XB", 0, false}}
	for _, s := range sizes {
		got, err := ParseSize(s.in)
		if (err == nil) != s.ok || got != s.want {
			t.Errorf("ParseSize(%q) = %d, %v", s.in, got, err)
		}
	}
	if d, err := ParseDType("bfloat16"); err != nil || d != safetensors.BF16 {
		t.Errorf("ParseDType(bfloat16) = %v, %v", d, err)
	}
	if _, err := ParseDType("f8"); err == nil {
		t.Error("ParseDType(f8) accepted")
	}
	if g, err := ParseGGUFType("Q4_K"); err != nil || g != gguf.Q4_K {
		t.Errorf("ParseGGUFType(Q4_K) = %v, %v", g, err)
	}
	if _, err := ParseGGUFType("q2_k"); err == nil {
		t.Error("ParseGGUFType(q2_k) accepted")
	}
}
