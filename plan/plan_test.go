package plan

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"gotune/model"
	"gotune/quant"
)

func mustShape(t *testing.T, name string) *model.Config {
	t.Helper()
	c, err := model.Shape(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"16G", 16 << 30, false},
		{"16GiB", 16 << 30, false},
		{"16gb", 16 << 30, false},
		{"512M", 512 << 20, false},
		{"1.5T", 3 << 39, false},
		{"64K", 64 << 10, false},
		{"8", 8 << 30, false},
		{" 2 G", 2 << 30, false},
		{"", 0, true},
		{"lots", 0, true},
		{"16X", 0, true},
		{"-1G", 0, true},
		{"1e300T", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseMemTotal(t *testing.T) {
	b, err := os.ReadFile("testdata/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{string(b), 24684092 << 10, ""},
		{"MemFree: 1 kB\n", 0, "no MemTotal"},
		{"MemTotal: 12 MB\n", 0, "expected"},
		{"MemTotal: x kB\n", 0, "positive"},
	}
	for _, tt := range tests {
		got, err := ParseMemTotal(strings.NewReader(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseMemTotal(%q): error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMemTotal(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestCountRecords(t *testing.T) {
	dir := t.TempDir()
	pq := filepath.Join(dir, "rows.parquet")
	type row struct {
		Instruction string `parquet:"instruction"`
	}
	if err := parquet.WriteFile(pq, []row{{"a"}, {"b"}, {"c"}, {"d"}}); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(dir, "long.jsonl")
	line := `{"text":"` + strings.Repeat("x", 3<<20) + `"}`
	if err := os.WriteFile(long, []byte(line+"\n"+line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path    string
		want    int64
		wantErr string
	}{
		{"testdata/alpaca.jsonl", 3, ""},
		{"testdata/alpaca.json", 2, ""},
		{"testdata/text.txt", 3, ""},
		{pq, 4, ""},
		{long, 2, ""}, // lines longer than the read buffer
		{"testdata/object.json", 0, "expected a JSON array"},
		{"testdata/truncated.json", 0, "truncated.json: record 2"},
		{"testdata/meminfo", 0, "unknown dataset format"},
		{"testdata/missing.jsonl", 0, "missing.jsonl"},
	}
	for _, tt := range tests {
		got, err := CountRecords(tt.path)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CountRecords(%s): error %v, want one containing %q", tt.path, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CountRecords(%s) = %d, %v; want %d", tt.path, got, err, tt.want)
		}
	}
}

// TestEstimateInvariants checks relations that must hold for every shape
// and method, and the weight sizes against package quant's own footprint.
func TestEstimateInvariants(t *testing.T) {
	for _, name := range model.ShapeNames() {
		cfg := mustShape(t, name)
		o := Options{Batch: 2, Seq: 512, GFLOPS: 100, NF4GFLOPS: 50, Steps: 3}
		est := map[Method]Estimate{}
		for _, m := range Methods() {
			e, err := EstimateMethod(cfg, m, o)
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
			if m != Full && e.TrainableParams >= est[Full].TrainableParams {
				t.Errorf("%s/%s: %d trainable, not fewer than full's %d", name, m, e.TrainableParams, est[Full].TrainableParams)
			}
			mem := e.Memory
			if sum := mem.Weights + mem.Grads + mem.Optimizer + mem.Activations + mem.Runtime; mem.Total != max(sum, mem.Load) {
				t.Errorf("%s/%s: total %d is not max(parts %d, load %d)", name, m, mem.Total, sum, mem.Load)
			}
			if mem.Optimizer != 2*mem.Grads || mem.Grads != 4*e.TrainableParams {
				t.Errorf("%s/%s: gradients %d and AdamW state %d for %d trainable values", name, m, mem.Grads, mem.Optimizer, e.TrainableParams)
			}
		}
		if got := est[Full].TrainableParams; got != cfg.Params() {
			t.Errorf("%s: full trains %d, model has %d", name, got, cfg.Params())
		}
		if est[Full].Memory.Weights != 4*cfg.Params() {
			t.Errorf("%s: full weights %d bytes, want 4·%d", name, est[Full].Memory.Weights, cfg.Params())
		}
		// QLoRA's base is quant's footprint with f32 embeddings.
		fp, err := quant.Footprint(quant.ModelShape{Hidden: cfg.Hidden, Intermediate: cfg.Intermediate, Layers: cfg.Layers, Heads: cfg.Heads,
			HeadDim: cfg.HeadDim, KVHeads: cfg.KVHeads, Vocab: cfg.Vocab, TiedEmbeddings: cfg.TieEmbeddings, QKNorm: cfg.QKNorm},
			quant.Options{Type: quant.NF4, DoubleQuant: true}, quant.Options{Type: quant.F32})
		if err != nil {
			t.Fatal(err)
		}
		q := est[QLoRA]
		// quant's shape has no experts: an MoE model's expert weights are
		// the projections beyond its dense formula (shape.moeHeld), stored
		// like the others; scaling the footprint by their count is exact only
		// up to block rounding, hence 1% for MoE shapes.
		moe := shapeOf(cfg).moeHeld
		bias := est[Full].Memory.Weights - (fp.LinearParams+moe)*4 - fp.EmbeddingBytes - fp.NormBytes
		if moe != 0 {
			fp.TotalBytes += (fp.TotalBytes - fp.EmbeddingBytes - fp.NormBytes) * moe / fp.LinearParams
			fp.LinearParams += moe
		}
		if want := fp.TotalBytes + bias + 4*q.TrainableParams; q.Memory.Weights != want && (moe == 0 || math.Abs(float64(q.Memory.Weights-want)) > 1e-2*float64(want)) {
			t.Errorf("%s: qlora weights %d, quant.Footprint implies %d", name, q.Memory.Weights, want)
		}
		if est[QLoRA].Memory.Weights >= est[LoRA].Memory.Weights || est[LoRA].Memory.Total >= est[Full].Memory.Total {
			t.Errorf("%s: expected qlora < lora weights and lora < full memory", name)
		}
		if est[LoRA].StepFLOPs >= est[Full].StepFLOPs {
			t.Errorf("%s: lora step %g FLOPs not below full's %g", name, est[LoRA].StepFLOPs, est[Full].StepFLOPs)
		}
		bf, err := EstimateMethod(cfg, LoRA, Options{Batch: 2, Seq: 512, Storage: model.BF16, Steps: 3})
		if err != nil {
			t.Fatal(err)
		}
		if d := est[LoRA].Memory.Weights - bf.Memory.Weights; d != 2*fp.LinearParams {
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
	e, err := EstimateMethod(cfg, Full, Options{Batch: B, Seq: T})
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

func TestGCHeadroom(t *testing.T) {
	tests := []struct {
		live, perStep, steps int64
		gogc                 int
		want                 int64
	}{
		{1000, 10, 5, 100, 50},     // short run: what was made
		{1000, 10, 500, 100, 1000}, // capped at GOGC% of live
		{1000, 10, 0, 100, 1000},   // long run
		{1000, 10, 0, 50, 500},
		{1000, 10, 7, -1, 70}, // collection off
	}
	for _, tt := range tests {
		if got := gcHeadroom(tt.live, tt.perStep, tt.steps, tt.gogc); got != tt.want {
			t.Errorf("gcHeadroom(%+v) = %d, want %d", tt, got, tt.want)
		}
	}
}

func TestEstimateRejectsBadInput(t *testing.T) {
	cfg := mustShape(t, "tiny")
	bad := *cfg
	bad.Hidden = 0
	tests := []struct {
		cfg  *model.Config
		m    Method
		o    Options
		want string
	}{
		{cfg, "sft", Options{}, "unknown method"},
		{cfg, LoRA, Options{Batch: -1}, "negative"},
		{cfg, LoRA, Options{Storage: "fp8"}, "storage"},
		{&bad, LoRA, Options{}, "non-positive"},
		{nil, LoRA, Options{}, "non-positive"},
	}
	for _, tt := range tests {
		if _, err := EstimateMethod(tt.cfg, tt.m, tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("EstimateMethod(%s, %+v): error %v, want %q", tt.m, tt.o, err, tt.want)
		}
	}
	if _, err := ParseMethod("qlora"); err != nil {
		t.Error(err)
	}
	if _, err := ParseMethod("adalora"); err == nil {
		t.Error("ParseMethod(adalora): no error")
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
		want    Method
		ckpt    bool
	}{
		{"large data, ample RAM", "smollm2-135m", 500_000, 64 * gib, 512, Full, false},
		{"large data, full only with ckpt", "smollm2-135m", 500_000, 5 * gib, 1024, Full, true},
		{"large data, limited RAM", "qwen3-0.6b", 500_000, 10 * gib, 512, LoRA, false},
		{"medium data", "smollm2-135m", 50_000, 64 * gib, 512, LoRA, false},
		{"medium data, lora needs ckpt", "qwen3-0.6b", 50_000, 7 * gib, 1024, LoRA, true},
		{"medium data, only qlora", "qwen3-0.6b", 50_000, 3 * gib, 256, QLoRA, true},
		{"small data", "smollm2-135m", 2_000, 64 * gib, 512, LoRA, false},
		{"few-shot data", "smollm2-135m", 500, 64 * gib, 512, IA3, false},
		{"unknown size", "tiny", -1, 64 * gib, 512, LoRA, false},
		{"nothing fits", "qwen3-0.6b", 2_000, gib / 2, 1024, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Make(Request{Model: tt.shape, Config: mustShape(t, tt.shape), Samples: tt.samples, RAM: tt.ram,
				Options: Options{Seq: tt.seq, GFLOPS: 100, NF4GFLOPS: 60}})
			if err != nil {
				t.Fatal(err)
			}
			if p.Recommended != tt.want || p.Checkpoint != tt.ckpt {
				t.Errorf("recommended %q (checkpoint %v), want %q (%v); reasons:\n%s", p.Recommended, p.Checkpoint, tt.want, tt.ckpt, strings.Join(p.Reasons, "\n"))
			}
			// Never something that does not fit.
			if v := p.verdict(p.Recommended); v != nil {
				mem := v.Memory.Total
				if p.Checkpoint {
					mem = v.MemoryCheckpoint.Total
				}
				if mem > int64(Usable*float64(tt.ram)) {
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
			var back Plan
			if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Recommended != p.Recommended || len(back.Methods) != len(Methods()) {
				t.Errorf("JSON round trip: %v, recommended %q, %d methods", err, back.Recommended, len(back.Methods))
			}
			if !strings.Contains(tbl.String(), "recommended: ") || strings.Count(tbl.String(), "\n") < len(Methods())+4 {
				t.Errorf("table:\n%s", tbl.String())
			}
		})
	}
	if _, err := Make(Request{Config: mustShape(t, "tiny")}); err == nil {
		t.Error("Make without RAM: no error")
	}
}

// TestSmallDataLighterChoices: under 10k samples the plan proposes a small
// LoRA rank and names the lighter methods with their sizes; under 1k it
// recommends IA3 first. Each suggestion comes with its reason.
func TestSmallDataLighterChoices(t *testing.T) {
	const gib = 1 << 30
	for _, tt := range []struct {
		samples int64
		rank    int
		want    Method
		reasons []string
	}{
		{5_000, SmallDataRank, LoRA, []string{"LoRA rank 8, not 16", "5000 samples cannot determine", "lighter methods suffice: ia3 (", "prompt-tuning (", "prefix-tuning ("}},
		{300, FewShotDataRank, IA3, []string{"few-shot", "IA3 trains only scaling vectors", "LoRA rank 4, not 16"}},
		{50_000, 0, LoRA, nil},
	} {
		p, err := Make(Request{Model: "smollm2-135m", Config: mustShape(t, "smollm2-135m"), Samples: tt.samples, RAM: 64 * gib,
			Options: Options{Seq: 256, GFLOPS: 100, NF4GFLOPS: 60}})
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
