package plan_test

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"gotune/method"
	"gotune/model"
	"gotune/plan"
	"gotune/quant"
)

// The estimates of the rows package method defines, against what they must
// satisfy whatever the method.

func mustShape(t *testing.T, name string) *model.Config {
	t.Helper()
	c, err := model.Shape(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func row(t *testing.T, name plan.Method) plan.Row {
	t.Helper()
	r, err := method.PlanRow(string(name))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func verdict(p *plan.Plan, m plan.Method) *plan.Verdict {
	for i := range p.Methods {
		if p.Methods[i].Method == m {
			return &p.Methods[i]
		}
	}
	return nil
}

// TestEstimateInvariants checks relations that must hold for every shape
// and method, and the weight sizes against package quant's own footprint.
func TestEstimateInvariants(t *testing.T) {
	for _, name := range model.ShapeNames() {
		cfg := mustShape(t, name)
		o := plan.Options{Batch: 2, Seq: 512, GFLOPS: 100, NF4GFLOPS: 50, Steps: 3}
		est := map[plan.Method]plan.Estimate{}
		for _, r := range method.PlanRows() {
			m := r.Method
			e, err := plan.EstimateMethod(cfg, r, o)
			if err != nil {
				t.Fatalf("%s/%s: %v", name, m, err)
			}
			est[m] = e
			if e.MemoryCheckpoint.Activations >= e.Memory.Activations {
				t.Errorf("%s/%s: checkpointing does not reduce activations (%d ≥ %d)", name, m, e.MemoryCheckpoint.Activations, e.Memory.Activations)
			}
			if e.StepFLOPsCheckpoint <= e.StepFLOPs || e.StepSecondsCheckpoint <= e.StepSeconds {
				t.Errorf("%s/%s: checkpointing does not add compute", name, m)
			}
			if m != plan.Full && e.TrainableParams >= est[plan.Full].TrainableParams {
				t.Errorf("%s/%s: %d trainable, not fewer than full's %d", name, m, e.TrainableParams, est[plan.Full].TrainableParams)
			}
			mem := e.Memory
			if sum := mem.Weights + mem.Grads + mem.Optimizer + mem.Activations + mem.Runtime; mem.Total != max(sum, mem.Load) {
				t.Errorf("%s/%s: total %d is not max(parts %d, load %d)", name, m, mem.Total, sum, mem.Load)
			}
			if mem.Optimizer != 2*mem.Grads || mem.Grads != 4*e.TrainableParams {
				t.Errorf("%s/%s: gradients %d and AdamW state %d for %d trainable values", name, m, mem.Grads, mem.Optimizer, e.TrainableParams)
			}
		}
		if got := est[plan.Full].TrainableParams; got != cfg.Params() {
			t.Errorf("%s: full trains %d, model has %d", name, got, cfg.Params())
		}
		if est[plan.Full].Memory.Weights != 4*cfg.Params() {
			t.Errorf("%s: full weights %d bytes, want 4·%d", name, est[plan.Full].Memory.Weights, cfg.Params())
		}
		// plan.QLoRA's base is quant's footprint with f32 embeddings.
		fp, err := quant.Footprint(quant.ModelShape{Hidden: cfg.Hidden, Intermediate: cfg.Intermediate, Layers: cfg.Layers, Heads: cfg.Heads,
			HeadDim: cfg.HeadDim, KVHeads: cfg.KVHeads, Vocab: cfg.Vocab, TiedEmbeddings: cfg.TieEmbeddings, QKNorm: cfg.QKNorm},
			quant.Options{Type: quant.NF4, DoubleQuant: true}, quant.Options{Type: quant.F32})
		if err != nil {
			t.Fatal(err)
		}
		q := est[plan.QLoRA]
		// quant's shape has no experts: an MoE model's expert weights are
		// the projections beyond its dense formula (shape.moeHeld), stored
		// like the others; scaling the footprint by their count is exact only
		// up to block rounding, hence 1% for MoE shapes.
		moe := plan.MoEHeld(cfg)
		bias := est[plan.Full].Memory.Weights - (fp.LinearParams+moe)*4 - fp.EmbeddingBytes - fp.NormBytes
		if moe != 0 {
			fp.TotalBytes += (fp.TotalBytes - fp.EmbeddingBytes - fp.NormBytes) * moe / fp.LinearParams
			fp.LinearParams += moe
		}
		if want := fp.TotalBytes + bias + 4*q.TrainableParams; q.Memory.Weights != want && (moe == 0 || math.Abs(float64(q.Memory.Weights-want)) > 1e-2*float64(want)) {
			t.Errorf("%s: qlora weights %d, quant.Footprint implies %d", name, q.Memory.Weights, want)
		}
		if est[plan.QLoRA].Memory.Weights >= est[plan.LoRA].Memory.Weights || est[plan.LoRA].Memory.Total >= est[plan.Full].Memory.Total {
			t.Errorf("%s: expected qlora < lora weights and lora < full memory", name)
		}
		if est[plan.LoRA].StepFLOPs >= est[plan.Full].StepFLOPs {
			t.Errorf("%s: lora step %g FLOPs not below full's %g", name, est[plan.LoRA].StepFLOPs, est[plan.Full].StepFLOPs)
		}
		bf, err := plan.EstimateMethod(cfg, row(t, plan.LoRA), plan.Options{Batch: 2, Seq: 512, Storage: model.BF16, Steps: 3})
		if err != nil {
			t.Fatal(err)
		}
		if d := est[plan.LoRA].Memory.Weights - bf.Memory.Weights; d != 2*fp.LinearParams {
			t.Errorf("%s: bf16 storage saves %d bytes, want 2·%d", name, d, fp.LinearParams)
		}
	}
}

// TestFullStepFLOPs compares the full fine-tuning count with the usual
// 6·params·tokens plus attention (12·layers·T²·d per sequence, halved for
// causal masking) and one more head product for its weight gradient's
// tied share, within 2%.
func TestFullStepFLOPs(t *testing.T) {
	cfg := mustShape(t, "smollm2-135m")
	const B, T = 2, 256
	e, err := plan.EstimateMethod(cfg, row(t, plan.Full), plan.Options{Batch: B, Seq: T})
	if err != nil {
		t.Fatal(err)
	}
	tokens := float64(B * T)
	attn := 12 * float64(cfg.Layers) * float64(T) * float64(T+1) / 2 * float64(cfg.QDim()) * B
	// The embedding lookup does no multiply; the tied head does 6 per token.
	want := 6*tokens*float64(cfg.Params()-int64(cfg.Vocab*cfg.Hidden)) + attn + 6*float64(B*(T-1))*float64(cfg.Vocab*cfg.Hidden)
	if rel := math.Abs(e.StepFLOPs-want) / want; rel > 0.02 {
		t.Errorf("full step %g FLOPs, want about %g (%.1f%% off)", e.StepFLOPs, want, 100*rel)
	}
}

// TestRecommend follows the rule of thumb through data sizes and memory.
func TestRecommend(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name    string
		shape   string
		samples int64
		ram     int64
		seq     int
		want    plan.Method
		ckpt    bool
	}{
		{"large data, ample RAM", "smollm2-135m", 500_000, 64 * gib, 512, plan.Full, false},
		{"large data, full only with ckpt", "smollm2-135m", 500_000, 6 * gib, 1024, plan.Full, true},
		{"large data, limited RAM", "qwen3-0.6b", 500_000, 10 * gib, 512, plan.LoRA, false},
		{"medium data", "smollm2-135m", 50_000, 64 * gib, 512, plan.LoRA, false},
		{"medium data, lora needs ckpt", "qwen3-0.6b", 50_000, 7 * gib, 1024, plan.LoRA, true},
		{"medium data, only qlora", "qwen3-0.6b", 50_000, 3 * gib, 256, plan.QLoRA, true},
		{"small data", "smollm2-135m", 2_000, 64 * gib, 512, plan.LoRA, false},
		{"few-shot data", "smollm2-135m", 500, 64 * gib, 512, plan.IA3, false},
		{"unknown size", "tiny", -1, 64 * gib, 512, plan.LoRA, false},
		{"nothing fits", "qwen3-0.6b", 2_000, gib / 2, 1024, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := plan.Make(plan.Request{Model: tt.shape, Config: mustShape(t, tt.shape), Samples: tt.samples, RAM: tt.ram,
				Options: plan.Options{Seq: tt.seq, GFLOPS: 100, NF4GFLOPS: 60}, Rows: method.PlanRows()})
			if err != nil {
				t.Fatal(err)
			}
			if p.Recommended != tt.want || p.Checkpoint != tt.ckpt {
				t.Errorf("recommended %q (checkpoint %v), want %q (%v); reasons:\n%s", p.Recommended, p.Checkpoint, tt.want, tt.ckpt, strings.Join(p.Reasons, "\n"))
			}
			// Never something that does not fit.
			if v := verdict(p, p.Recommended); v != nil {
				mem := v.Memory.Total
				if p.Checkpoint {
					mem = v.MemoryCheckpoint.Total
				}
				if mem > int64(plan.Usable*float64(tt.ram)) {
					t.Errorf("recommended %s needs %d bytes of %d usable", p.Recommended, mem, p.Budget)
				}
			}
			var tbl, js bytes.Buffer
			if err := p.WriteTable(&tbl); err != nil {
				t.Fatal(err)
			}
			if err := p.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			var back plan.Plan
			if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Recommended != p.Recommended || len(back.Methods) != len(method.PlanRows()) {
				t.Errorf("JSON round trip: %v, recommended %q, %d methods", err, back.Recommended, len(back.Methods))
			}
			if !strings.Contains(tbl.String(), "recommended: ") || strings.Count(tbl.String(), "\n") < len(method.PlanRows())+4 {
				t.Errorf("table:\n%s", tbl.String())
			}
		})
	}
	if _, err := plan.Make(plan.Request{Config: mustShape(t, "tiny"), Rows: method.PlanRows()}); err == nil {
		t.Error("Make without RAM: no error")
	}
	if _, err := plan.Make(plan.Request{Config: mustShape(t, "tiny"), RAM: 64 * gib}); err == nil {
		t.Error("Make without rows: no error")
	}
}

// TestSmallDataLighterChoices: under 10k samples the plan proposes a small
// plan.LoRA rank and names the lighter methods with their sizes; under 1k it
// recommends plan.IA3 first. Each suggestion comes with its reason.
func TestSmallDataLighterChoices(t *testing.T) {
	const gib = 1 << 30
	for _, tt := range []struct {
		samples int64
		rank    int
		want    plan.Method
		reasons []string
	}{
		{5_000, plan.SmallDataRank, plan.LoRA, []string{"LoRA rank 8, not 16", "5000 samples cannot determine", "lighter methods suffice: ia3 (", "prompt-tuning (", "prefix-tuning ("}},
		{300, plan.FewShotDataRank, plan.IA3, []string{"few-shot", "IA3 trains only scaling vectors", "LoRA rank 4, not 16"}},
		{50_000, 0, plan.LoRA, nil},
	} {
		p, err := plan.Make(plan.Request{Model: "smollm2-135m", Config: mustShape(t, "smollm2-135m"), Samples: tt.samples, RAM: 64 * gib,
			Options: plan.Options{Seq: 256, GFLOPS: 100, NF4GFLOPS: 60}, Rows: method.PlanRows()})
		if err != nil {
			t.Fatal(err)
		}
		all := strings.Join(p.Reasons, "\n")
		if p.Recommended != tt.want || p.SuggestedLoRARank != tt.rank {
			t.Errorf("%d samples: recommended %s rank %d, want %s rank %d\n%s", tt.samples, p.Recommended, p.SuggestedLoRARank, tt.want, tt.rank, all)
		}
		for _, r := range tt.reasons {
			if !strings.Contains(all, r) {
				t.Errorf("%d samples: reasons lack %q:\n%s", tt.samples, r, all)
			}
		}
	}
}

// TestMakeWithSomeRows: the caller chooses the rows; advice about a row it
// left out is skipped, and the plan still picks among those it gave.
func TestMakeWithSomeRows(t *testing.T) {
	rows := []plan.Row{row(t, plan.IA3), row(t, "bottleneck")}
	for _, samples := range []int64{-1, 300, 5_000, 50_000, 500_000} {
		p, err := plan.Make(plan.Request{Model: "tiny", Config: mustShape(t, "tiny"), Samples: samples, RAM: 64 << 30, Rows: rows})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Methods) != 2 || p.Recommended == "" || verdict(p, p.Recommended) == nil {
			t.Errorf("%d samples: %d rows, recommended %q\n%s", samples, len(p.Methods), p.Recommended, strings.Join(p.Reasons, "\n"))
		}
	}
}

// TestAdamStateBytes: float moments under compute.Adam8MinSize values or
// without 8-bit state; otherwise two codes a value of the tensor padded to
// whole blocks and two float32 scales a block.
func TestAdamStateBytes(t *testing.T) {
	tests := []struct {
		n     int64
		adam8 bool
		want  int64
	}{
		{0, true, 0},
		{100, false, 800},
		{4095, true, 8 * 4095},
		{4096, false, 8 * 4096},
		{4096, true, 2*4096 + 8*16},
		{4097, true, 2*(4096+256) + 8*17},
		{1 << 20, true, 2<<20 + 8*4096},
	}
	for _, tt := range tests {
		if got := plan.AdamStateBytes(tt.n, tt.adam8); got != tt.want {
			t.Errorf("AdamStateBytes(%d, %v) = %d, want %d", tt.n, tt.adam8, got, tt.want)
		}
	}
	// A whole model: the 8-bit state of full fine-tuning is about a
	// quarter of the float one (embeddings and projections are large).
	cfg := mustShape(t, "qwen3-0.6b")
	f, err := plan.EstimateMethod(cfg, row(t, plan.Full), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := plan.EstimateMethod(cfg, row(t, plan.Full), plan.Options{Adam8bit: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := float64(q.Memory.Optimizer) / float64(f.Memory.Optimizer); r < 0.25 || r > 0.26 {
		t.Errorf("qwen3-0.6b full: 8-bit state %d is %.4f of the float state %d, want 0.25–0.26", q.Memory.Optimizer, r, f.Memory.Optimizer)
	}
	if q.Memory.Total >= f.Memory.Total || q.Memory.Grads != f.Memory.Grads {
		t.Errorf("qwen3-0.6b full: 8-bit total %d, float %d; gradients %d vs %d", q.Memory.Total, f.Memory.Total, q.Memory.Grads, f.Memory.Grads)
	}
}
