package method

import (
	"fmt"
	"runtime"
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
		for _, l := range m.Layers[len(m.Layers)-o.FreezeLayers:] {
			ps = append(ps, l.InNorm, l.PostNorm)
			if l.QNorm != nil {
				ps = append(ps, l.QNorm, l.KNorm)
			}
			for _, lin := range l.Linears() {
				ps = append(ps, lin.F32())
				if lin.B != nil {
					ps = append(ps, lin.B)
				}
			}
		}
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
// itself, without the runtime allowance.
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
		for _, row := range PlanRows() {
			method := row.Method
			for _, ckpt := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/ckpt=%v", name, method, ckpt), func(t *testing.T) {
					cfg, err := model.Shape(name)
					if err != nil {
						t.Fatal(err)
					}
					o := plan.Options{Batch: 2, Seq: 96, LoRARank: 8, Virtual: 10, BottleneckSize: 16, FreezeLayers: 2}
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
// two AdamW steps of b on the CPU backend, as the trainer does (trainable
// parameters are views of the backend's, frozen weights read in place).
func trainOnCPU(cfg *model.Config, method plan.Method, o plan.Options, b *model.Batch, ckpt bool) (*cpuRun, error) {
	m := model.New(cfg)
	m.RandomInit(1)
	ps, err := attach(m, method, o)
	if err != nil {
		return nil, err
	}
	dm, err := model.NewDeviceModel(m, cputest.Open(), model.DeviceOptions{Compute: compute.F32, Checkpoint: ckpt, HostViews: true})
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
