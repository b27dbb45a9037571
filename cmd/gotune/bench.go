package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gotune/compute"
	"gotune/method"
	"gotune/model"
	"gotune/nn"
	"gotune/optim"
	"gotune/peft"
	"gotune/plan"
	"gotune/quant"
	"gotune/runlog"
)

func emit(w io.Writer, v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(w, string(b))
}

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", `usage: gotune bench [flags]

Without --train: sgemm kernels and forward passes of named model shapes. With --train: timed
training steps (full, lora, qlora, prompt, prefix or adapter), optionally in turn with a PyTorch peer (--peer).`, args, stdout, stderr)
	train := fs.String("train", "", "time training steps: full, lora, qlora, prompt (20 virtual tokens), prefix (20) or adapter (bottleneck 64, Houlsby) (default: kernels and forward)")
	shapeList := fs.String("shape", "", "comma-separated model shapes (default: all for forward; smollm2-135m for --train); known: "+strings.Join(model.ShapeNames(), ", "))
	batch := fs.Int("batch", 1, "sequences per step")
	seq := fs.Int("seq", 256, "tokens per sequence")
	steps := fs.Int("steps", 3, "timed steps (after one warm-up)")
	rank := fs.Int("lora-rank", 16, "LoRA rank for --train lora/qlora")
	kernels := fs.Bool("kernels", true, "include sgemm kernels (without --train)")
	ckptFlag := fs.Bool("checkpoint", false, "gradient checkpointing for --train")
	storage := fs.String("storage", "f32", "frozen weight storage for --train lora: f32 or bf16 (on the CPU the bf16 weights are read in place, in 16 bits)")
	prepack := fs.Bool("prepack", false, "removed with the CPU workspace (an error if set)")
	profile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	memory := fs.Bool("memory", false, "report resident memory of the frozen weights in f32, bf16, int8 and nf4 (default shape qwen3-0.6b)")
	peer := fs.String("peer", "", "with --train: a peer benchmark command, run as `CMD SHAPE 1 BATCH SEQ STEPS` in turn with gotune's steps; it must print a JSON line with step_s, tokens_per_s and peak_rss_mib (as ../shared/bench/torch_lora.py does)")
	rounds := fs.Int("rounds", 3, "with --peer: interleaved rounds of peer and gotune")
	stage := fs.String("stage", "sft", "with --train: sft, or dpo (the batch's rows are pairs: an SFT step and a sigmoid DPO step with the adapter-off reference on the same tokens, in turn, and their ratio)")
	device := fs.String("device", "cpu", "the backend that runs forward passes and training steps: cpu (host is its old name) or cuda")
	dtype := fs.String("dtype", "bf16", "with --train: bf16 (mixed precision on a GPU; f32 over a bf16 base on the CPU) or f32")
	gpuProfile := fs.Bool("profile", false, "with --train: time every operation of one more step and report the time per kind (CPU backend or GPU)")
	optimName := fs.String("optim", "adamw_torch", "with --train: adamw_torch (float moments) or adamw_8bit (block-wise 8-bit moments)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if err := noPositionals(pos); err != nil {
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
	if *prepack {
		return errors.New("--prepack: removed with the CPU workspace it tuned; training steps now run on the compute backend (--device cpu or cuda)")
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
	be, release, err := openBackend(*device)
	if err != nil {
		return err
	}
	defer release()
	if *train == "" {
		if *kernels {
			benchGemm(stdout)
		}
		if len(shapes) == 0 {
			shapes = model.ShapeNames()
		}
		for _, s := range shapes {
			if err := benchForward(stdout, be, s, *batch, *seq, *steps); err != nil {
				return err
			}
		}
		return nil
	}
	dt, err := benchDType(be, *dtype)
	if err != nil {
		return err
	}
	if len(shapes) == 0 {
		shapes = []string{"smollm2-135m"}
		if _, onHost := be.(compute.HostBackend); !onHost {
			shapes = []string{"qwen3-0.6b"}
		}
	}
	st := model.DType(*storage)
	if st != model.F32 && st != model.BF16 {
		return fmt.Errorf("--storage %q: want f32 or bf16", *storage)
	}
	if st == model.BF16 && *train != "lora" {
		return fmt.Errorf("--storage bf16 is for --train lora (a frozen base beside an adapter), not %s", *train)
	}
	kind, err := optim.KindOf(*optimName)
	if err != nil || kind == optim.KindSGD {
		return fmt.Errorf("bench: --optim %q (want adamw_torch or adamw_8bit)", *optimName)
	}
	adam8 := kind == optim.KindAdamW8bit
	if *stage != "sft" {
		if *stage != "dpo" || *peer != "" {
			return fmt.Errorf("--stage %q: want sft, or dpo (without --peer)", *stage)
		}
		for _, s := range shapes {
			if err := benchDPO(stdout, be, dt, *train, s, *batch, *seq, *rank, *steps, *rounds, *ckptFlag, st); err != nil {
				return err
			}
		}
		return nil
	}
	for _, s := range shapes {
		if *peer == "" {
			line, err := benchDeviceShape(be, dt, *train, s, *batch, *seq, *rank, *steps, *gpuProfile, *ckptFlag, st, adam8)
			if err != nil {
				return err
			}
			emit(stdout, line)
			continue
		}
		tb, err := newTrainBench(be, dt, *train, s, *batch, *seq, *rank, *ckptFlag, st, adam8)
		if err != nil {
			return err
		}
		err = tb.versus(stdout, stderr, strings.Fields(*peer), *rounds, *steps)
		tb.close()
		if err != nil {
			return err
		}
	}
	return nil
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

// benchForward times the forward pass (the loss, no gradients) of a named
// shape with random weights on be.
func benchForward(w io.Writer, be compute.Backend, shape string, b, t, steps int) error {
	cfg, err := model.Shape(shape)
	if err != nil {
		return err
	}
	m := model.New(cfg)
	m.RandomInit(1)
	dm, err := model.NewDeviceModel(m, be, model.DeviceOptions{Compute: compute.ComputeType(be, false), Inference: true})
	if err != nil {
		return err
	}
	defer dm.Close()
	batch := randomBatch(cfg.Vocab, b, t)
	if _, _, err := dm.Loss(batch); err != nil { // warm-up
		return err
	}
	start := time.Now()
	for i := 0; i < steps; i++ {
		if _, _, err := dm.Loss(batch); err != nil {
			return err
		}
	}
	el := time.Since(start).Seconds() / float64(steps)
	emit(w, map[string]any{"bench": "forward_tokens_per_s", "device": be.Name(), "shape": shape, "batch": b, "seq": t,
		"value": round(float64(b*t) / el), "unit": "tokens/s", "params": cfg.Params()})
	return nil
}

// trainBench is a model, method and batch on a backend, ready to time
// training steps on.
type trainBench struct {
	method, shape string
	b, t, rank    int
	trainable     int
	checkpoint    bool
	storage       model.DType // the frozen base's storage on the host
	adam8         bool        // 8-bit AdamW moments
	stateBytes    int64       // the optimizer state as allocated (plan.AdamStateBytes)
	flops         float64     // estimated floating-point operations of one step
	planGPU       int64       // the planner's device memory of the step (allocator blocks); 0 on a host backend
	be            compute.Backend
	dt            compute.DType
	dm            *model.DeviceModel
	batch         *model.Batch
	// step runs one optimizer step and returns its loss.
	step func() (float64, error)
}

// benchModel builds a randomly initialised model of a named shape set up
// for a training method (full, lora, qlora, prompt, prefix, adapter: the
// planner's default sizes) and returns it with its
// trainable parameters and the planner's name for the method. storage
// BF16 keeps LoRA's frozen weights in bfloat16.
func benchModel(method, shape string, rank int, storage model.DType) (*model.Model, []*nn.Param, plan.Method, error) {
	cfg, err := model.Shape(shape)
	if err != nil {
		return nil, nil, "", err
	}
	pm := plan.LoRA
	m := model.New(cfg)
	m.RandomInit(1)
	var params []*nn.Param
	switch method {
	case "full":
		pm = plan.Full
		params = m.Params()
		for _, p := range params {
			p.SetTrainable(true)
		}
	case "lora", "qlora":
		store := quant.Options{Type: quant.F32}
		if method == "qlora" {
			pm = plan.QLoRA
			store.Type = quant.NF4
		} else if storage == model.BF16 {
			store.Type = quant.BF16
		}
		if err := m.StoreLinears(store); err != nil {
			return nil, nil, "", err
		}
		runtime.GC()
		set, err := peft.AttachLoRA(m, peft.LoRAConfig{R: rank, Alpha: float64(2 * rank), Targets: []string{"all"}}, 1)
		if err != nil {
			return nil, nil, "", err
		}
		params = set.Params()
	case "prompt":
		pm = plan.Prompt
		p, err := peft.AttachPromptTuning(m, peft.PromptTuningConfig{Virtual: 20}, 1)
		if err != nil {
			return nil, nil, "", err
		}
		params = p.Params()
	case "prefix":
		pm = plan.Prefix
		p, err := peft.AttachPrefix(m, peft.PrefixConfig{Virtual: 20}, 1)
		if err != nil {
			return nil, nil, "", err
		}
		params = p.Params()
	case "adapter":
		pm = "bottleneck"
		set, err := peft.AttachBottleneck(m, peft.BottleneckConfig{Size: 64}, 1)
		if err != nil {
			return nil, nil, "", err
		}
		params = set.Params()
	default:
		return nil, nil, "", fmt.Errorf("--train %q: want full, lora, qlora, prompt, prefix or adapter", method)
	}
	return m, params, pm, nil
}

// benchEstimate is the planner's estimate of a bench run of row pm: bench
// quantizes without double quantization.
func benchEstimate(cfg *model.Config, pm plan.Method, b, t, rank int, adam8 bool) (plan.Estimate, error) {
	row, err := method.PlanRow(string(pm))
	if err != nil {
		return plan.Estimate{}, err
	}
	return plan.EstimateMethod(cfg, row, plan.Options{Batch: b, Seq: t, LoRARank: rank, SingleQuant: true, Adam8bit: adam8})
}

// benchPlanGPU is the planner's prediction of the device memory a bench
// run of row pm allocates on a backend whose memory is not the host's (the
// CUDA allocator's blocks, what peak_mem_gib measures), attention fused
// where the backend fuses it; 0 on a host backend.
func benchPlanGPU(be compute.Backend, dt compute.DType, cfg *model.Config, pm plan.Method, b, t, rank int, checkpoint, adam8 bool) (int64, error) {
	if _, onHost := be.(compute.HostBackend); onHost {
		return 0, nil
	}
	row, err := method.PlanRow(string(pm))
	if err != nil {
		return 0, err
	}
	gopt := plan.GPUOptions{Compute: dt, Attention: plan.GPUAttnUnfused}
	if fa, ok := be.(compute.FusedAttention); ok {
		gopt.FusedFor = fa.AttnFusedFor // as the block will ask it
	}
	g, err := plan.EstimateGPU(cfg, row, method.GPURows()[pm], plan.Options{Batch: b, Seq: t, LoRARank: rank, SingleQuant: true, Adam8bit: adam8}, gopt)
	if err != nil {
		return 0, err
	}
	if checkpoint {
		return g.MemoryCheckpoint.Allocated, nil
	}
	return g.Memory.Allocated, nil
}

// benchDType is the compute type --dtype names on be (bf16 computes in
// f32 over the CPU's kernels).
func benchDType(be compute.Backend, dtype string) (compute.DType, error) {
	switch dtype {
	case "bf16":
		return compute.ComputeType(be, true), nil
	case "f32":
		return compute.F32, nil
	}
	return 0, fmt.Errorf("bench: --dtype %q (want bf16 or f32)", dtype)
}

// newTrainBench builds a model of a named shape set up for method on be
// (storage: its frozen weights' storage on the host, which a host backend
// reads where they lie) and runs one warm-up step.
func newTrainBench(be compute.Backend, dt compute.DType, method, shape string, b, t, rank int, checkpoint bool, storage model.DType, adam8 bool) (*trainBench, error) {
	m, params, pm, err := benchModel(method, shape, rank, storage)
	if err != nil {
		return nil, err
	}
	cfg := m.Cfg
	trainable := 0
	// The optimizer state, tensor by tensor as the device model allocates
	// it (the planner's count: the same for the same tensors).
	var stateBytes int64
	for _, p := range params {
		trainable += p.Len()
		stateBytes += plan.AdamStateBytes(int64(p.Len()), adam8)
	}
	dm, err := model.NewDeviceModel(m, be, model.DeviceOptions{Compute: dt, Checkpoint: checkpoint, HostViews: true, Adam8bit: adam8})
	if err != nil {
		return nil, err
	}
	if _, onHost := be.(compute.HostBackend); !onHost {
		// The host copy is no longer needed: drop it before timing. (A
		// host backend reads the frozen weights where they lie.)
		for _, p := range m.Params() {
			p.Data, p.Grad = nil, nil
		}
		for _, l := range m.Linears() {
			if l.F32() == nil {
				l.W = nil // bf16 or quantized
			}
		}
	}
	runtime.GC()
	est, err := benchEstimate(cfg, pm, b, t, rank, adam8)
	if err != nil {
		dm.Close()
		return nil, err
	}
	flops := est.StepFLOPs
	if checkpoint {
		flops = est.StepFLOPsCheckpoint
	}
	planGPU, err := benchPlanGPU(be, dt, cfg, pm, b, t, rank, checkpoint, adam8)
	if err != nil {
		dm.Close()
		return nil, err
	}
	tb := &trainBench{method: method, shape: shape, b: b, t: t, rank: rank, trainable: trainable, checkpoint: checkpoint, storage: storage, adam8: adam8, stateBytes: stateBytes,
		flops: flops, planGPU: planGPU, be: be, dt: dt, dm: dm, batch: randomBatch(cfg.Vocab, b, t)}
	opt := model.AdamWConfig{LR: 1e-4, WeightDecay: 0.01, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1}
	tb.step = func() (float64, error) {
		dm.ZeroGrad()
		n := tb.batch.TrainedTokens()
		sum, _, err := dm.Step(tb.batch, float32(1/float64(n)))
		if err != nil {
			return 0, err
		}
		_, err = dm.AdamW(opt) // synchronises (gradient norm)
		return sum / float64(n), err
	}
	if _, err := tb.step(); err != nil { // warm-up: kernels, buffers, page faults
		dm.Close()
		return nil, err
	}
	return tb, nil
}

// close releases the model's copy on the backend.
func (tb *trainBench) close() { tb.dm.Close() }

// run times steps training steps and returns the line to report: mean, best
// and median step, the best step's GFLOP/s and, on the CPU, its share of
// peak (the FMA throughput of all threads, measured right after).
func (tb *trainBench) run(steps int) (map[string]any, error) {
	if r, ok := tb.be.(interface{ ResetPeak() }); ok {
		r.ResetPeak()
	}
	start, cpu0 := time.Now(), cpuSeconds()
	var loss float64
	times := make([]float64, steps)
	for i := range steps {
		t0 := time.Now()
		var err error
		if loss, err = tb.step(); err != nil {
			return nil, err
		}
		times[i] = time.Since(t0).Seconds()
	}
	wall := time.Since(start).Seconds()
	cpuUsed := cpuSeconds() - cpu0
	busy := cpuUsed / wall // cores kept busy on average
	el := wall / float64(steps)
	sort.Float64s(times)
	mem, _ := runlog.ReadMem()
	threads := runtime.GOMAXPROCS(0)
	gf := tb.flops / times[0] / 1e9
	st := tb.dm.MemStats()
	line := map[string]any{"bench": "train_tokens_per_s", "device": tb.be.Name(), "dtype": tb.dt.String(), "method": tb.method, "shape": tb.shape, "storage": string(tb.storage),
		"optim": map[bool]string{false: "adamw_torch", true: "adamw_8bit"}[tb.adam8], "optimizer_state_mib": float64(tb.stateBytes) / (1 << 20),
		"batch": tb.b, "seq": tb.t, "lora_rank": tb.rank, "trainable": tb.trainable,
		"value": round(float64(tb.b*tb.t) / el), "unit": "tokens/s", "step_s": el, "loss": loss,
		// On shared machines the fastest step is the steadiest figure.
		"step_s_min": times[0], "step_s_median": times[len(times)/2], "best_tokens_per_s": round(float64(tb.b*tb.t) / times[0]),
		"gflops": round(gf), "tflops": round(tb.flops / times[len(times)/2] / 1e12), "busy_cores": round(busy),
		"peak_mem_gib": float64(st.Peak) / (1 << 30),
		// CPU time a step used: on a loaded machine steadier than its wall time.
		"cpu_s_step": cpuUsed / float64(steps), "peak_rss_mib": mem.Peak >> 20, "checkpoint": tb.checkpoint, "threads": threads}
	if tb.planGPU > 0 {
		// The planner's prediction of peak_mem_gib (the CUDA context is
		// what device_used_gib holds beyond the peak).
		line["plan_gpu_mib"] = round(float64(tb.planGPU) / (1 << 20))
	}
	if _, onHost := tb.be.(compute.HostBackend); onHost {
		if peak := cpuPeakGFLOPS(threads); peak > 0 {
			line["peak_gflops"], line["peak_pct"] = round(peak), round(100*gf/peak)
		}
	}
	return line, nil
}

// cpuSeconds is the CPU time (user and system) this process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// peerResult is what a peer benchmark prints.
type peerResult struct {
	StepS      float64 `json:"step_s"`
	TokensPerS float64 `json:"tokens_per_s"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

// versus runs the peer command and gotune's steps in turn, rounds times, so
// that both see the same state of a shared machine, and reports each round
// and a summary: the speedup of each round (mean step against mean step),
// of the best rounds of each side, and the ratio of peak resident memory.
// The peer gets OpenBLAS's thread count (GOMAXPROCS) and core type (see
// openBLASCoreType) unless the environment sets them.
func (tb *trainBench) versus(w, stderr io.Writer, peer []string, rounds, steps int) error {
	env := os.Environ()
	if os.Getenv("OPENBLAS_NUM_THREADS") == "" {
		env = append(env, fmt.Sprintf("OPENBLAS_NUM_THREADS=%d", runtime.GOMAXPROCS(0)))
	}
	if ct := openBLASCoreType(); ct != "" && os.Getenv("OPENBLAS_CORETYPE") == "" {
		env = append(env, "OPENBLAS_CORETYPE="+ct)
	}
	var ratios []float64
	bestPeer, bestOurs, peerRSS := math.Inf(1), math.Inf(1), 0.0
	var oursRSS any
	for r := range rounds {
		args := append(append([]string(nil), peer[1:]...), tb.shape, "1", strconv.Itoa(tb.b), strconv.Itoa(tb.t), strconv.Itoa(steps))
		cmd := exec.Command(peer[0], args...)
		cmd.Env, cmd.Stderr = env, stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("peer %s: %w", strings.Join(cmd.Args, " "), err)
		}
		p, err := lastPeerLine(out)
		if err != nil {
			return fmt.Errorf("peer %s: %w", strings.Join(cmd.Args, " "), err)
		}
		line, err := tb.run(steps)
		if err != nil {
			return err
		}
		ours := line["step_s"].(float64)
		ratio := p.StepS / ours
		ratios = append(ratios, ratio)
		// The peer reports a mean over its steps; compare like with like.
		bestPeer, bestOurs = min(bestPeer, p.StepS), min(bestOurs, ours)
		peerRSS, oursRSS = max(peerRSS, p.PeakRSSMiB), line["peak_rss_mib"]
		line["bench"], line["round"] = "train_vs_peer", r+1
		line["peer_step_s"], line["peer_tokens_per_s"], line["peer_peak_rss_mib"] = p.StepS, p.TokensPerS, p.PeakRSSMiB
		line["speedup"] = math.Round(ratio*100) / 100
		emit(w, line)
	}
	sort.Float64s(ratios)
	summary := map[string]any{"bench": "train_vs_peer_summary", "method": tb.method, "shape": tb.shape, "batch": tb.b, "seq": tb.t,
		"rounds": rounds, "speedup_median": math.Round((ratios[(len(ratios)-1)/2]+ratios[len(ratios)/2])*50) / 100,
		"speedup_min": math.Round(ratios[0]*100) / 100, "speedup_max": math.Round(ratios[len(ratios)-1]*100) / 100,
		"speedup_best_rounds": math.Round(bestPeer/bestOurs*100) / 100,
		"peak_rss_mib":        oursRSS, "peer_peak_rss_mib": peerRSS}
	if mib, ok := oursRSS.(uint64); ok && peerRSS > 0 {
		summary["rss_ratio"] = math.Round(float64(mib)/peerRSS*100) / 100
	}
	emit(w, summary)
	return nil
}

// lastPeerLine parses the last JSON line of a peer's output.
func lastPeerLine(out []byte) (peerResult, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var p peerResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &p); err != nil {
		return p, fmt.Errorf("its last output line is not JSON: %q", lines[len(lines)-1])
	}
	if p.StepS <= 0 {
		return p, fmt.Errorf("its output %q has no positive step_s", lines[len(lines)-1])
	}
	return p, nil
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
		typ, err := quant.ParseType(kind)
		if err != nil {
			return err
		}
		m := model.New(cfg)
		m.RandomInit(1)
		if err := m.StoreLinears(quant.Options{Type: typ}); err != nil {
			return err
		}
		var linear int64
		for _, l := range m.Linears() {
			linear += l.W.Bytes()
		}
		debug.FreeOSMemory()
		mem, _ := runlog.ReadMem()
		emit(w, map[string]any{"bench": "weights_rss_mib", "shape": shape, "storage": kind, "value": mem.RSS >> 20, "unit": "MiB",
			"linear_mib": linear >> 20, "embedding_mib": int64(4*len(m.Embed.Data)) >> 20})
		runtime.KeepAlive(m)
	}
	return nil
}
