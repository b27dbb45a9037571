package parity

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"gotune/checks"
	"gotune/model"
	"gotune/nn"
	"gotune/optim"
	"gotune/peft"
	"gotune/safetensors"
)

// trainSpec is the optimisation recorded with a reference trajectory.
type trainSpec struct {
	LR          float64 `json:"lr"`
	Betas       []float64
	Eps         float64 `json:"eps"`
	WeightDecay float64 `json:"weight_decay"`
	Clip        float64 `json:"clip_grad_norm"`
	Schedule    string  `json:"schedule"`
	Trajectory  []struct {
		Step     int     `json:"step"`
		Loss     float64 `json:"loss"`
		GradNorm float64 `json:"grad_norm_before_clip"`
	} `json:"trajectory"`
}

// trajectory trains params for len(spec.Trajectory) AdamW steps on the
// reference batch and compares the loss and pre-clip gradient norm of every
// step; it returns the worst relative error of each.
func (r *Ref) trajectory(check string, params []*nn.Param, spec trainSpec) ([]checks.Result, error) {
	cfg := optim.DefaultConfig()
	if len(spec.Betas) == 2 {
		cfg.Beta1, cfg.Beta2 = spec.Betas[0], spec.Betas[1]
	}
	if spec.Eps > 0 {
		cfg.Eps = spec.Eps
	}
	opt, err := optim.NewAdamW([]optim.Group{{Params: params, WeightDecay: spec.WeightDecay}}, cfg)
	if err != nil {
		return nil, err
	}
	ws := r.Model.NewWorkspace()
	count := r.Batch.TrainedTokens()
	var lossErr, normErr float64
	detail := ""
	for i, want := range spec.Trajectory {
		opt.ZeroGrad()
		sum, _ := ws.Step(r.Batch, float32(1/float64(count)))
		loss := sum / float64(count)
		norm := optim.ClipGradNorm(params, spec.Clip)
		le := math.Abs(loss-want.Loss) / math.Abs(want.Loss)
		ne := math.Abs(norm-want.GradNorm) / math.Abs(want.GradNorm)
		if le > lossErr || ne > normErr {
			detail = fmt.Sprintf("step %d: loss %.8g (ref %.8g), grad norm %.8g (ref %.8g)", i, loss, want.Loss, norm, want.GradNorm)
		}
		lossErr, normErr = math.Max(lossErr, le), math.Max(normErr, ne)
		opt.Step(spec.LR)
	}
	a := checks.New(check+".loss", "max_rel_err", lossErr, Tolerance)
	b := checks.New(check+".grad_norm", "max_rel_err", normErr, Tolerance)
	a.Detail, b.Detail = detail, fmt.Sprintf("%d steps", len(spec.Trajectory))
	return []checks.Result{a, b}, nil
}

// FullFT checks 3 steps of full fine-tuning against ref/full_ft.json.
func (r *Ref) FullFT() ([]checks.Result, error) {
	var spec trainSpec
	if err := readJSON(filepath.Join(r.Dir, "ref", "full_ft.json"), &spec); err != nil {
		return nil, err
	}
	if err := r.reload(); err != nil {
		return nil, err
	}
	defer r.reload()
	params := r.Model.Params()
	for _, p := range params {
		p.SetTrainable(true)
	}
	return r.trajectory("full_ft", params, spec)
}

// reload restores the base weights after a check that trained them.
func (r *Ref) reload() error {
	m, err := model.Load(filepath.Join(r.Dir, "model"), model.LoadOptions{})
	if err != nil {
		return err
	}
	r.Model = m
	return nil
}

// peftMeta is a PEFT method folder's meta.json.
type peftMeta struct {
	Loss           float64   `json:"loss"`
	TrainableNames []string  `json:"trainable_names"`
	TrainableCount int       `json:"trainable_count"`
	Train          trainSpec `json:"train"`
}

// Method checks one PEFT method folder (ref/<method>): the adapter PEFT saved
// loads, its loss and gradients match, and 5 AdamW steps follow the
// reference trajectory to the adapter PEFT saved after them.
func (r *Ref) Method(name string) ([]checks.Result, error) {
	dir := filepath.Join(r.Dir, "ref", name)
	var meta peftMeta
	if err := readJSON(filepath.Join(dir, "meta.json"), &meta); err != nil {
		return nil, err
	}
	if err := r.reload(); err != nil {
		return nil, err
	}
	defer r.reload()
	ad, err := peft.Load(r.Model, filepath.Join(dir, "adapter_init"))
	if err != nil {
		return nil, err
	}
	params := ad.Params()
	var out []checks.Result
	count := 0
	for _, p := range params {
		count += p.Len()
	}
	cnt := checks.New(name+".trainable_count", "abs_diff", math.Abs(float64(count-meta.TrainableCount)), 0)
	cnt.Detail = fmt.Sprintf("%d trainable values, reference %d", count, meta.TrainableCount)
	out = append(out, cnt)

	ws := r.Model.NewWorkspace()
	tokens := r.Batch.TrainedTokens()
	sum, _ := ws.Step(r.Batch, float32(1/float64(tokens)))
	loss := sum / float64(tokens)
	out = append(out, checks.New(name+".loss", "rel_err", math.Abs(loss-meta.Loss)/math.Abs(meta.Loss), Tolerance))
	grads, err := safetensors.OpenOne(filepath.Join(dir, "grads.safetensors"))
	if err != nil {
		return nil, err
	}
	got := map[string][]float32{}
	for _, p := range params {
		got[p.Name] = p.Grad
	}
	g, err := compareGrads(name+".grads", grads, got)
	grads.Close()
	if err != nil {
		return nil, err
	}
	out = append(out, g...)

	if len(meta.Train.Trajectory) > 0 {
		tr, err := r.trajectory(name+".trajectory", params, meta.Train)
		if err != nil {
			return nil, err
		}
		out = append(out, tr...)
		after := filepath.Join(dir, fmt.Sprintf("adapter_after_%d_steps", len(meta.Train.Trajectory)))
		if _, err := os.Stat(after); err == nil {
			res, err := compareAdapter(name+".adapter_after_steps", after, params)
			if err != nil {
				return nil, err
			}
			out = append(out, res)
		}
	}
	return out, nil
}

// compareAdapter compares trained parameters with a saved PEFT adapter.
func compareAdapter(check, dir string, params []*nn.Param) (checks.Result, error) {
	st, err := safetensors.OpenOne(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		return checks.Result{}, err
	}
	defer st.Close()
	var num, den float64
	for _, p := range params {
		key := peft.SavedName(p.Name)
		want, err := st.Float64s(key)
		if err != nil {
			return checks.Result{}, fmt.Errorf("%s: %w", dir, err)
		}
		if len(want) != len(p.Data) {
			return checks.Result{}, fmt.Errorf("%s: %s has %d values, ours %d", dir, key, len(want), len(p.Data))
		}
		for i, w := range want {
			d := float64(p.Data[i]) - w
			num += d * d
			den += w * w
		}
	}
	return checks.New(check, "rel_err", math.Sqrt(num/den), Tolerance), nil
}
