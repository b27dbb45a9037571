package method

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
	"gotune/model"
	"gotune/nn"
	"gotune/peft"
	"gotune/plan"
	"gotune/quant"
)

// attach prepares m for a planner row as gotune's trainer and bench do,
// and returns the trained parameters. o has every size set.
func attach(m *model.Model, row plan.Method, o plan.Options) ([]*nn.Param, error) {
	adapter := func(a peft.Method, err error) ([]*nn.Param, error) {
		if err != nil {
			return nil, err
		}
		return a.Params(), nil
	}
	var ps []*nn.Param
	switch row {
	case "full":
		ps = m.Params()
	case "freeze":
		// The planner's setting: every module of the last layers.
		return freezeParams(m, o.FreezeLayers, []string{"all"}, nil)
	case "lora", "dora", "qlora-nf4":
		if row == "qlora-nf4" {
			if err := m.StoreLinears(quant.Options{Type: quant.NF4, DoubleQuant: !o.SingleQuant}); err != nil {
				return nil, err
			}
		}
		return adapter(peft.AttachLoRA(m, peft.LoRAConfig{R: o.LoRARank, Alpha: float64(2 * o.LoRARank), Targets: []string{"all"}, DoRA: row == "dora"}, 1))
	case "prompt-tuning":
		return adapter(peft.AttachPromptTuning(m, peft.PromptTuningConfig{Virtual: o.Virtual, Init: "RANDOM"}, 1))
	case "p-tuning":
		return adapter(peft.AttachPTuning(m, peft.PTuningConfig{Virtual: o.Virtual}, 1))
	case "prefix-tuning":
		return adapter(peft.AttachPrefix(m, peft.PrefixConfig{Virtual: o.Virtual}, 1))
	case "ia3":
		return adapter(peft.AttachIA3(m, peft.IA3Config{}, 1))
	case "bottleneck":
		return adapter(peft.AttachBottleneck(m, peft.BottleneckConfig{Size: o.BottleneckSize}, 1))
	default:
		return nil, fmt.Errorf("no attach for planner row %q: add it to this test", row)
	}
	for _, p := range ps {
		p.SetTrainable(true)
	}
	return ps, nil
}

func heapAlloc() int64 {
	// Two collections empty the sync.Pools (the matrix kernel's packing
	// buffers, quant's panels): pooled memory is process-wide, counted with
	// the runtime, and would otherwise come and go with the collector.
	runtime.GC()
	runtime.GC()
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	return int64(s.HeapAlloc)
}

// TestLiveHeapMatchesModel trains every planner row for two steps in this
// process and compares the live heap (after a collection) with the estimate's
// weights + gradients + optimizer + activations: the buffer-by-buffer model
// itself, without the runtime allowance. Full fine-tuning also runs with
// 8-bit AdamW (optim adamw_8bit), whose state is a quarter of the float
// one's: a third of the run's memory at these sizes.
//
// The run is the CPU backend's (the trainer's path): plan models the
// block's kept activations, its shared scratch and the backend's attention
// scratch.
func TestLiveHeapMatchesModel(t *testing.T) {
	shapes := []string{"tiny", "ref-qwen2", "ref-qwen3", "ref-llama"}
	if testing.Short() {
		shapes = shapes[:1]
	}
	for _, name := range shapes {
		type run struct {
			row   plan.Row
			adam8 bool
		}
		var runs []run
		for _, row := range PlanRows() {
			runs = append(runs, run{row, false})
			if row.Method == plan.Full {
				runs = append(runs, run{row, true})
			}
		}
		for _, rn := range runs {
			row, method := rn.row, rn.row.Method
			optim := map[bool]string{false: "adamw", true: "adamw_8bit"}[rn.adam8]
			for _, ckpt := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/%s/ckpt=%v", name, method, optim, ckpt), func(t *testing.T) {
					cfg, err := model.Shape(name)
					if err != nil {
						t.Fatal(err)
					}
					o := plan.Options{Batch: 2, Seq: 96, LoRARank: 8, Virtual: 10, BottleneckSize: 16, FreezeLayers: 2, Adam8bit: rn.adam8}
					ids := make([]int32, o.Batch*o.Seq)
					for i := range ids {
						ids[i] = int32(i*7919) % int32(cfg.Vocab)
					}
					b := &model.Batch{B: o.Batch, T: o.Seq, IDs: ids, Labels: ids}
					// The matrix kernel's packing buffers are process-wide
					// (estimated with the runtime, checked by the RSS test):
					// a throwaway run allocates them before measuring.
					if _, err := trainOnCPU(cfg, method, o, b, ckpt); err != nil {
						t.Fatal(err)
					}
					before := heapAlloc()
					r, err := trainOnCPU(cfg, method, o, b, ckpt)
					if err != nil {
						t.Fatal(err)
					}
					live := heapAlloc() - before
					ps := r.params
					runtime.KeepAlive(r)
					e, err := plan.EstimateMethod(cfg, row, o)
					if err != nil {
						t.Fatal(err)
					}
					var trained int64
					for _, p := range ps {
						trained += int64(p.Len())
					}
					if trained != e.TrainableParams {
						t.Errorf("trainable parameters: estimated %d, the method trains %d", e.TrainableParams, trained)
					}
					mem := e.Memory
					if ckpt {
						mem = e.MemoryCheckpoint
					}
					est := mem.Weights + mem.Grads + mem.Optimizer + mem.Activations
					// Bookkeeping (parameter structs, names, optimizer slots)
					// is left out of the model: allow 5% plus 512 KiB.
					diff := est - live
					t.Logf("live %d KiB, estimated %d KiB (%+d KiB, %+.1f%%)", live>>10, est>>10, diff>>10, 100*float64(diff)/float64(live))
					limit := live/20 + 512<<10
					if diff > limit || diff < -limit {
						t.Errorf("live heap %d KiB, estimate %d KiB: off by %+d KiB (limit ±%d KiB)", live>>10, est>>10, diff>>10, limit>>10)
					}
				})
			}
		}
	}
}

// cpuRun is a model trained on the CPU backend, kept alive for a heap
// measurement.
type cpuRun struct {
	m      *model.Model
	dm     *model.DeviceModel
	params []*nn.Param
}

// trainOnCPU builds a model of cfg set up for planner row method and runs
// two AdamW steps (8-bit ones with o.Adam8bit) of b on the CPU backend, as the trainer does (trainable
// parameters are views of the backend's, frozen weights read in place).
func trainOnCPU(cfg *model.Config, method plan.Method, o plan.Options, b *model.Batch, ckpt bool) (*cpuRun, error) {
	m := model.New(cfg)
	m.RandomInit(1)
	ps, err := attach(m, method, o)
	if err != nil {
		return nil, err
	}
	dm, err := model.NewDeviceModel(m, cputest.Open(), model.DeviceOptions{Compute: compute.F32, Checkpoint: ckpt, HostViews: true, Adam8bit: o.Adam8bit})
	if err != nil {
		return nil, err
	}
	for range 2 {
		dm.ZeroGrad()
		if _, _, err := dm.Step(b, 1e-3); err != nil {
			return nil, err
		}
		if _, err := dm.AdamW(model.AdamWConfig{LR: 1e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}); err != nil {
			return nil, err
		}
	}
	return &cpuRun{m: m, dm: dm, params: ps}, nil
}

// TestPlanOptimizerState checks every row's AdamW state against the
// tensors its method trains, counted one by one as model.DeviceModel
// allocates them: two float32 moments, or with 8-bit AdamW those of at
// least compute.Adam8MinSize values as codes and block scales. The shapes
// are small enough that each method has tensors on both sides of the
// threshold; the variants add the fused projections, sandwich norms,
// biases and a mixture of experts to the full row's list of tensors.
func TestPlanOptimizerState(t *testing.T) {
	type shape struct {
		name string
		cfg  *model.Config
		rows []plan.Method // nil: every row
	}
	var shapes []shape
	for _, name := range []string{"tiny", "ref-qwen2", "ref-qwen3", "ref-llama"} {
		cfg, err := model.Shape(name)
		if err != nil {
			t.Fatal(err)
		}
		shapes = append(shapes, shape{name, cfg, nil})
	}
	// The variants are for the model's own tensors (full and freeze tuning);
	// freeze's formula counts a dense layer, so it has no mixture of experts.
	variant := func(base, name string, rows []plan.Method, edit func(c *model.Config)) {
		cfg, err := model.Shape(base)
		if err != nil {
			t.Fatal(err)
		}
		edit(cfg)
		shapes = append(shapes, shape{name, cfg, rows})
	}
	variant("tiny", "fused-biased-sandwich", []plan.Method{plan.Full, "freeze"}, func(c *model.Config) {
		c.FusedQKV, c.FusedGateUp, c.SandwichNorms = true, true, true
		c.AttnBias, c.AttnOutBias, c.MLPBias = true, true, true
		c.TieEmbeddings = false
	})
	variant("moe-8x2", "small-moe", []plan.Method{plan.Full}, func(c *model.Config) {
		c.Vocab, c.Hidden, c.Intermediate, c.Layers, c.ExpertIntermediate = 512, 64, 128, 2, 96
		c.Heads, c.KVHeads, c.HeadDim = 2, 1, 32
	})
	// Sizes that make the adapters' matrices of tiny at least
	// compute.Adam8MinSize values (IA3's vectors are all smaller).
	o := plan.Options{Batch: 1, Seq: 16, LoRARank: 40, Virtual: 40, BottleneckSize: 40, FreezeLayers: 2}
	for _, sh := range shapes {
		for _, row := range PlanRows() {
			if sh.rows != nil && !slices.Contains(sh.rows, row.Method) {
				continue
			}
			t.Run(sh.name+"/"+string(row.Method), func(t *testing.T) {
				m := model.New(sh.cfg)
				ps, err := attach(m, row.Method, o)
				if err != nil {
					t.Fatal(err)
				}
				var f32, q8 int64
				small, large := 0, 0
				for _, p := range ps {
					n := int64(p.Len())
					f32 += 8 * n
					if n >= compute.Adam8MinSize {
						large++
						blocks := (n + compute.Adam8Block - 1) / compute.Adam8Block
						q8 += 2*blocks*compute.Adam8Block + 2*4*blocks // codes of the padded tensor, scales
					} else {
						small++
						q8 += 8 * n
					}
				}
				if sh.name == "tiny" && row.Method != plan.IA3 && large == 0 {
					t.Fatalf("no trained tensor of %d values or more: the 8-bit count is not exercised", compute.Adam8MinSize)
				}
				for _, c := range []struct {
					adam8 bool
					want  int64
				}{{false, f32}, {true, q8}} {
					oc := o
					oc.Adam8bit = c.adam8
					e, err := plan.EstimateMethod(sh.cfg, row, oc)
					if err != nil {
						t.Fatal(err)
					}
					for _, mem := range []plan.Memory{e.Memory, e.MemoryCheckpoint} {
						if mem.Optimizer != c.want {
							t.Errorf("adam8 %v: optimizer state %d bytes, the %d small and %d large tensors trained take %d", c.adam8, mem.Optimizer, small, large, c.want)
						}
					}
				}
			})
		}
	}
}

// PlanRows lists the table's rows in the order it always had, each with a
// footprint; PlanRow finds them by name (qlora for qlora-nf4).
func TestPlanRows(t *testing.T) {
	var names []string
	for _, r := range PlanRows() {
		names = append(names, string(r.Method))
		if r.Footprint == nil {
			t.Errorf("row %s has no footprint", r.Method)
		}
	}
	want := "full freeze lora dora qlora-nf4 prompt-tuning p-tuning prefix-tuning ia3 bottleneck"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("rows %s, want %s", got, want)
	}
	if r, err := PlanRow(" QLoRA"); err != nil || r.Method != plan.QLoRA {
		t.Errorf("PlanRow(qlora) = %s, %v", r.Method, err)
	}
	if _, err := PlanRow("adalora"); err == nil || !strings.Contains(err.Error(), "known: full, freeze") {
		t.Errorf("PlanRow(adalora): error %v", err)
	}
}
