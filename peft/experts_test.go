package peft

import (
	"math"
	"runtime"
	"strings"
	"testing"

	"gotune/model"
)

// TestExpertLoRARoundTripAndMerge: LoRA on the stacked expert weights
// (target_parameters) saves in PEFT's nesting, loads back to the same
// logits, and merges into the experts' weights.
func TestExpertLoRARoundTripAndMerge(t *testing.T) {
	for _, js := range []string{
		`{"model_type":"qwen3_moe","vocab_size":97,"hidden_size":32,"intermediate_size":40,"num_hidden_layers":2,
			"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"num_experts":4,"num_experts_per_tok":2,
			"moe_intermediate_size":12,"max_position_embeddings":64,"tie_word_embeddings":true}`,
		`{"model_type":"mixtral","vocab_size":97,"hidden_size":32,"intermediate_size":12,"num_hidden_layers":2,
			"num_attention_heads":4,"num_key_value_heads":2,"num_local_experts":3,"num_experts_per_tok":2,
			"max_position_embeddings":64}`,
	} {
		cfg, err := model.ParseConfig("config.json", []byte(js))
		if err != nil {
			t.Fatal(err)
		}
		m := model.New(cfg)
		m.RandomInit(5)
		set, err := AttachLoRA(m, LoRAConfig{R: 2, Alpha: 4, Targets: []string{"q_proj"},
			TargetParameters: []string{"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}}, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(set.Experts) != 4 {
			t.Fatalf("%s: %d expert adapters, want 4 (two weights, two layers)", cfg.ModelType, len(set.Experts))
		}
		if got := set.Experts[0].A.Name; got != "base_model.model.model.layers.0.mlp.experts.base_layer.lora_A.default.weight" {
			t.Errorf("inner wrapper named %s", got)
		}
		for _, p := range set.Params() { // B starts at zero; make the adapter matter
			if len(p.Data) > 0 && p.Name[len(p.Name)-22:] != "lora_A.default.weight" {
				for i := range p.Data {
					p.Data[i] = float32(math.Sin(float64(i))) * 0.3
				}
			}
		}
		b := &model.Batch{B: 1, T: 9, IDs: []int32{1, 5, 9, 33, 2, 7, 60, 3, 4}}
		want := append([]float32(nil), newRun(t, m).Logits(b)...)
		dir := t.TempDir()
		if err := set.Save(dir); err != nil {
			t.Fatal(err)
		}
		set.Detach()
		if relDiff(newRun(t, m).Logits(b), want) < 1e-4 {
			t.Fatalf("%s: the adapter does not change the logits; the test would prove nothing", cfg.ModelType)
		}
		loaded, err := loadSaved(m, dir)
		if err != nil {
			t.Fatal(err)
		}
		if d := relDiff(newRun(t, m).Logits(b), want); d > 1e-6 {
			t.Errorf("%s: loaded adapter logits differ by %g", cfg.ModelType, d)
		}
		if err := loaded.(*LoRASet).Merge(); err != nil {
			t.Fatal(err)
		}
		if d := relDiff(newRun(t, m).Logits(b), want); d > 1e-5 {
			t.Errorf("%s: merged logits differ by %g", cfg.ModelType, d)
		}
	}
}

// TestLoRAAllOnMoE: target "all" on an MoE model adapts attention by
// modules and the experts through target_parameters (PEFT's layout with
// transformers 5), never the experts' per-expert layers; with dropout it is
// refused with the reason.
func TestLoRAAllOnMoE(t *testing.T) {
	cfg, err := model.ParseConfig("config.json", []byte(`{"model_type":"mixtral","vocab_size":97,"hidden_size":32,
		"intermediate_size":12,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"num_local_experts":3,
		"num_experts_per_tok":2,"max_position_embeddings":64}`))
	if err != nil {
		t.Fatal(err)
	}
	m := model.New(cfg)
	set, err := AttachLoRA(m, LoRAConfig{R: 2, Alpha: 4, Targets: []string{"all"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Experts) != 4 || len(set.Modules) != 8 {
		t.Errorf("%d expert adapters and %d module adapters, want 4 and 8 (q, k, v, o × 2 layers)", len(set.Experts), len(set.Modules))
	}
	for _, l := range set.Modules {
		if strings.Contains(l.Module, ".experts.") {
			t.Errorf("per-expert layer %s adapted by module", l.Module)
		}
	}
	js := set.Config.peftJSON()
	if got := js["target_parameters"]; got == nil {
		t.Error("adapter_config.json has no target_parameters")
	}
	set.Detach()
	if _, err := AttachLoRA(m, LoRAConfig{R: 2, Alpha: 4, Targets: []string{"all"}, Dropout: 0.1}, 1); err == nil || !strings.Contains(err.Error(), "dropout") {
		t.Errorf("all with dropout on MoE: error %v, want one about dropout", err)
	}
}

// TestExpertLoRAStepSameOnAnyCores: a LoRA step on an MoE model, whose
// layers run their experts side by side, gives the same loss and
// gradients on one core as on several, and with gradient checkpointing
// (the expert adapters keep B_e's rows from the forward pass for the
// backward).
func TestExpertLoRAStepSameOnAnyCores(t *testing.T) {
	cfg, err := model.ParseConfig("config.json", []byte(`{"model_type":"qwen3_moe","vocab_size":97,"hidden_size":32,
		"intermediate_size":40,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,
		"num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":12,"max_position_embeddings":64,
		"tie_word_embeddings":true,"output_router_logits":true}`))
	if err != nil {
		t.Fatal(err)
	}
	m := model.New(cfg)
	m.RandomInit(7)
	set, err := AttachLoRA(m, LoRAConfig{R: 2, Alpha: 4, Targets: []string{"all"}}, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range set.Params() { // B starts at zero; make it matter
		if strings.Contains(p.Name, "lora_B") {
			for i := range p.Data {
				p.Data[i] = float32(math.Sin(float64(i))) * 0.3
			}
		}
	}
	const n = 24
	b := &model.Batch{B: 1, T: n, IDs: make([]int32, n), Labels: make([]int32, n), Mask: make([]int32, n)}
	for i := range n {
		b.IDs[i] = int32((i*37 + 11) % 97)
		b.Labels[i], b.Mask[i] = b.IDs[i], 1
	}
	step := func(procs int, checkpoint bool) (float64, [][]float32) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		for _, p := range set.Params() {
			p.ZeroGrad()
		}
		w := newRun(t, m)
		w.Checkpoint = checkpoint
		loss, _ := w.Step(b, 0.1)
		var g [][]float32
		for _, p := range set.Params() {
			g = append(g, append([]float32(nil), p.Grad...))
		}
		return loss, g
	}
	l1, g1 := step(1, false)
	for _, c := range []struct {
		procs      int
		checkpoint bool
	}{{4, false}, {4, true}} {
		l, g := step(c.procs, c.checkpoint)
		if math.Abs(l-l1) > 1e-6*math.Abs(l1) {
			t.Errorf("%+v: loss %v, on one core %v", c, l, l1)
		}
		for k, p := range set.Params() {
			var num, den float64
			for i := range g[k] {
				d := float64(g[k][i] - g1[k][i])
				num += d * d
				den += float64(g1[k][i]) * float64(g1[k][i])
			}
			if den == 0 {
				t.Fatalf("%s: zero gradient, the test checks nothing", p.Name)
			}
			if e := math.Sqrt(num / den); e > 1e-6 {
				t.Errorf("%+v: %s differs from one core's by %.3g", c, p.Name, e)
			}
		}
	}
}
