package method

import (
	"fmt"
	"testing"

	"gotune/compute"
	"gotune/compute/ref"
	"gotune/model"
	"gotune/nn"
	"gotune/plan"
)

// unfusedBackend hides the reference backend's fused attention, so the
// block takes the path of a backend without it: batched products and the
// softmax over whole [T, TK] score matrices.
type unfusedBackend struct{ compute.Backend }

// TestGPUPlanMatchesRef runs one training step (forward, backward, AdamW)
// of every planner row on the reference backend in bf16 compute (and some
// in float32, with 8-bit AdamW state, at ranks that make or break LoRA's
// fused groups), which
// counts every tensor the block allocates at its element type's size, and
// compares the peak with the planner's GPU model before the CUDA
// allocator's rounding. The two must agree to the byte: a buffer the model
// misses, or counts in the wrong type, fails the test.
//
// The mixtures of experts (Qwen3-MoE, Mixtral) and Phi-3's fused
// projections are the reference models' shapes. Their experts run side by
// side over all routed rows, except quantized ones (qlora-nf4), which run
// one after another over their own rows: the plan sizes that scratch for
// every token at one expert, an upper bound that a step reaches when the
// router sends every token to the same experts. Those rows check the bound
// with the model's own routing and the exact count with the routers'
// weights zeroed (equal probabilities: every token goes to the first
// top-k experts).
func TestGPUPlanMatchesRef(t *testing.T) {
	shapes := []string{"ref-qwen3", "ref-llama", "qwen3_moe", "phi3", "ref-qwen2", "tiny", "mixtral", "mixed-moe"}
	if testing.Short() {
		shapes = shapes[:4]
	}
	gpu := GPURows()
	type variant struct {
		name          string
		ckpt, unfused bool
		adam8         bool
		f32           bool          // float32 compute: no bf16 copies
		rank          int           // LoRA's rank when not 8
		rows          []plan.Method // nil: every row
	}
	variants := []variant{
		{name: "fused"}, {name: "fused/ckpt", ckpt: true},
		{name: "unfused", unfused: true}, {name: "unfused/ckpt", ckpt: true, unfused: true},
		{name: "adam8", adam8: true, rows: []plan.Method{plan.Full, plan.LoRA, "dora"}},
		// Rank 72 over hidden size 64: A matrices of 4608 values, 8-bit
		// state aligned to whole blocks, so q/k/v still form one group;
		// rank 65: 4160 values, padded in the arena, so no group forms.
		{name: "adam8/r72", adam8: true, rank: 72, rows: []plan.Method{plan.LoRA, "dora"}},
		{name: "adam8/r65", adam8: true, rank: 65, rows: []plan.Method{plan.LoRA, plan.QLoRA}},
		// Rank 5 over hidden size 48 (mixed-moe): A matrices of 240
		// values, padded in the arena, so no group forms.
		{name: "ckpt/r5", ckpt: true, rank: 5, rows: []plan.Method{plan.LoRA, plan.QLoRA}},
		{name: "f32", f32: true, rows: []plan.Method{plan.Full, plan.LoRA, plan.QLoRA, plan.Prefix}},
	}
	for _, name := range shapes {
		for _, v := range variants {
			for _, row := range PlanRows() {
				if v.rows != nil && !containsMethod(v.rows, row.Method) {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s/%s", name, row.Method, v.name), func(t *testing.T) {
					cfg, err := gpuPlanShape(name)
					if err != nil {
						t.Fatal(err)
					}
					if why := gpuPlanSkip(cfg, row.Method); why != "" {
						t.Skipf("%s: %s", name, why)
					}
					dev := gpu[row.Method]
					if dev == nil {
						t.Fatalf("row %s has no GPU footprint in GPURows", row.Method)
					}
					// Batch 2 of 40 tokens: the attention chunk, the head
					// chunk and rotary tables at their small-shape sizes;
					// rank 8 keeps LoRA's fused groups (8·64 values align).
					o := plan.Options{Batch: 2, Seq: 40, LoRARank: 8, Virtual: 6, BottleneckSize: 16, FreezeLayers: 1}
					if v.rank > 0 {
						o.LoRARank = v.rank
					}
					dt := compute.BF16
					if v.f32 {
						dt = compute.F32
					}
					o.Adam8bit = v.adam8
					gopt := plan.GPUOptions{Compute: dt, Attention: attention(v.unfused)}
					e, err := plan.EstimateGPU(cfg, row, dev, o, gopt)
					if err != nil {
						t.Fatal(err)
					}
					if e.Fused == v.unfused {
						t.Fatalf("estimate with fused attention %v, want %v", e.Fused, !v.unfused)
					}
					want := e.Memory.Requested
					if v.ckpt {
						want = e.MemoryCheckpoint.Requested
					}
					bound := cfg.Experts > 0 && (row.Method == plan.QLoRA || row.Method == plan.IA3)
					peak, err := refStepPeak(cfg, row.Method, o, dt, v.ckpt, v.unfused, v.adam8, false)
					if err != nil {
						t.Fatal(err)
					}
					if bound {
						t.Logf("ref peak %d B with the model's routing, planned bound %d B (%+d)", peak, want, want-peak)
						if peak > want {
							t.Errorf("reference backend's peak %d bytes exceeds the GPU plan's bound %d by %d", peak, want, peak-want)
						}
						if peak, err = refStepPeak(cfg, row.Method, o, dt, v.ckpt, v.unfused, v.adam8, true); err != nil {
							t.Fatal(err)
						}
					}
					t.Logf("ref peak %d B, planned %d B (%+d)", peak, want, want-peak)
					if peak != want {
						t.Errorf("reference backend's peak %d bytes, GPU plan %d: off by %+d", peak, want, want-peak)
					}
				})
			}
		}
	}
}

func containsMethod(ms []plan.Method, m plan.Method) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// gpuPlanSkip says why a planner row does not run on a model as the row
// counts it ("": it does).
func gpuPlanSkip(cfg *model.Config, m plan.Method) string {
	switch {
	case cfg.Experts > 0 && m == "dora":
		return "lora_target all refuses DoRA on a mixture of experts (PEFT allows none on stacked expert weights)"
	case cfg.Experts > 0 && m == plan.IA3 && cfg.Family.MoE.Down != "down_proj":
		return "IA3's default targets (k_proj, v_proj, down_proj) miss experts whose down projection is " + cfg.Family.MoE.Down + "; the row scales every expert's down"
	case cfg.FusedQKV && m == plan.IA3:
		return "IA3's default targets (k_proj, v_proj) do not exist with a fused qkv_proj: the trainer asks for ia3_target"
	}
	return ""
}

// mixedMoE is a Qwen3-MoE whose middle layer keeps a dense MLP
// (mlp_only_layers), its hidden size 48 so that LoRA's A matrices of rank 5
// leave gaps in the arena (no q/k/v or gate/up group) and those of rank 8
// do not.
const mixedMoE = `{"model_type":"qwen3_moe","vocab_size":97,"hidden_size":48,"intermediate_size":80,"num_hidden_layers":3,
	"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"num_experts":5,"num_experts_per_tok":2,
	"moe_intermediate_size":24,"norm_topk_prob":false,"mlp_only_layers":[1],"output_router_logits":true,
	"router_aux_loss_coef":0.3,"max_position_embeddings":256,"rope_theta":10000,"tie_word_embeddings":true}`

// gpuPlanShape is a named shape, mixed-moe (mixedMoE) or a reference
// model's configuration (testdata/reference/<name>/model).
func gpuPlanShape(name string) (*model.Config, error) {
	if cfg, err := model.Shape(name); err == nil {
		return cfg, nil
	}
	if name == "mixed-moe" {
		return model.ParseConfig(name, []byte(mixedMoE))
	}
	return model.LoadConfig("../testdata/reference/" + name + "/model")
}

// refStepPeak builds a model of cfg set up for planner row method, copies it
// to a fresh reference backend in bf16 compute and returns the backend's
// peak after one step and one AdamW update in compute type dt. route0
// zeroes the routers of a mixture of experts: every token goes to the
// first top-k experts.
func refStepPeak(cfg *model.Config, method plan.Method, o plan.Options, dt compute.DType, ckpt, unfused, adam8, route0 bool) (int64, error) {
	m := model.New(cfg)
	m.RandomInit(1)
	for _, l := range m.Layers {
		if l.MoE != nil && route0 {
			w, ok := l.MoE.Router.W.(*nn.Param)
			if !ok {
				return 0, fmt.Errorf("%s: router weight %T, want float32", l.MoE.Router.Name, l.MoE.Router.W)
			}
			clear(w.Data)
		}
	}
	if _, err := attach(m, method, o); err != nil {
		return 0, err
	}
	var be compute.Backend = ref.New()
	if unfused {
		be = unfusedBackend{be}
	}
	dm, err := model.NewDeviceModel(m, be, model.DeviceOptions{Compute: dt, Checkpoint: ckpt, Adam8bit: adam8})
	if err != nil {
		return 0, err
	}
	defer dm.Close()
	ids := make([]int32, o.Batch*o.Seq)
	for i := range ids {
		ids[i] = int32(i*7919) % int32(cfg.Vocab)
	}
	b := &model.Batch{B: o.Batch, T: o.Seq, IDs: ids, Labels: ids}
	dm.ZeroGrad()
	if _, _, err := dm.Step(b, 1e-3); err != nil {
		return 0, err
	}
	if _, err := dm.AdamW(model.AdamWConfig{LR: 1e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}); err != nil {
		return 0, err
	}
	return dm.MemStats().Peak, nil
}

// attention is the planner's choice for a reference backend that fuses
// every problem, or (unfused) one whose fused interface is hidden.
func attention(unfused bool) plan.GPUAttention {
	if unfused {
		return plan.GPUAttnUnfused
	}
	return plan.GPUAttnFused
}
