package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"gotune/method"
	"gotune/model"
	"gotune/optim"
	"gotune/plan"
)

// runPlan estimates memory and step time of every fine-tuning method for a
// model, data size and machine, and recommends one.
func runPlan(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("plan", `usage: gotune plan [MODEL] [flags]

Estimates memory and step time of each fine-tuning method for a model (folder, Hub repo id, or
a named --shape) and a data size, and recommends one. MODEL may be given as the one positional
argument instead of --model; arguments and flags may come in any order.`, args, stdout, stderr)
	modelDir := fs.String("model", "", "model folder (config.json, *.safetensors)")
	shape := fs.String("shape", "", "named model shape instead of --model; known: "+strings.Join(model.ShapeNames(), ", "))
	dataset := fs.String("dataset", "", "dataset file whose records are counted (.json, .jsonl, .parquet, .txt)")
	samples := fs.Int64("samples", -1, "number of training samples (instead of --dataset)")
	ram := fs.String("ram", "", "memory available, e.g. 16G (default: MemTotal of this machine)")
	gpuMem := fs.String("gpu-mem", "", "GPU memory, e.g. 80G: adds each method's device memory on a GPU (--device cuda, bf16 compute) and whether it fits (default: no GPU)")
	gpuAttn := fs.String("gpu-attention", "long", "with --gpu-mem: where attention runs fused (FlashAttention kernels, heads up to 256, no [T, T] scores held): long (the CUDA backend's default: sequences of 2^28 scores and more), fused (always) or unfused (never)")
	batch := fs.Int("batch", 1, "sequences per step (per_device_train_batch_size)")
	seq := fs.Int("seq", 1024, "tokens per sequence (cutoff_len)")
	rank := fs.Int("lora-rank", 16, "LoRA/DoRA/QLoRA rank")
	virtual := fs.Int("virtual-tokens", 20, "num_virtual_tokens of prompt, P- and prefix tuning")
	bottleneck := fs.Int("bottleneck-size", 64, "bottleneck adapter size")
	storage := fs.String("storage", "f32", "storage of frozen projections for the adapter methods: f32 or bf16")
	gflops := fs.Float64("gflops", 0, "float32 matrix throughput in GFLOP/s (default: measured with a short sgemm probe)")
	nf4 := fs.Float64("nf4-gflops", 0, "throughput of products with NF4 weights (default: measured)")
	mexps := fs.Float64("mexps", 0, "exponentials per second in millions, for softmax and SiLU (default: measured)")
	optimName := fs.String("optim", "adamw_torch", "optimizer: adamw_torch (float moments) or adamw_8bit (adamw_bnb_8bit, paged_adamw_8bit: block-wise 8-bit moments)")
	steps := fs.Int64("steps", 0, "training steps of the run, for the Go collector's headroom (0: a long run)")
	stage := fs.String("stage", "sft", "training stage: sft, pt, or a preference stage (dpo, kto: each sample scores two sequences and a reference)")
	asJSON := fs.Bool("json", false, "print the plan as JSON")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *modelDir, err = positionalModel(*modelDir, pos); err != nil {
		return err
	}
	req := plan.Request{Samples: *samples, Stage: *stage, Rows: method.PlanRows(), GPURows: method.GPURows()}
	switch {
	case *modelDir != "" && *shape != "":
		return fmt.Errorf("give --model or --shape, not both")
	case *modelDir != "":
		if *modelDir, err = modelPath(*modelDir); err != nil {
			return err
		}
		if req.Config, err = model.LoadConfig(*modelDir); err != nil {
			return err
		}
		if req.Options.SourceBytes, err = plan.SourceBytes(*modelDir); err != nil {
			return err
		}
		req.Model = *modelDir
	case *shape != "":
		if req.Config, err = model.Shape(*shape); err != nil {
			return err
		}
		req.Model = *shape
	default:
		return fmt.Errorf("give --model DIR or --shape NAME")
	}
	if *dataset != "" {
		if *samples >= 0 {
			return fmt.Errorf("give --dataset or --samples, not both")
		}
		if req.Samples, err = plan.CountRecords(*dataset); err != nil {
			return err
		}
	}
	if *ram != "" {
		if req.RAM, err = plan.ParseSize(*ram); err != nil {
			return fmt.Errorf("--ram: %w", err)
		}
	} else if req.RAM, err = plan.MemTotal(); err != nil {
		return err
	}
	if *gpuMem != "" {
		if req.GPUMem, err = plan.ParseSize(*gpuMem); err != nil {
			return fmt.Errorf("--gpu-mem: %w", err)
		}
	}
	if req.GPU.Attention, err = plan.ParseGPUAttention(*gpuAttn); err != nil {
		return fmt.Errorf("--gpu-attention: %w", err)
	}
	switch *stage {
	case "sft", "pt", "dpo", "kto":
	default:
		return fmt.Errorf("--stage %q: want sft, pt, dpo or kto", *stage)
	}
	if *batch < 1 || *seq < 2 || *rank < 1 || *virtual < 1 || *bottleneck < 1 {
		return fmt.Errorf("--batch, --lora-rank, --virtual-tokens and --bottleneck-size must be at least 1 and --seq at least 2")
	}
	o := plan.Options{Batch: *batch, Seq: *seq, LoRARank: *rank, Virtual: *virtual, BottleneckSize: *bottleneck,
		Storage: model.DType(*storage), GFLOPS: *gflops, NF4GFLOPS: *nf4, Steps: *steps}
	if o.Storage != model.F32 && o.Storage != model.BF16 {
		return fmt.Errorf("--storage %q: want f32 or bf16", *storage)
	}
	switch k, err := optim.KindOf(*optimName); {
	case err != nil || k == optim.KindSGD:
		return fmt.Errorf("--optim %q: want adamw_torch or adamw_8bit", *optimName)
	case k == optim.KindAdamW8bit:
		o.Adam8bit = true
	}
	if g := os.Getenv("GOGC"); g != "" {
		if g == "off" {
			o.GOGC = -1
		} else if v, err := strconv.Atoi(g); err == nil && v > 0 {
			o.GOGC = v
		}
	}
	be, release, err := openBackend("cpu")
	if err != nil {
		return err
	}
	defer release()
	if o.GFLOPS <= 0 || o.NF4GFLOPS <= 0 {
		// Shaped like the step's MLP products, the bulk of its FLOPs.
		f32, q, err := plan.Probe(be, 150*time.Millisecond, min(*batch**seq, 1024), req.Config.Intermediate, req.Config.Hidden)
		if err != nil {
			return err
		}
		if o.GFLOPS <= 0 {
			o.GFLOPS = f32
		}
		if o.NF4GFLOPS <= 0 {
			o.NF4GFLOPS = q
		}
	}
	if *mexps > 0 {
		o.MExps = *mexps
	} else {
		if o.MExps, err = plan.ProbeExp(be, 100*time.Millisecond); err != nil {
			return err
		}
	}
	req.Options = mergeSource(o, req.Options.SourceBytes)
	p, err := plan.Make(req)
	if err != nil {
		return err
	}
	if *asJSON {
		return p.WriteJSON(stdout)
	}
	return p.WriteTable(stdout)
}

func mergeSource(o plan.Options, source int64) plan.Options {
	o.SourceBytes = source
	return o
}
