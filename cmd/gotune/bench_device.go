package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"sort"
	"strings"
	"time"

	"gotune/compute"
	"gotune/model"
	"gotune/runlog"
)

// profiler is implemented by backends that can time their operations.
type profiler interface {
	StartProfile()
	StopProfile() []compute.OpTime
}

// memInfo is implemented by backends that can report the device's own view
// of its memory (what other tools such as nvidia-smi show).
type memInfo interface {
	FreeMemory() (free, total int64)
}

// benchDevice times training steps (forward, backward, clipping, AdamW) of a
// named shape on a GPU backend, with random weights and tokens.
func benchDevice(w io.Writer, device, dtype, method, shapeList string, b, t, rank, steps int, profile, checkpoint, adam8 bool) error {
	switch method {
	case "full", "lora", "qlora", "prompt", "prefix", "adapter":
	default:
		return fmt.Errorf("bench --device %s: --train full, lora, qlora, prompt, prefix or adapter", device)
	}
	dt := compute.BF16
	switch dtype {
	case "bf16":
	case "f32":
		dt = compute.F32
	default:
		return fmt.Errorf("bench: --dtype %q (want bf16 or f32)", dtype)
	}
	be, closeDev, err := openBackend(device)
	if err != nil {
		return err
	}
	defer closeDev()
	shapes := strings.Split(shapeList, ",")
	if shapeList == "" {
		shapes = []string{"qwen3-0.6b"}
	}
	for _, shape := range shapes {
		line, err := benchDeviceShape(be, dt, method, shape, b, t, rank, steps, profile, checkpoint, adam8)
		if err != nil {
			return err
		}
		emit(w, line)
	}
	return nil
}

func benchDeviceShape(be compute.Backend, dt compute.DType, method, shape string, b, t, rank, steps int, profile, checkpoint, adam8 bool) (map[string]any, error) {
	m, params, pm, err := benchModel(method, shape, rank, model.F32)
	if err != nil {
		return nil, err
	}
	cfg := m.Cfg
	trainable := 0
	var stateBytes int64 // the optimizer state's size in theory (no arena padding)
	for _, p := range params {
		n := p.Len()
		trainable += n
		if adam8 && n >= compute.Adam8MinSize {
			stateBytes += 2*int64(n) + 8*int64(compute.Adam8Blocks(n, compute.Adam8Block))
		} else {
			stateBytes += 8 * int64(n)
		}
	}
	dm, err := model.NewDeviceModel(m, be, model.DeviceOptions{Compute: dt, Checkpoint: checkpoint, HostViews: true, Adam8bit: adam8})
	if err != nil {
		return nil, err
	}
	defer dm.Close()
	// The host copy is no longer needed: drop it before timing.
	for _, p := range m.Params() {
		p.Data, p.Grad = nil, nil
	}
	for _, l := range m.Linears() {
		l.Q = nil
	}
	m = nil
	runtime.GC()
	est, err := benchEstimate(cfg, pm, b, t, rank)
	if err != nil {
		return nil, err
	}
	flops := est.StepFLOPs
	if checkpoint {
		flops = est.StepFLOPsCheckpoint
	}
	batch := randomBatch(cfg.Vocab, b, t)
	opt := model.AdamWConfig{LR: 1e-4, WeightDecay: 0.01, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1}
	var loss float64
	step := func() error {
		dm.ZeroGrad()
		n := batch.TrainedTokens()
		sum, _, err := dm.Step(batch, float32(1/float64(n)))
		if err != nil {
			return err
		}
		loss = sum / float64(n)
		_, err = dm.AdamW(opt) // synchronises (gradient norm)
		return err
	}
	if err := step(); err != nil { // warm-up: kernels, allocations
		return nil, err
	}
	if r, ok := be.(interface{ ResetPeak() }); ok {
		r.ResetPeak()
	}
	times := make([]float64, steps)
	start, cpu0 := time.Now(), cpuSeconds()
	for i := range times {
		t0 := time.Now()
		if err := step(); err != nil {
			return nil, err
		}
		times[i] = time.Since(t0).Seconds()
	}
	wall := time.Since(start).Seconds()
	cpuStep := (cpuSeconds() - cpu0) / float64(steps)
	sort.Float64s(times)
	mean := wall / float64(steps)
	st := dm.MemStats()
	rss, _ := runlog.ReadMem()
	line := map[string]any{"bench": "train_tokens_per_s", "device": be.Name(), "dtype": dt.String(), "method": method, "shape": shape,
		"batch": b, "seq": t, "lora_rank": rank, "trainable": trainable, "checkpoint": checkpoint,
		"value": round(float64(b*t) / mean), "unit": "tokens/s", "step_s": mean, "step_s_min": times[0], "step_s_median": times[len(times)/2],
		"loss": loss, "peak_mem_gib": float64(st.Peak) / (1 << 30), "tflops": round(flops / times[len(times)/2] / 1e12),
		// The process's own figures: for the host backend, comparable with
		// the CPU trainer's (the host copy of the model is dropped above).
		"peak_rss_mib": rss.Peak >> 20, "cpu_s_step": cpuStep,
		"optim": map[bool]string{false: "adamw_torch", true: "adamw_8bit"}[adam8], "optimizer_state_mib": float64(stateBytes) / (1 << 20)}
	if mi, ok := be.(memInfo); ok {
		free, total := mi.FreeMemory()
		line["device_used_gib"] = math.Round(float64(total-free)/(1<<30)*100) / 100
	}
	if p, ok := be.(profiler); ok && profile {
		// One more step with every operation timed by events.
		p.StartProfile()
		if err := step(); err != nil {
			return nil, err
		}
		var ops []map[string]any
		total := 0.0
		for _, o := range p.StopProfile() {
			total += o.MS
			ops = append(ops, map[string]any{"op": o.Op, "calls": o.Calls, "ms": math.Round(o.MS*1000) / 1000})
		}
		line["profile"] = ops
		line["profile_gpu_ms"] = math.Round(total*100) / 100
	}
	return line, nil
}
