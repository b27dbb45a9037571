package parity

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"gotune/checks"
	"gotune/optim"
	"gotune/quant"
)

// RunModel runs every check a reference model folder supports with the
// model on o.Backend, through model.DeviceModel: logits, loss and greedy
// ids of the base model, full-model gradients and the full fine-tuning
// trajectory, QLoRA trajectories in every quantization, and for each PEFT
// method folder under ref/ its trainable count, loss, gradients, trajectory
// and the adapter after it. In bf16 the check names start with "bf16." and
// losses, gradients and trained weights are held to o.Limit and
// o.GradLimit; in f32 every backend gets the same names and limits.
func RunModel(dir string, o DeviceOptions) ([]checks.Result, error) {
	r, err := Open(dir, o)
	if err != nil {
		return nil, err
	}
	res, err := r.run()
	if r.o.bf16() {
		for i := range res {
			res[i].Check = "bf16." + res[i].Check
		}
	}
	return res, err
}

// run runs the checks of r's folder in order: Forward first, as it finds
// whether the reference holds NaN.
func (r *Ref) run() ([]checks.Result, error) {
	dir := r.Dir
	var out []checks.Result
	steps := []struct {
		need string
		run  func() ([]checks.Result, error)
	}{
		{"forward.safetensors", r.Forward},
		{"meta.json", r.Generate},
		{"grads_full.safetensors", r.GradsFull},
		{"full_ft.json", r.FullFT},
	}
	for _, s := range steps {
		if !exists(filepath.Join(dir, "ref", s.need)) {
			continue
		}
		if r.NaN > 0 && (s.need == "grads_full.safetensors" || s.need == "full_ft.json") {
			continue // NaN in the reference: nothing to compare (reported by Forward)
		}
		res, err := s.run()
		if err != nil {
			return out, err
		}
		out = append(out, res...)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "ref"))
	var methods []string
	for _, e := range entries {
		if e.IsDir() && exists(filepath.Join(dir, "ref", e.Name(), "adapter_init", "adapter_config.json")) {
			methods = append(methods, e.Name())
		}
	}
	sort.Strings(methods)
	if r.NaN > 0 {
		return out, nil
	}
	if exists(filepath.Join(dir, "ref", "lora", "meta.json")) {
		for _, qt := range []quant.Type{quant.NF4, quant.FP4, quant.Int8Row, quant.Int8Block} {
			res, err := r.QLoRA(qt)
			if err != nil {
				// An adapter gotune cannot load yet fails this check only.
				out = append(out, checks.Result{Check: "qlora_" + qt.String(), Metric: "error", Value: 1, Detail: err.Error()})
				continue
			}
			out = append(out, res...)
		}
	}
	for _, m := range methods {
		res, err := r.Method(m)
		if err != nil {
			out = append(out, checks.Result{Check: m, Metric: "error", Value: 1, Detail: err.Error()})
			continue
		}
		out = append(out, res...)
	}
	return out, nil
}

// Schedules checks learning-rate schedules against schedules.json: for each
// schedule kind, base_lr, warmup, total and the rate at every step.
func Schedules(path string) ([]checks.Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var file map[string]struct {
		BaseLR float64   `json:"base_lr"`
		Warmup int       `json:"warmup"`
		Total  int       `json:"total"`
		LR     []float64 `json:"lr_per_step"`
	}
	if err := json.Unmarshal(b, &file); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	kinds := make([]string, 0, len(file))
	for k := range file {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var out []checks.Result
	for _, k := range kinds {
		s := file[k]
		sched, err := optim.NewSchedule(k, s.BaseLR, s.Warmup, s.Total)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, k, err)
		}
		var worst float64
		for step, want := range s.LR {
			worst = math.Max(worst, math.Abs(sched.LR(step)-want)/s.BaseLR)
		}
		res := checks.New("schedule."+k, "max_err_over_base_lr", worst, 1e-12)
		res.Detail = fmt.Sprintf("%d steps", len(s.LR))
		out = append(out, res)
	}
	return out, nil
}
