package method

import (
	"fmt"
	"testing"

	"gotune/compute"
	"gotune/compute/ref"
	"gotune/model"
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
func TestGPUPlanMatchesRef(t *testing.T) {
	shapes := []string{"ref-qwen3", "ref-llama", "ref-qwen2", "tiny"}
	if testing.Short() {
		shapes = shapes[:2]
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
		{name: "f32", f32: true, rows: []plan.Method{plan.Full, plan.LoRA, plan.QLoRA, plan.Prefix}},
	}
	for _, name := range shapes {
		for _, v := range variants {
			for _, row := range PlanRows() {
				if v.rows != nil && !containsMethod(v.rows, row.Method) {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s/%s", name, row.Method, v.name), func(t *testing.T) {
					cfg, err := model.Shape(name)
					if err != nil {
						t.Fatal(err)
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
					peak, err := refStepPeak(cfg, row.Method, o, dt, v.ckpt, v.unfused, v.adam8)
					if err != nil {
						t.Fatal(err)
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

// refStepPeak builds a model of cfg set up for planner row method, copies it
// to a fresh reference backend in bf16 compute and returns the backend's
// peak after one step and one AdamW update in compute type dt.
func refStepPeak(cfg *model.Config, method plan.Method, o plan.Options, dt compute.DType, ckpt, unfused, adam8 bool) (int64, error) {
	m := model.New(cfg)
	m.RandomInit(1)
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
