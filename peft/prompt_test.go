package peft

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"gotune/model"
	"gotune/model/family"
	"gotune/nn"
)

// tinyModel builds a small random qwen3-like model (q/k norms, GQA,
// attention biases) so every hook sees non-trivial numbers.
func tinyModel(t testing.TB, seed uint64) *model.Model {
	t.Helper()
	cfg := &model.Config{ModelType: "qwen3", Vocab: 40, Hidden: 16, Intermediate: 24, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 4,
		RMSNormEps: 1e-6, MaxPositions: 128, Traits: family.Traits{AttnBias: true, QKNorm: true}, Rope: model.Rope{Theta: 10000, Type: "default"}, Pad: -1}
	m := model.New(cfg)
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, p := range m.Params() {
		norm := strings.Contains(p.Name, "norm")
		for i := range p.Data {
			if norm {
				p.Data[i] = float32(1 + 0.1*rng.NormFloat64())
			} else {
				p.Data[i] = float32(0.3 * rng.NormFloat64())
			}
		}
	}
	return m
}

// tinyBatch is two sequences, the second right-padded, trained on their
// second halves.
func tinyBatch() *model.Batch {
	ids := []int32{1, 5, 7, 9, 11, 13, 2, 4, 3, 8, 6, 12, 14, 0, 0, 0}
	labels := make([]int32, len(ids))
	mask := make([]int32, len(ids))
	for i := range ids {
		labels[i], mask[i] = model.IgnoreIndex, 1
		if i%8 >= 4 {
			labels[i] = ids[i]
		}
		if i >= 13 {
			labels[i], mask[i] = model.IgnoreIndex, 0
		}
	}
	return &model.Batch{B: 2, T: 8, IDs: ids, Labels: labels, Mask: mask}
}

// attachers builds each method on a model; "perturb" moves the parameters
// away from their initial values so no gradient is trivially zero.
var attachers = []struct {
	name   string
	attach func(m *model.Model) (Method, error)
}{
	{"prompt_tuning", func(m *model.Model) (Method, error) {
		return AttachPromptTuning(m, PromptTuningConfig{Virtual: 3}, 1)
	}},
	{"p_tuning_mlp", func(m *model.Model) (Method, error) {
		return AttachPTuning(m, PTuningConfig{Virtual: 3, EncoderType: "MLP", EncoderHidden: 8}, 2)
	}},
	{"p_tuning_lstm", func(m *model.Model) (Method, error) {
		return AttachPTuning(m, PTuningConfig{Virtual: 3, EncoderType: "LSTM", EncoderHidden: 5, EncoderLayers: 2}, 3)
	}},
	{"prefix_tuning", func(m *model.Model) (Method, error) {
		return AttachPrefix(m, PrefixConfig{Virtual: 3}, 4)
	}},
	{"prefix_tuning_projection", func(m *model.Model) (Method, error) {
		return AttachPrefix(m, PrefixConfig{Virtual: 3, Projection: true, EncoderHidden: 6}, 5)
	}},
	{"ia3", func(m *model.Model) (Method, error) {
		return AttachIA3(m, IA3Config{}, 6)
	}},
	{"bottleneck_houlsby", func(m *model.Model) (Method, error) {
		return AttachBottleneck(m, BottleneckConfig{Size: 4, Init: "kaiming", Activation: "silu"}, 7)
	}},
	{"bottleneck_pfeiffer_gelu", func(m *model.Model) (Method, error) {
		return AttachBottleneck(m, BottleneckConfig{Size: 3, Placement: "pfeiffer", Activation: "gelu", Scaling: 0.5}, 8)
	}},
}

func perturb(ps []*nn.Param, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 2))
	for _, p := range ps {
		for i := range p.Data {
			p.Data[i] += float32(0.2 * rng.NormFloat64())
		}
	}
}

func meanLoss(ws *run, b *model.Batch) float64 {
	s, n := ws.Loss(b)
	return s / float64(n)
}

// TestMethodGradients checks every method's gradient against central
// differences of the float32 model's loss (a cheap check: float32 limits it
// to about 1e-2), with and without gradient checkpointing.
func TestMethodGradients(t *testing.T) {
	for _, a := range attachers {
		t.Run(a.name, func(t *testing.T) { checkMethodGradients(t, tinyModel(t, 11), a.attach) })
	}
}

// familyModels are small models of the newer families: Gemma 2 scales
// prompt tuning's virtual tokens with the embeddings and soft-caps; phi3's
// projections are fused; Mixtral's MLPs are experts.
var familyModels = map[string]string{
	"gemma2": `{"model_type":"gemma2","vocab_size":40,"hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,
		"num_attention_heads":4,"num_key_value_heads":2,"head_dim":4,"query_pre_attn_scalar":6,"attn_logit_softcapping":2.0,
		"final_logit_softcapping":3.0,"sliding_window":3,"hidden_activation":"gelu_pytorch_tanh","max_position_embeddings":128}`,
	"phi3": `{"model_type":"phi3","vocab_size":40,"hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,
		"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":128}`,
	"mixtral": `{"model_type":"mixtral","vocab_size":40,"hidden_size":16,"intermediate_size":12,"num_hidden_layers":2,
		"num_attention_heads":4,"num_key_value_heads":2,"num_local_experts":3,"num_experts_per_tok":2,
		"output_router_logits":true,"router_aux_loss_coef":0.2,"max_position_embeddings":128}`,
}

func familyModel(t testing.TB, name string, seed uint64) *model.Model {
	t.Helper()
	cfg, err := model.ParseConfig(name+"/config.json", []byte(familyModels[name]))
	if err != nil {
		t.Fatal(err)
	}
	m := model.New(cfg)
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, p := range m.Params() {
		for i := range p.Data {
			p.Data[i] = float32(0.3 * rng.NormFloat64())
		}
	}
	return m
}

// TestMethodGradientsFamilies: the methods that hook the input, the
// attention keys/values and the sub-layer outputs on the newer families
// (IA3's default targets are the Llama family's names). Mixtral is left to
// model's finite-difference test, whose small steps keep the routing fixed:
// these 1e-2 steps move tokens across top-k switches, where the loss jumps.
func TestMethodGradientsFamilies(t *testing.T) {
	for _, fam := range []string{"gemma2", "phi3"} {
		for _, a := range attachers {
			if a.name == "ia3" && fam != "gemma2" {
				continue // k_proj/v_proj/down_proj: phi3 fuses them, Mixtral's experts are not modules
			}
			t.Run(fam+"/"+a.name, func(t *testing.T) { checkMethodGradients(t, familyModel(t, fam, 11), a.attach) })
		}
	}
}

func checkMethodGradients(t *testing.T, m *model.Model, attach func(*model.Model) (Method, error)) {
	b := tinyBatch()
	{
		{
			meth, err := attach(m)
			if err != nil {
				t.Fatal(err)
			}
			params := meth.Params()
			perturb(params, 3)
			grads := func(checkpoint bool) [][]float32 {
				for _, p := range params {
					p.ZeroGrad()
				}
				ws := newRun(t, m)
				ws.Checkpoint = checkpoint
				ws.Step(b, float32(1/float64(b.TrainedTokens())))
				var out [][]float32
				for _, p := range params {
					out = append(out, append([]float32(nil), p.Grad...))
				}
				return out
			}
			g := grads(false)
			gc := grads(true)
			for i := range g {
				if e := relErr32(gc[i], g[i]); e > 1e-5 {
					t.Errorf("%s: checkpointed gradient differs by %.3g", params[i].Name, e)
				}
			}
			ws := newRun(t, m)
			rng := rand.New(rand.NewPCG(9, 9))
			var num, den float64
			for pi, p := range params {
				for k := 0; k < 6; k++ {
					i := rng.IntN(len(p.Data))
					orig := p.Data[i]
					const eps = 1e-2
					p.Data[i] = orig + eps
					up := meanLoss(ws, b)
					p.Data[i] = orig - eps
					dn := meanLoss(ws, b)
					p.Data[i] = orig
					fd := (up - dn) / (float64(orig+eps) - float64(orig-eps))
					d := fd - float64(g[pi][i])
					num += d * d
					den += fd * fd
				}
			}
			if den == 0 {
				t.Fatal("every sampled gradient is zero")
			}
			if e := math.Sqrt(num / den); e > 2e-2 {
				t.Errorf("finite differences disagree: rel err %.3g", e)
			} else {
				t.Logf("rel err %.3g", e)
			}
		}
	}
}

func relErr32(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// TestGenerateMatchesTraining: with each method attached, the KV-cache
// session's logits after a prompt equal the training forward's last row.
func TestGenerateMatchesTraining(t *testing.T) {
	prompt := []int32{1, 5, 7, 9, 11}
	for _, a := range attachers {
		t.Run(a.name, func(t *testing.T) {
			m := tinyModel(t, 12)
			meth, err := a.attach(m)
			if err != nil {
				t.Fatal(err)
			}
			perturb(meth.Params(), 4)
			ws := newRun(t, m)
			logits := ws.Logits(&model.Batch{B: 1, T: len(prompt), IDs: prompt})
			V := m.Cfg.Vocab
			want := append([]float32(nil), logits[len(logits)-V:]...)
			s := newSession(t, m, 32)
			got, err := s.Feed(prompt)
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr32(got, want); e > 1e-5 {
				t.Errorf("session logits differ from the training forward by %.3g", e)
			}
			// Feeding token by token gives the same again.
			s.Reset()
			for _, id := range prompt {
				if got, err = s.Feed([]int32{id}); err != nil {
					t.Fatal(err)
				}
			}
			if e := relErr32(got, want); e > 1e-5 {
				t.Errorf("token-by-token logits differ by %.3g", e)
			}
			// Detaching restores the base model.
			base := tinyModel(t, 12)
			meth.Detach()
			l1 := newRun(t, m).Logits(&model.Batch{B: 1, T: len(prompt), IDs: prompt})
			l2 := newRun(t, base).Logits(&model.Batch{B: 1, T: len(prompt), IDs: prompt})
			if e := relErr32(l1, l2); e != 0 {
				t.Errorf("after Detach logits differ from the base model by %.3g", e)
			}
		})
	}
}

// TestSaveLoadRoundTrip saves each method, loads it into a fresh model
// through Load and checks the saved tensors, the logits and, for encoder
// methods, that training state (the encoder) came back.
func TestSaveLoadRoundTrip(t *testing.T) {
	b := tinyBatch()
	for _, a := range attachers {
		t.Run(a.name, func(t *testing.T) {
			m := tinyModel(t, 13)
			meth, err := a.attach(m)
			if err != nil {
				t.Fatal(err)
			}
			perturb(meth.Params(), 5)
			want := append([]float32(nil), newRun(t, m).Logits(b)...)
			dir := t.TempDir()
			if err := meth.Save(dir); err != nil {
				t.Fatal(err)
			}
			typ, err := PeftType(dir)
			if err != nil || typ != meth.Type() {
				t.Fatalf("peft_type %q (%v), want %q", typ, err, meth.Type())
			}
			m2 := tinyModel(t, 13)
			got, err := loadSaved(m2, dir)
			if err != nil {
				t.Fatal(err)
			}
			if got.Type() != meth.Type() {
				t.Fatalf("loaded %s, saved %s", got.Type(), meth.Type())
			}
			if e := relErr32(newRun(t, m2).Logits(b), want); e != 0 {
				t.Errorf("loaded adapter's logits differ by %.3g", e)
			}
			p1, p2 := meth.Params(), got.Params()
			if len(p1) != len(p2) {
				t.Fatalf("%d params after loading, %d before", len(p2), len(p1))
			}
			for i := range p1 {
				if p1[i].Name != p2[i].Name || relErr32(p2[i].Data, p1[i].Data) != 0 || !p2[i].Trainable() {
					t.Errorf("param %s did not round-trip (loaded %s)", p1[i].Name, p2[i].Name)
				}
			}
			if enc, ok := got.(Encoded); ok && strings.Contains(a.name, "projection") || strings.HasPrefix(a.name, "p_tuning") {
				if !enc.HasEncoder() {
					t.Errorf("the encoder was not restored from %s", encoderFile)
				}
				// Without gotune's encoder file the saved output is what
				// loads, as in PEFT's inference mode: same logits.
				if err := os.Remove(filepath.Join(dir, encoderFile)); err != nil {
					t.Fatal(err)
				}
				m3 := tinyModel(t, 13)
				out, err := loadSaved(m3, dir)
				if err != nil {
					t.Fatal(err)
				}
				if out.(Encoded).HasEncoder() {
					t.Error("an encoder appeared from nowhere")
				}
				if e := relErr32(newRun(t, m3).Logits(b), want); e > 1e-6 {
					t.Errorf("output-only adapter's logits differ by %.3g", e)
				}
			}
		})
	}
}

// TestConfigKeys checks that the adapter_config.json we write has every
// field PEFT wrote for the same method (copied from the reference data).
func TestConfigKeys(t *testing.T) {
	for _, c := range []struct{ golden, attacher string }{
		{"prompt_tuning", "prompt_tuning"},
		{"p_tuning", "p_tuning_mlp"},
		{"prefix_tuning", "prefix_tuning"},
		{"prefix_tuning_projection", "prefix_tuning_projection"},
		{"ia3", "ia3"},
	} {
		t.Run(c.golden, func(t *testing.T) {
			want := readKeys(t, filepath.Join("testdata", "peft_configs", c.golden+".json"))
			delete(want, "peft_version")
			var attach func(*model.Model) (Method, error)
			for _, a := range attachers {
				if a.name == c.attacher {
					attach = a.attach
				}
			}
			meth, err := attach(tinyModel(t, 1))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := meth.Save(dir); err != nil {
				t.Fatal(err)
			}
			got := readKeys(t, filepath.Join(dir, "adapter_config.json"))
			var missing, extra []string
			for k := range want {
				if _, ok := got[k]; !ok {
					missing = append(missing, k)
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					extra = append(extra, k)
				}
			}
			sort.Strings(missing)
			sort.Strings(extra)
			if len(missing)+len(extra) > 0 {
				t.Errorf("fields missing %v, extra %v", missing, extra)
			}
			for _, k := range []string{"peft_type", "task_type", "inference_mode", "num_transformer_submodules", "prefix_projection", "encoder_reparameterization_type", "prompt_tuning_init", "init_ia3_weights", "feedforward_modules"} {
				w, ok := want[k]
				if ok && string(got[k]) != string(w) {
					t.Errorf("%s = %s, PEFT wrote %s", k, got[k], w)
				}
			}
		})
	}
}

func readKeys(t *testing.T, path string) map[string]json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for k, v := range m {
		var x any
		json.Unmarshal(v, &x)
		c, _ := json.Marshal(x)
		m[k] = c
	}
	return m
}

func TestPromptTuningTextInit(t *testing.T) {
	m := tinyModel(t, 14)
	h := m.Cfg.Hidden
	for _, c := range []struct {
		ids     []int
		virtual int
		want    []int
	}{
		{[]int{3, 5}, 5, []int{3, 5, 3, 5, 3}}, // repeated
		{[]int{3, 5, 7, 9}, 2, []int{3, 5}},    // truncated
		{[]int{8}, 1, []int{8}},
	} {
		p, err := AttachPromptTuning(m, PromptTuningConfig{Virtual: c.virtual, Init: "TEXT", InitText: "x",
			Tokenize: func(string) []int { return c.ids }}, 0)
		if err != nil {
			t.Fatal(err)
		}
		for v, id := range c.want {
			if relErr32(p.Embedding.Data[v*h:(v+1)*h], m.Embed.Data[id*h:(id+1)*h]) != 0 {
				t.Errorf("ids %v, %d virtual: token %d is not the embedding of %d", c.ids, c.virtual, v, id)
			}
		}
		p.Detach()
	}
	for _, bad := range []PromptTuningConfig{
		{Virtual: 2, Init: "TEXT"},
		{Virtual: 2, Init: "TEXT", Tokenize: func(string) []int { return nil }},
		{Virtual: 2, Init: "TEXT", Tokenize: func(string) []int { return []int{1000} }},
		{Virtual: 0},
		{Virtual: 2, Init: "SOMETHING"},
	} {
		if p, err := AttachPromptTuning(m, bad, 0); err == nil {
			t.Errorf("%+v: no error", bad)
			p.Detach()
		}
	}
}

// TestLoadErrors: bad adapter folders give errors naming the file and field.
func TestLoadErrors(t *testing.T) {
	m := tinyModel(t, 15)
	src := t.TempDir()
	p, err := AttachPrefix(m, PrefixConfig{Virtual: 2}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Save(src); err != nil {
		t.Fatal(err)
	}
	p.Detach()
	cfg, _ := os.ReadFile(filepath.Join(src, "adapter_config.json"))
	for _, c := range []struct {
		name, from, to, want string
	}{
		{"token_dim", `"token_dim": 8`, `"token_dim": 16`, "token_dim"},
		{"layers", `"num_layers": 2`, `"num_layers": 3`, "num_layers"},
		{"virtual", `"num_virtual_tokens": 2`, `"num_virtual_tokens": 3`, "prompt_embeddings"},
		{"submodules", `"num_transformer_submodules": 1`, `"num_transformer_submodules": 2`, "num_transformer_submodules"},
		{"json", `{`, `[`, "adapter_config.json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(string(cfg), c.from) {
				t.Fatalf("config has no %s", c.from)
			}
			dir := t.TempDir()
			b, _ := os.ReadFile(filepath.Join(src, "adapter_model.safetensors"))
			os.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), b, 0o644)
			os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(strings.Replace(string(cfg), c.from, c.to, 1)), 0o644)
			_, err := LoadPrefix(m, dir)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("error %v, want one naming %s and the folder", err, c.want)
			}
			if m.Layers[0].Prefix != nil {
				t.Error("a failed load left a prefix attached")
			}
		})
	}
}

// loadSaved loads an adapter folder by its peft_type, as method.Load does
// for the trainer and every command (that registry sits above this package).
func loadSaved(m *model.Model, dir string) (Method, error) {
	t, err := PeftType(dir)
	if err != nil {
		return nil, err
	}
	load := map[string]func(*model.Model, string) (Method, error){
		"LORA":          func(m *model.Model, d string) (Method, error) { return LoadLoRA(m, d) },
		"PROMPT_TUNING": func(m *model.Model, d string) (Method, error) { return LoadPromptTuning(m, d) },
		"P_TUNING":      func(m *model.Model, d string) (Method, error) { return LoadPTuning(m, d) },
		"PREFIX_TUNING": func(m *model.Model, d string) (Method, error) { return LoadPrefix(m, d) },
		"IA3":           func(m *model.Model, d string) (Method, error) { return LoadIA3(m, d) },
		"BOTTLENECK":    func(m *model.Model, d string) (Method, error) { return LoadBottleneck(m, d) },
	}[t]
	if load == nil {
		return nil, fmt.Errorf("%s: peft_type %q", dir, t)
	}
	return load(m, dir)
}

// TestMethodsOnMoE: every method but IA3 attaches to a Mixtral model, trains
// a step, and its KV-cache session equals the training forward.
func TestMethodsOnMoE(t *testing.T) {
	prompt := []int32{1, 5, 7, 9, 11}
	for _, a := range attachers {
		if a.name == "ia3" {
			continue // its default targets (k_proj, v_proj, down_proj) include no expert module
		}
		t.Run(a.name, func(t *testing.T) {
			m := familyModel(t, "mixtral", 12)
			meth, err := a.attach(m)
			if err != nil {
				t.Fatal(err)
			}
			perturb(meth.Params(), 4)
			b := tinyBatch()
			if s, n := newRun(t, m).Step(b, 1); n == 0 || math.IsNaN(s) {
				t.Fatalf("step: loss %v over %d tokens", s, n)
			}
			V := m.Cfg.Vocab
			logits := newRun(t, m).Logits(&model.Batch{B: 1, T: len(prompt), IDs: prompt})
			want := append([]float32(nil), logits[len(logits)-V:]...)
			got, err := newSession(t, m, 32).Feed(prompt)
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr32(got, want); e > 1e-5 {
				t.Errorf("session logits differ from the training forward by %.3g", e)
			}
		})
	}
}
