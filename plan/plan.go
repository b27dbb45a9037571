package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"gotune/model"
)

// Field rules of thumb for choosing a method by dataset size.
const (
	LargeDataset = 100_000 // above: full fine-tuning when resources allow
	SmallDataset = 10_000  // below: LoRA or a prompt-learning method
	FewShot      = 1_000   // below: IA3 first, the method with the fewest parameters
)

// Suggested LoRA ranks for small datasets: capacity beyond what the data
// can determine only fits its noise.
const (
	SmallDataRank   = 8
	FewShotDataRank = 4
)

// Usable is the share of RAM a plan may fill: the rest is left to the
// kernel, the page cache and the estimate's error.
const Usable = 0.9

// Request is what a plan is made for.
type Request struct {
	Model   string        // name shown in the output (a folder or a shape)
	Config  *model.Config // the model's architecture
	Samples int64         // training records; negative when unknown
	RAM     int64         // bytes of memory the run may use
	GPUMem  int64         // bytes of GPU memory; 0 when there is no GPU
	// GPU configures the GPU memory model (compute type, fused attention,
	// the context's share), used when GPUMem is set.
	GPU GPUOptions
	// GPURows are the rows' GPU footprints by method (method.GPURows());
	// a row without one is approximated from its CPU footprint.
	GPURows map[Method]GPURow
	// Stage is the training stage: "" or sft, or a preference stage (dpo,
	// kto), whose samples are pairs scored together (pref.go).
	Stage   string
	Options Options
	// Rows are the methods to estimate, in table order: method.PlanRows()
	// for all of them.
	Rows []Row
}

// Verdict is one method's estimate with whether it fits.
type Verdict struct {
	Estimate
	// Fits and FitsCheckpoint: the estimated peak, without or with
	// gradient checkpointing, is within Usable·RAM.
	Fits           bool `json:"fits"`
	FitsCheckpoint bool `json:"fits_checkpoint"`
	// GPU is the device memory of the step on a GPU (EstimateGPU), set
	// when GPU memory was given.
	GPU *GPUEstimate `json:"gpu,omitempty"`
	// FitsGPU and FitsGPUCheckpoint are set when GPU memory was given: the
	// GPU estimate's total, without or with gradient checkpointing, is
	// within it.
	FitsGPU           *bool `json:"fits_gpu,omitempty"`
	FitsGPUCheckpoint *bool `json:"fits_gpu_checkpoint,omitempty"`
}

// Plan is the planner's answer.
type Plan struct {
	Model     string  `json:"model"`
	Params    int64   `json:"params"`
	Batch     int     `json:"batch"`
	Seq       int     `json:"seq"`
	LoRARank  int     `json:"lora_rank"`
	Samples   int64   `json:"samples"` // -1 when unknown
	RAM       int64   `json:"ram_bytes"`
	Budget    int64   `json:"budget_bytes"`
	GPUMem    int64   `json:"gpu_mem_bytes,omitempty"`
	GFLOPS    float64 `json:"gflops,omitempty"`
	NF4GFLOPS float64 `json:"nf4_gflops,omitempty"`
	MExps     float64 `json:"mexps,omitempty"`
	Steps     int64   `json:"steps"` // 0: a long run
	Stage     string  `json:"stage,omitempty"`
	// Optim is "adamw_8bit" when the AdamW state was counted in 8 bits
	// (Options.Adam8bit), empty for float moments.
	Optim       string `json:"optim,omitempty"`
	Methods     []Verdict
	Recommended Method `json:"recommended"` // empty when nothing fits
	// SuggestedLoRARank is a smaller rank than LoRARank that the dataset
	// size calls for (0: LoRARank is fine).
	SuggestedLoRARank int      `json:"suggested_lora_rank,omitempty"`
	Checkpoint        bool     `json:"gradient_checkpointing"`
	Reasons           []string `json:"reasons"`
}

// Make estimates every method and recommends one.
func Make(req Request) (*Plan, error) {
	if req.Config == nil {
		return nil, fmt.Errorf("plan: no model configuration")
	}
	if req.RAM <= 0 {
		return nil, fmt.Errorf("plan: RAM must be positive, got %d bytes", req.RAM)
	}
	if len(req.Rows) == 0 {
		return nil, fmt.Errorf("plan: no methods to estimate")
	}
	o := req.Options.withDefaults()
	p := &Plan{Model: req.Model, Params: shapeOf(req.Config).params(), Batch: o.Batch, Seq: o.Seq, LoRARank: o.LoRARank,
		Samples: req.Samples, RAM: req.RAM, Budget: int64(Usable * float64(req.RAM)), GPUMem: req.GPUMem,
		GFLOPS: o.GFLOPS, NF4GFLOPS: o.NF4GFLOPS, MExps: o.MExps, Steps: o.Steps, Stage: req.Stage}
	if o.Adam8bit {
		p.Optim = "adamw_8bit"
	}
	if p.Samples < 0 {
		p.Samples = -1
	}
	for _, row := range req.Rows {
		opts := req.Options
		if isPreference(req.Stage) {
			opts = prefOptions(opts)
		}
		e, err := EstimateMethod(req.Config, row, opts)
		if err != nil {
			return nil, err
		}
		if isPreference(req.Stage) {
			addReference(&e, p.Params, o, req.Samples)
		}
		v := Verdict{Estimate: e, Fits: e.Memory.Total <= p.Budget, FitsCheckpoint: e.MemoryCheckpoint.Total <= p.Budget}
		if req.GPUMem > 0 {
			g, err := EstimateGPU(req.Config, row, req.GPURows[row.Method], opts, req.GPU)
			if err != nil {
				return nil, err
			}
			fits, ckpt := g.Memory.Total <= req.GPUMem, g.MemoryCheckpoint.Total <= req.GPUMem
			v.GPU, v.FitsGPU, v.FitsGPUCheckpoint = &g, &fits, &ckpt
		}
		p.Methods = append(p.Methods, v)
	}
	p.recommend()
	return p, nil
}

func (p *Plan) verdict(m Method) *Verdict {
	for i := range p.Methods {
		if p.Methods[i].Method == m {
			return &p.Methods[i]
		}
	}
	return nil
}

// recommend applies the rule of thumb: more than LargeDataset samples and
// room for full fine-tuning → full; SmallDataset to LargeDataset, or large
// data without room for full → LoRA, else QLoRA; fewer than SmallDataset →
// LoRA, else prompt tuning, else QLoRA. A method that does not fit in RAM
// is never chosen.
func (p *Plan) recommend() {
	var order []Method
	budget := mib(p.Budget)
	switch {
	case p.Samples < 0:
		p.Reasons = append(p.Reasons, "dataset size unknown (give --dataset or --samples): treated as a small dataset")
		order = []Method{LoRA, Prompt, QLoRA}
	case p.Samples > LargeDataset:
		switch full := p.verdict(Full); {
		case full == nil:
			// The caller chose the rows and left full fine-tuning out.
		case full.Fits || full.FitsCheckpoint:
			p.Reasons = append(p.Reasons, fmt.Sprintf("%d samples (> %d) and full fine-tuning fits in %s: enough data to update every weight without overfitting", p.Samples, LargeDataset, budget))
			order = []Method{Full}
		default:
			p.Reasons = append(p.Reasons, fmt.Sprintf("%d samples (> %d) would justify full fine-tuning, but it needs %s with checkpointing and %s is usable: resources are limited, so LoRA or QLoRA",
				p.Samples, LargeDataset, mib(full.MemoryCheckpoint.Total), budget))
		}
		order = append(order, LoRA, QLoRA)
	case p.Samples >= SmallDataset:
		p.Reasons = append(p.Reasons, fmt.Sprintf("%d samples (%d–%d): LoRA, or QLoRA when LoRA does not fit, learn as well as full fine-tuning at this size for a fraction of the memory", p.Samples, SmallDataset, LargeDataset))
		order = []Method{LoRA, QLoRA}
	case p.Samples < FewShot:
		p.Reasons = append(p.Reasons, fmt.Sprintf("%d samples (< %d, few-shot): the fewer trainable parameters the less the model can overfit; IA3 trains only scaling vectors (%s parameters) and matched or beat LoRA on few-shot tasks (T-Few, Liu et al. 2022); else LoRA at rank %d, else prompt tuning",
			p.Samples, FewShot, p.trainable(IA3), FewShotDataRank))
		order = []Method{IA3, LoRA, Prompt, QLoRA}
		p.suggestRank(FewShotDataRank)
	default:
		p.Reasons = append(p.Reasons, fmt.Sprintf("%d samples (< %d): few trainable parameters avoid overfitting; LoRA at a small rank, else a prompt-learning method, else QLoRA", p.Samples, SmallDataset))
		order = []Method{LoRA, Prompt, QLoRA}
		p.suggestRank(SmallDataRank)
		p.Reasons = append(p.Reasons, p.lighter())
	}
	pick := func(m Method) bool {
		v := p.verdict(m)
		switch {
		case v == nil:
			return false
		case v.Fits:
			p.Recommended = m
			p.Reasons = append(p.Reasons, fmt.Sprintf("%s fits: about %s at peak of %s usable (%.0f%% of %s RAM)", m, mib(v.Memory.Total), budget, 100*Usable, mib(p.RAM)))
			if v.FitsCheckpoint && v.MemoryCheckpoint.Total < v.Memory.Total {
				p.Reasons = append(p.Reasons, fmt.Sprintf("gradient checkpointing is not needed (it would save %s for about a third more compute)", mib(v.Memory.Total-v.MemoryCheckpoint.Total)))
			}
		case v.FitsCheckpoint:
			p.Recommended, p.Checkpoint = m, true
			p.Reasons = append(p.Reasons, fmt.Sprintf("%s fits only with gradient checkpointing: %s instead of %s, within %s usable", m, mib(v.MemoryCheckpoint.Total), mib(v.Memory.Total), budget))
		default:
			p.Reasons = append(p.Reasons, fmt.Sprintf("%s does not fit: %s even with checkpointing, %s usable", m, mib(v.MemoryCheckpoint.Total), budget))
			return false
		}
		return true
	}
	for _, m := range order {
		if pick(m) {
			break
		}
	}
	if p.Recommended == "" {
		// Fall back to whatever fits with the least memory.
		best := -1
		for i, v := range p.Methods {
			if (v.Fits || v.FitsCheckpoint) && (best < 0 || v.MemoryCheckpoint.Total < p.Methods[best].MemoryCheckpoint.Total) {
				best = i
			}
		}
		if best < 0 {
			p.Reasons = append(p.Reasons, "no method fits in RAM at this batch and sequence length: lower --batch or --seq, or add memory")
			return
		}
		v := p.Methods[best]
		p.Recommended, p.Checkpoint = v.Method, !v.Fits
		p.Reasons = append(p.Reasons, fmt.Sprintf("%s is the smallest method that fits (%s)", v.Method, mib(p.chosenMemory())))
	}
	v := p.verdict(p.Recommended)
	secs := v.StepSeconds
	if p.Checkpoint {
		secs = v.StepSecondsCheckpoint
	}
	if secs > 0 {
		r := fmt.Sprintf("one step of %d×%d tokens takes about %s", p.Batch, p.Seq, duration(secs))
		if p.Samples > 0 {
			steps := (p.Samples + int64(p.Batch) - 1) / int64(p.Batch)
			r += fmt.Sprintf("; one epoch (%d steps) about %s", steps, duration(secs*float64(steps)))
		}
		p.Reasons = append(p.Reasons, r)
	}
	if p.Steps == 0 {
		p.Reasons = append(p.Reasons, "peaks include the Go collector's headroom of a long run (GOGC% of the live heap): set GOGC lower or GOMEMLIMIT to trade CPU for memory")
	}
}

// suggestRank proposes rank r when the planned LoRA rank is larger.
func (p *Plan) suggestRank(r int) {
	if p.LoRARank <= r {
		return
	}
	v := p.verdict(LoRA)
	if v == nil {
		return
	}
	p.SuggestedLoRARank = r
	p.Reasons = append(p.Reasons, fmt.Sprintf("LoRA rank %d, not %d: %d samples cannot determine %s adapter parameters; rank %d trains %.3g× fewer and learns tasks of this size as well (the estimates are for rank %d)",
		r, p.LoRARank, p.Samples, count(v.TrainableParams), r, float64(p.LoRARank)/float64(r), p.LoRARank))
}

// lighter names the methods with far fewer parameters than LoRA that suit
// a narrow task (a fixed output format, a style, a classification) better
// than teaching new knowledge, with their sizes, when they fit.
func (p *Plan) lighter() string {
	var parts []string
	for _, m := range []Method{IA3, Prompt, Prefix} {
		if v := p.verdict(m); v != nil && (v.Fits || v.FitsCheckpoint) {
			parts = append(parts, fmt.Sprintf("%s (%s parameters)", m, count(v.TrainableParams)))
		}
	}
	if len(parts) == 0 {
		return "no lighter method fits either"
	}
	return "for a narrow task (output format, style, classification) lighter methods suffice: " + strings.Join(parts, ", ")
}

// trainable is the parameter count of row m for people, "?" when the plan
// has no such row.
func (p *Plan) trainable(m Method) string {
	if v := p.verdict(m); v != nil {
		return count(v.TrainableParams)
	}
	return "?"
}

func (p *Plan) chosenMemory() int64 {
	v := p.verdict(p.Recommended)
	if p.Checkpoint {
		return v.MemoryCheckpoint.Total
	}
	return v.Memory.Total
}

// WriteJSON writes the plan as indented JSON.
func (p *Plan) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("plan: encode: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// WriteTable writes the plan for people: one row per method, then the
// recommendation and its reasons.
func (p *Plan) WriteTable(w io.Writer) error {
	samples := "unknown"
	if p.Samples >= 0 {
		samples = fmt.Sprint(p.Samples)
	}
	fmt.Fprintf(w, "model %s: %s parameters; batch %d × seq %d, LoRA rank %d; %s samples; RAM %s (%s usable)",
		p.Model, count(p.Params), p.Batch, p.Seq, p.LoRARank, samples, mib(p.RAM), mib(p.Budget))
	if p.GPUMem > 0 {
		fmt.Fprintf(w, "; GPU %s", mib(p.GPUMem))
	}
	fmt.Fprintln(w)
	switch p.Stage {
	case "dpo":
		fmt.Fprintf(w, "stage dpo: %s pairs; a step scores chosen and rejected answers together (2 × batch sequences) and the reference; "+
			"pairs dropped (chosen == rejected, prompt fills cutoff_len) are counted by `gotune data inspect`\n", samples)
	case "kto":
		fmt.Fprintf(w, "stage kto: %s answers; a step scores each answer and a mismatched KL row (2 × batch sequences) and the reference\n", samples)
	}
	if p.GFLOPS > 0 {
		fmt.Fprintf(w, "throughput: %.1f GFLOP/s float32", p.GFLOPS)
		if p.NF4GFLOPS > 0 {
			fmt.Fprintf(w, ", %.1f GFLOP/s with NF4 weights", p.NF4GFLOPS)
		}
		if p.MExps > 0 {
			fmt.Fprintf(w, ", %.0f M exp/s", p.MExps)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := "method\ttrainable\tweights\tmemory\tmemory (ckpt)\tstep\tstep (ckpt)\tfits?\t"
	if p.GPUMem > 0 {
		hdr += "GPU mem\tGPU (ckpt)\tGPU?\t"
	}
	fmt.Fprintln(tw, hdr)
	for _, v := range p.Methods {
		fits := "no"
		switch {
		case v.Fits:
			fits = "yes"
		case v.FitsCheckpoint:
			fits = "ckpt"
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t", v.Method, count(v.TrainableParams), v.WeightFormat,
			mib(v.Memory.Total), mib(v.MemoryCheckpoint.Total), duration(v.StepSeconds), duration(v.StepSecondsCheckpoint), fits)
		if v.GPU != nil && v.FitsGPU != nil && v.FitsGPUCheckpoint != nil {
			gpu := "no"
			switch {
			case *v.FitsGPU:
				gpu = "yes"
			case *v.FitsGPUCheckpoint:
				gpu = "ckpt"
			}
			row += fmt.Sprintf("%s\t%s\t%s\t", mib(v.GPU.Memory.Total), mib(v.GPU.MemoryCheckpoint.Total), gpu)
		}
		fmt.Fprintln(tw, row)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if p.Recommended == "" {
		fmt.Fprintln(w, "recommended: none")
	} else {
		ck := ""
		if p.Checkpoint {
			ck = " with gradient checkpointing"
		}
		fmt.Fprintf(w, "recommended: %s%s\n", p.Recommended, ck)
	}
	for _, r := range p.Reasons {
		fmt.Fprintf(w, "  - %s\n", r)
	}
	if isPreference(p.Stage) {
		for _, v := range p.Methods {
			if v.Method == p.Recommended || (p.Recommended == "" && v.Method == LoRA) {
				for _, n := range v.Notes {
					if len(n) > 10 && n[:10] == "reference:" {
						fmt.Fprintf(w, "%s\n", n)
					}
				}
			}
		}
	}
	state := "AdamW state"
	if p.Optim == "adamw_8bit" {
		state = "8-bit AdamW state"
	}
	_, err := fmt.Fprintf(w, "memory: estimated peak resident size (weights + gradients + %s + activations + Go runtime); step: FLOPs ÷ measured throughput + exponentials ÷ measured rate\n", state)
	if err == nil && p.GPUMem > 0 {
		err = p.writeGPUNote(w)
	}
	return err
}

// writeGPUNote says what the GPU columns count.
func (p *Plan) writeGPUNote(w io.Writer) error {
	for _, v := range p.Methods {
		if v.GPU == nil {
			continue
		}
		attn := "fused attention (no score matrix held)"
		if !v.GPU.Fused {
			attn = "unfused attention ([T, T] scores and their gradients per chunk of sequences)"
		}
		_, err := fmt.Fprintf(w, "GPU mem: the device block's tensors in %s compute with %s, rounded as the CUDA allocator rounds them, plus %s for the CUDA context and cuBLAS workspace (a stated constant, not yet calibrated on a GPU)\n",
			v.GPU.Compute, attn, mib(v.GPU.Memory.Runtime))
		return err
	}
	return nil
}

func mib(b int64) string {
	switch {
	case b >= 10<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	default:
		return fmt.Sprintf("%d MiB", (b+(1<<19))>>20)
	}
}

func count(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

func duration(s float64) string {
	switch {
	case s <= 0 || math.IsNaN(s):
		return "-"
	case s < 1:
		return fmt.Sprintf("%.0f ms", s*1000)
	case s < 120:
		return fmt.Sprintf("%.1f s", s)
	case s < 2*3600:
		return fmt.Sprintf("%.0f min", s/60)
	case s < 72*3600:
		return fmt.Sprintf("%.1f h", s/3600)
	}
	return fmt.Sprintf("%.1f days", s/86400)
}

// ParseSize reads a memory size: a number with an optional unit (K, M, G,
// T, with or without "iB"/"B"; all binary). A bare number means GiB, since
// that is what people type for RAM.
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := float64(1 << 30)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult, t = 1<<10, t[:n-1]
		case 'M':
			mult, t = 1<<20, t[:n-1]
		case 'G':
			mult, t = 1<<30, t[:n-1]
		case 'T':
			mult, t = 1<<40, t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("size %q: want a number with an optional unit, e.g. 16G or 512M", s)
	}
	b := v * mult
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(b), nil
}
