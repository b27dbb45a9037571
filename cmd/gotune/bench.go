package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"gotune/compute/cpu"
	"gotune/model"
	"gotune/nn"
	"gotune/optim"
	"gotune/peft"
	"gotune/quant"
	"gotune/runlog"
)

// Measured FP32 peaks of the development machine (2 Zen3 cores with
// AVX2+FMA), against which GFLOP/s are reported.
const peakPerCore = 91.5

func emit(w io.Writer, v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(w, string(b))
}

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	train := fs.String("train", "", "time training steps: full, lora or qlora (default: kernels and forward)")
	shapeList := fs.String("shape", "", "comma-separated model shapes (default: all for forward; smollm2-135m for --train); known: "+strings.Join(model.ShapeNames(), ", "))
	batch := fs.Int("batch", 1, "sequences per step")
	seq := fs.Int("seq", 256, "tokens per sequence")
	steps := fs.Int("steps", 3, "timed steps (after one warm-up)")
	rank := fs.Int("lora-rank", 16, "LoRA rank for --train lora/qlora")
	kernels := fs.Bool("kernels", true, "include sgemm kernels (without --train)")
	ckptFlag := fs.Bool("checkpoint", false, "gradient checkpointing for --train")
	storage := fs.String("storage", "f32", "frozen weight storage for --train lora: f32 or bf16")
	prepack := fs.Bool("prepack", false, "keep frozen f32 weights pre-packed for the matrix kernel (--train lora; costs 2× their memory)")
	profile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	memory := fs.Bool("memory", false, "report resident memory of the frozen weights in f32, bf16, int8 and nf4 (default shape qwen3-0.6b)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	var shapes []string
	if *shapeList != "" {
		shapes = strings.Split(*shapeList, ",")
	}
	if *memory {
		if len(shapes) == 0 {
			shapes = []string{"qwen3-0.6b"}
		}
		for _, s := range shapes {
			if err := benchMemory(stdout, s); err != nil {
				return err
			}
		}
		return nil
	}
	if *train != "" {
		if len(shapes) == 0 {
			shapes = []string{"smollm2-135m"}
		}
		for _, s := range shapes {
			if err := benchTrain(stdout, *train, s, *batch, *seq, *steps, *rank, *ckptFlag, model.DType(*storage), *prepack); err != nil {
				return err
			}
		}
		return nil
	}
	if *kernels {
		benchGemm(stdout)
	}
	if len(shapes) == 0 {
		shapes = model.ShapeNames()
	}
	for _, s := range shapes {
		if err := benchForward(stdout, s, *batch, *seq, *steps); err != nil {
			return err
		}
	}
	return nil
}

func benchGemm(w io.Writer) {
	threads := []int{1, runtime.GOMAXPROCS(0)}
	impls := []cpu.Impl{cpu.ImplBuiltin}
	if cpu.BLASAvailable() {
		impls = append(impls, cpu.ImplBLAS)
	}
	const n = 1024
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i], b[i] = float32(i%7)*0.1, float32(i%5)*0.1
	}
	for _, impl := range impls {
		for _, th := range threads {
			run := func() { cpu.SgemmWith(impl, th, false, true, n, n, n, 1, a, n, b, n, 0, c, n) }
			run()
			reps := 0
			start := time.Now()
			for time.Since(start) < 700*time.Millisecond {
				run()
				reps++
			}
			gf := 2 * float64(n*n*n) * float64(reps) / time.Since(start).Seconds() / 1e9
			emit(w, map[string]any{"bench": fmt.Sprintf("sgemm_%s_%dt", impl, th), "value": round(gf), "unit": "GFLOP/s",
				"peak_pct": round(100 * gf / (peakPerCore * float64(th))), "size": n})
		}
	}
}

func round(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }

func randomBatch(vocab, b, t int) *model.Batch {
	ids := make([]int32, b*t)
	labels := make([]int32, b*t)
	x := uint32(12345)
	for i := range ids {
		x = x*1664525 + 1013904223
		ids[i] = int32(x>>8) % int32(vocab)
		labels[i] = ids[i]
	}
	return &model.Batch{B: b, T: t, IDs: ids, Labels: labels}
}

func benchForward(w io.Writer, shape string, b, t, steps int) error {
	cfg, err := model.Shape(shape)
	if err != nil {
		return err
	}
	m := model.New(cfg)
	m.RandomInit(1)
	batch := randomBatch(cfg.Vocab, b, t)
	ws := m.NewWorkspace()
	ws.Loss(batch)
	start := time.Now()
	for i := 0; i < steps; i++ {
		ws.Loss(batch)
	}
	el := time.Since(start).Seconds() / float64(steps)
	emit(w, map[string]any{"bench": "forward_tokens_per_s", "shape": shape, "batch": b, "seq": t,
		"value": round(float64(b*t) / el), "unit": "tokens/s", "params": cfg.Params()})
	return nil
}

func benchTrain(w io.Writer, method, shape string, b, t, steps, rank int, checkpoint bool, storage model.DType, prepack bool) error {
	cfg, err := model.Shape(shape)
	if err != nil {
		return err
	}
	m := model.New(cfg)
	m.RandomInit(1)
	var params []*nn.Param
	switch method {
	case "full":
		params = m.Params()
		for _, p := range params {
			p.SetTrainable(true)
		}
	case "lora", "qlora":
		if method == "qlora" {
			for _, l := range m.Linears() {
				q, err := quant.Quantize(l.W.Data, l.Out, l.In, quant.Options{Type: quant.NF4})
				if err != nil {
					return err
				}
				l.Q, l.W = q, nil
			}
		} else if storage == model.BF16 {
			for _, l := range m.Linears() {
				l.WBF16 = make([]uint16, len(l.W.Data))
				cpu.F32ToBF16(l.WBF16, l.W.Data)
				l.W = nil
			}
		}
		runtime.GC()
		set, err := peft.AttachLoRA(m, peft.LoRAConfig{R: rank, Alpha: float64(2 * rank), Targets: []string{"all"}}, 1)
		if err != nil {
			return err
		}
		params = set.Params()
		if prepack {
			for _, l := range m.Linears() {
				l.Prepack()
			}
		}
	default:
		return fmt.Errorf("--train %q: want full, lora or qlora", method)
	}
	opt, err := optim.NewAdamW([]optim.Group{{Params: params}}, optim.DefaultConfig())
	if err != nil {
		return err
	}
	batch := randomBatch(cfg.Vocab, b, t)
	ws := m.NewWorkspace()
	ws.Checkpoint = checkpoint
	step := func() float64 {
		opt.ZeroGrad()
		n := batch.TrainedTokens()
		sum, _ := ws.Step(batch, float32(1/float64(n)))
		optim.ClipGradNorm(params, 1)
		opt.Step(1e-4)
		return sum / float64(n)
	}
	step()
	start := time.Now()
	var loss float64
	times := make([]float64, steps)
	for i := 0; i < steps; i++ {
		t0 := time.Now()
		loss = step()
		times[i] = time.Since(t0).Seconds()
	}
	el := time.Since(start).Seconds() / float64(steps)
	sort.Float64s(times)
	mem, _ := runlog.ReadMem()
	emit(w, map[string]any{"bench": "train_tokens_per_s", "method": method, "shape": shape, "batch": b, "seq": t,
		"value": round(float64(b*t) / el), "unit": "tokens/s", "step_s": el, "loss": loss,
		// On shared machines the fastest step is the steadiest figure.
		"step_s_min": times[0], "step_s_median": times[len(times)/2], "best_tokens_per_s": round(float64(b*t) / times[0]),
		"peak_rss_mib": mem.Peak >> 20, "checkpoint": checkpoint, "threads": runtime.GOMAXPROCS(0), "prepack": prepack && method == "lora" && storage != model.BF16})
	return nil
}

// benchMemory builds a model with random weights, converts every projection
// to each storage type in turn, and reports the process's resident memory
// after freeing everything else: what the frozen weights really occupy.
func benchMemory(w io.Writer, shape string) error {
	cfg, err := model.Shape(shape)
	if err != nil {
		return err
	}
	kinds := []string{"f32", "bf16", "int8", "nf4"}
	for _, kind := range kinds {
		m := model.New(cfg)
		m.RandomInit(1)
		var linear int64
		for _, l := range m.Linears() {
			switch kind {
			case "bf16":
				l.WBF16 = make([]uint16, len(l.W.Data))
				cpu.F32ToBF16(l.WBF16, l.W.Data)
				l.W = nil
				linear += int64(2 * len(l.WBF16))
			case "int8", "nf4":
				qt := quant.Int8Row
				if kind == "nf4" {
					qt = quant.NF4
				}
				q, err := quant.Quantize(l.W.Data, l.Out, l.In, quant.Options{Type: qt})
				if err != nil {
					return err
				}
				l.Q, l.W = q, nil
				linear += int64(q.Bytes())
			default:
				linear += int64(4 * len(l.W.Data))
			}
		}
		debug.FreeOSMemory()
		mem, _ := runlog.ReadMem()
		emit(w, map[string]any{"bench": "weights_rss_mib", "shape": shape, "storage": kind, "value": mem.RSS >> 20, "unit": "MiB",
			"linear_mib": linear >> 20, "embedding_mib": int64(4*len(m.Embed.Data)) >> 20})
		runtime.KeepAlive(m)
	}
	return nil
}
