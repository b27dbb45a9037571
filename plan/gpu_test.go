package plan

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"gotune/compute"
	"gotune/model"
)

// The GPU memory model's arithmetic on rows made here; method's
// TestGPUPlanMatchesRef checks the real rows against the reference
// backend's count of every allocation.

func gpuTestConfig(layers int) *model.Config {
	return &model.Config{ModelType: "llama", Vocab: 1000, Hidden: 64, Intermediate: 160, Layers: layers, Heads: 4, KVHeads: 2, HeadDim: 16, RMSNormEps: 1e-6}
}

// adapterRow trains one adapter tensor of n values (read through a bf16
// copy) beside a frozen model.
func adapterRow(n int64) (Row, GPURow) {
	r := Row{Method: "test", Footprint: func(s Shape, o Options) (Footprint, error) {
		base, format := s.Frozen(o)
		return Footprint{Trainable: n, Base: base, Format: format, Adapter: true}, nil
	}}
	return r, func(Shape, Options, GPUOptions) (GPUFootprint, error) {
		return GPUFootprint{Tensors: []GPUTensors{{Size: n, Count: 1}}}, nil
	}
}

func TestGPUCUDABlock(t *testing.T) {
	for _, c := range []struct{ in, want int64 }{
		{0, 512}, {1, 512}, {512, 512}, {513, 1024}, {1 << 20, 1 << 20},
		{1<<20 + 1, 2 << 20}, {2 << 20, 2 << 20}, {3 << 20, 4 << 20},
	} {
		if got := gpuCUDABlock(c.in); got != c.want {
			t.Errorf("block of %d bytes: %d, want %d", c.in, got, c.want)
		}
	}
}

// Unfused attention adds the scores and probabilities with their
// gradients, [B·H·T·T] each (float32 s and dp, bf16 p and ds), and nothing
// else; a fused head size over GPUFusedMaxHead falls back to them.
func TestEstimateGPUAttention(t *testing.T) {
	c := gpuTestConfig(2)
	row, dev := adapterRow(4096)
	o := Options{Batch: 2, Seq: 40}
	fused, err := EstimateGPU(c, row, dev, o, GPUOptions{Attention: GPUAttnFused})
	if err != nil {
		t.Fatal(err)
	}
	unfused, err := EstimateGPU(c, row, dev, o, GPUOptions{Attention: GPUAttnUnfused})
	if err != nil {
		t.Fatal(err)
	}
	if !fused.Fused || unfused.Fused {
		t.Fatalf("fused %v and %v, want true and false", fused.Fused, unfused.Fused)
	}
	scores := int64(2 * 4 * 40 * 40)
	want := scores * (4 + 2 + 4 + 2)
	for _, m := range [][2]GPUMemory{{fused.Memory, unfused.Memory}, {fused.MemoryCheckpoint, unfused.MemoryCheckpoint}} {
		if got := m[1].Requested - m[0].Requested; got != want {
			t.Errorf("unfused attention adds %d bytes, want %d", got, want)
		}
	}
	big := *c
	big.HeadDim = GPUFusedMaxHead * 2
	e, err := EstimateGPU(&big, row, dev, o, GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e.Fused {
		t.Errorf("head size %d estimated fused", big.HeadDim)
	}
}

// Checkpointing keeps one layer's activations instead of every layer's:
// the saving grows with the layers beyond the first, by the same amount
// each.
func TestEstimateGPUCheckpoint(t *testing.T) {
	row, dev := adapterRow(4096)
	saving := func(layers int) int64 {
		e, err := EstimateGPU(gpuTestConfig(layers), row, dev, Options{Batch: 2, Seq: 64}, GPUOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return e.Memory.Requested - e.MemoryCheckpoint.Requested
	}
	one, two, four := saving(1), saving(2), saving(4)
	if one != 0 || two <= 0 || four != 3*two {
		t.Errorf("checkpointing saves %d, %d and %d bytes with 1, 2 and 4 layers, want 0, s > 0 and 3s", one, two, four)
	}
}

// The optimizer's share: two float32 moments per (aligned) value, or with
// 8-bit state a byte per value of each moment and two float32 scales per
// 256 values; the masters and gradients stay float32 and the copy bf16.
func TestEstimateGPUOptimizer(t *testing.T) {
	c := gpuTestConfig(2)
	for _, tc := range []struct {
		n                    int64
		adam8                bool
		optimizer, masterEtc int64
	}{
		{n: 8192, optimizer: 2 * 4 * 8192, masterEtc: (4 + 4 + 2) * 8192},
		{n: 8192, adam8: true, optimizer: 2*8192 + 2*4*32, masterEtc: (4 + 4 + 2) * 8192},
		{n: 100, optimizer: 2 * 4 * 128, masterEtc: (4 + 4 + 2) * 128},                    // padded to 64
		{n: 100, adam8: true, optimizer: 2 * 4 * 128, masterEtc: (4 + 4 + 2) * 128},       // too small for 8 bits
		{n: 4100, adam8: true, optimizer: 2*4352 + 2*4*17, masterEtc: (4 + 4 + 2) * 4352}, // padded to 256
	} {
		row, dev := adapterRow(tc.n)
		without, err := EstimateGPU(c, row, dev, Options{Adam8bit: tc.adam8}, GPUOptions{})
		if err != nil {
			t.Fatal(err)
		}
		frozen, err := EstimateGPU(c, Row{Method: "none", Footprint: func(s Shape, o Options) (Footprint, error) {
			return Footprint{Adapter: true}, nil
		}}, func(Shape, Options, GPUOptions) (GPUFootprint, error) { return GPUFootprint{}, nil }, Options{Adam8bit: tc.adam8}, GPUOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := without.Memory.Requested - frozen.Memory.Requested; got != tc.optimizer+tc.masterEtc {
			t.Errorf("%d values (8-bit %v): %d bytes, want %d", tc.n, tc.adam8, got, tc.optimizer+tc.masterEtc)
		}
		m := without.Memory
		if m.Allocated != m.Weights+m.Grads+m.Optimizer+m.Activations || m.Total != m.Allocated+DefaultGPURuntime || m.Allocated < m.Requested {
			t.Errorf("breakdown %+v does not add up", m)
		}
	}
}

func TestEstimateGPUErrors(t *testing.T) {
	c := gpuTestConfig(2)
	row, _ := adapterRow(4096)
	_, wrong := adapterRow(4000)
	for _, tc := range []struct {
		name string
		c    *model.Config
		row  Row
		dev  GPURow
		g    GPUOptions
		want string
	}{
		{"footprints disagree", c, row, wrong, GPUOptions{}, "the GPU footprint trains 4000 values, the row 4096"},
		{"compute type", c, row, nil, GPUOptions{Compute: compute.I32}, "compute type"},
		{"no footprint", c, Row{Method: "x"}, nil, GPUOptions{}, "no footprint"},
		{"no model", &model.Config{}, row, nil, GPUOptions{}, "non-positive"},
	} {
		if _, err := EstimateGPU(tc.c, tc.row, tc.dev, Options{}, tc.g); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.want)
		}
	}
}

// A row without a GPU footprint is approximated from its CPU footprint,
// and says so.
func TestEstimateGPUFallback(t *testing.T) {
	row, _ := adapterRow(4096)
	e, err := EstimateGPU(gpuTestConfig(2), row, nil, Options{}, GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Notes) == 0 || !strings.Contains(e.Notes[0], "approximated") {
		t.Errorf("notes %q, want the approximation named", e.Notes)
	}
}

// Make decides FitsGPU and FitsGPUCheckpoint from the GPU estimate and
// prints it.
func TestMakeGPU(t *testing.T) {
	row, dev := adapterRow(4096)
	row.Method = LoRA
	c := gpuTestConfig(4)
	probe, err := EstimateGPU(c, row, dev, Options{Batch: 4, Seq: 256}, GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		gpu        int64
		fits, ckpt bool
	}{
		{"roomy", probe.Memory.Total, true, true},
		{"checkpointing only", probe.MemoryCheckpoint.Total, false, true},
		{"too small", probe.MemoryCheckpoint.Total - 1, false, false},
	} {
		p, err := Make(Request{Model: "test", Config: c, Samples: 5000, RAM: 64 << 30, GPUMem: tc.gpu, Rows: []Row{row},
			GPURows: map[Method]GPURow{LoRA: dev}, Options: Options{Batch: 4, Seq: 256, GFLOPS: 10}})
		if err != nil {
			t.Fatal(err)
		}
		v := p.Methods[0]
		if v.GPU == nil || v.FitsGPU == nil || v.FitsGPUCheckpoint == nil {
			t.Fatalf("%s: no GPU verdict", tc.name)
		}
		if *v.FitsGPU != tc.fits || *v.FitsGPUCheckpoint != tc.ckpt {
			t.Errorf("%s: fits %v, with checkpointing %v; want %v, %v", tc.name, *v.FitsGPU, *v.FitsGPUCheckpoint, tc.fits, tc.ckpt)
		}
		var table, js bytes.Buffer
		if err := p.WriteTable(&table); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"GPU mem", "GPU (ckpt)", "580 MiB for the CUDA context", "not yet calibrated"} {
			if !strings.Contains(table.String(), want) {
				t.Errorf("%s: table lacks %q:\n%s", tc.name, want, table.String())
			}
		}
		if err := p.WriteJSON(&js); err != nil {
			t.Fatal(err)
		}
		var back struct {
			Methods []struct {
				GPU struct {
					Memory struct{ Total int64 } `json:"memory"`
				} `json:"gpu"`
			}
		}
		if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Methods) != 1 || back.Methods[0].GPU.Memory.Total != probe.Memory.Total {
			t.Errorf("%s: JSON GPU total %+v (%v), want %d", tc.name, back.Methods, err, probe.Memory.Total)
		}
	}
}

// The CUDA backend's column sums hold ⌈rows/64⌉ partial rows for the
// length of one call, on top of everything else (SumSquares' 2560 bytes
// at least); the reference backend's count (Requested) has none of it.
func TestEstimateGPUTransient(t *testing.T) {
	c := gpuTestConfig(2)
	row, dev := adapterRow(4096)
	summing := func(Shape, Options, GPUOptions) (GPUFootprint, error) {
		return GPUFootprint{Tensors: []GPUTensors{{Size: 4096, Count: 1}}, Sums: [][2]int64{{6400, 1000}}}, nil
	}
	plain, err := EstimateGPU(c, row, dev, Options{}, GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sums, err := EstimateGPU(c, row, summing, Options{}, GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sums.Memory.Requested != plain.Memory.Requested {
		t.Errorf("column sums change the requested bytes: %d, %d", sums.Memory.Requested, plain.Memory.Requested)
	}
	if got, want := sums.Memory.Activations-plain.Memory.Activations, int64(782*512-2560); got != want {
		t.Errorf("a column sum of 6400×1000 adds %d bytes, want %d", got, want)
	}
}

// TestGPULinears lists the projections the device block holds outside the
// experts: split or fused, with a dense MLP or with experts.
func TestGPULinears(t *testing.T) {
	fused := gpuTestConfig(3)
	fused.FusedQKV, fused.FusedGateUp = true, true
	moe, err := model.Shape("moe-8x2")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  *model.Config
		want []GPULinear
	}{
		{"split", gpuTestConfig(3), []GPULinear{{64, 64, 3, 1, false}, {32, 64, 3, 1, false}, {32, 64, 3, 1, false}, {64, 64, 3, 0, false},
			{160, 64, 3, 2, true}, {160, 64, 3, 2, true}, {64, 160, 3, 0, true}}},
		{"fused", fused, []GPULinear{{128, 64, 3, 0, false}, {64, 64, 3, 0, false}, {320, 64, 3, 0, true}, {64, 160, 3, 0, true}}},
		{"experts", moe, []GPULinear{{512, 512, 8, 1, false}, {256, 512, 8, 1, false}, {256, 512, 8, 1, false}, {512, 512, 8, 0, false}}},
	} {
		got := shapeOf(c.cfg).GPULinears()
		if len(got) != len(c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: projection %d is %+v, want %+v", c.name, i, got[i], c.want[i])
			}
		}
	}
}

// TestEstimateGPUExperts: experts that run one after another hold their
// scratch for n rows instead of the n·topK routed rows of the grouped
// products, and the estimate says it is a bound; the weights are the same.
func TestEstimateGPUExperts(t *testing.T) {
	cfg, err := model.Shape("moe-8x2")
	if err != nil {
		t.Fatal(err)
	}
	row := Row{Method: "test", Footprint: func(s Shape, o Options) (Footprint, error) {
		base, format := s.Frozen(o)
		return Footprint{Base: base, Format: format, Adapter: true}, nil
	}}
	o := Options{Batch: 2, Seq: 64}
	est := func(serial bool) GPUEstimate {
		e, err := EstimateGPU(cfg, row, func(Shape, Options, GPUOptions) (GPUFootprint, error) {
			return GPUFootprint{SerialExperts: serial}, nil
		}, o, GPUOptions{Attention: GPUAttnFused})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	grouped, serial := est(false), est(true)
	if grouped.Memory.Weights != serial.Memory.Weights {
		t.Errorf("weights %d side by side, %d one after another", grouped.Memory.Weights, serial.Memory.Weights)
	}
	// x, yw, dy, dx [rows, h] and act, da, dg, du [rows, ei] in bf16.
	n, k, h, ei := int64(o.Batch*o.Seq), int64(cfg.TopK), int64(cfg.Hidden), int64(cfg.ExpertIntermediate)
	want := 2 * 4 * (n*k - n) * (h + ei)
	if got := grouped.Memory.Requested - serial.Memory.Requested; got != want {
		t.Errorf("side by side holds %d bytes more than one after another, want %d", got, want)
	}
	bound := func(e GPUEstimate) bool {
		return slices.ContainsFunc(e.Notes, func(s string) bool { return strings.Contains(s, "upper bound") })
	}
	if bound(grouped) || !bound(serial) {
		t.Errorf("notes %q side by side, %q one after another: want the bound named for the second only", grouped.Notes, serial.Notes)
	}
}
