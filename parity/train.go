package parity

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"gotune/checks"
	"gotune/method"
	"gotune/model"
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

// trajectory trains dm for len(spec.Trajectory) AdamW steps on the
// reference batch and compares the loss and pre-clip gradient norm of every
// step; it returns the worst relative error of each.
func (r *Ref) trajectory(check string, dm *model.DeviceModel, spec trainSpec) ([]checks.Result, error) {
	cfg := model.AdamWConfig{LR: spec.LR, WeightDecay: spec.WeightDecay, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: spec.Clip}
	if len(spec.Betas) == 2 {
		cfg.Beta1, cfg.Beta2 = spec.Betas[0], spec.Betas[1]
	}
	if spec.Eps > 0 {
		cfg.Eps = spec.Eps
	}
	count := r.Batch.TrainedTokens()
	var lossErr, normErr float64
	detail := ""
	for i, want := range spec.Trajectory {
		dm.ZeroGrad()
		sum, _, err := dm.Step(r.Batch, float32(1/float64(count)))
		if err != nil {
			return nil, err
		}
		loss := sum / float64(count)
		norm, err := dm.AdamW(cfg)
		if err != nil {
			return nil, err
		}
		le := math.Abs(loss-want.Loss) / math.Abs(want.Loss)
		ne := math.Abs(norm-want.GradNorm) / math.Abs(want.GradNorm)
		if le > lossErr || ne > normErr {
			detail = fmt.Sprintf("step %d: loss %.8g (ref %.8g), grad norm %.8g (ref %.8g)", i, loss, want.Loss, norm, want.GradNorm)
		}
		lossErr, normErr = math.Max(lossErr, le), math.Max(normErr, ne)
	}
	a := checks.New(check+".loss", "max_rel_err", lossErr, r.o.limit())
	b := checks.New(check+".grad_norm", "max_rel_err", normErr, r.o.trainedLimit())
	a.Detail, b.Detail = detail, fmt.Sprintf("%d steps", len(spec.Trajectory))
	return []checks.Result{a, b}, nil
}

// FullFT checks 3 steps of full fine-tuning against ref/full_ft.json.
func (r *Ref) FullFT() ([]checks.Result, error) {
	var spec trainSpec
	if err := readJSON(filepath.Join(r.Dir, "ref", "full_ft.json"), &spec); err != nil {
		return nil, err
	}
	m, err := r.load(nil)
	if err != nil {
		return nil, err
	}
	for _, p := range m.Params() {
		p.SetTrainable(true)
	}
	dm, err := r.device(m, false)
	if err != nil {
		return nil, err
	}
	defer dm.Close()
	return r.trajectory("full_ft", dm, spec)
}

// peftMeta is a PEFT method folder's meta.json.
type peftMeta struct {
	Loss           float64   `json:"loss"`
	TrainableNames []string  `json:"trainable_names"`
	TrainableCount int       `json:"trainable_count"`
	Train          trainSpec `json:"train"`
}

// loadMethod reads a PEFT method folder's meta.json and attaches its
// adapter_init to freshly loaded base weights.
func (r *Ref) loadMethod(dir string) (peftMeta, *model.Model, peft.Method, error) {
	var meta peftMeta
	if err := readJSON(filepath.Join(dir, "meta.json"), &meta); err != nil {
		return meta, nil, nil, err
	}
	m, err := r.load(nil)
	if err != nil {
		return meta, nil, nil, err
	}
	ad, err := method.Load(m, filepath.Join(dir, "adapter_init"))
	return meta, m, ad, err
}

// Method checks one PEFT method folder (ref/<method>): the adapter PEFT saved
// loads, its loss and gradients match, and 5 AdamW steps follow the
// reference trajectory to the adapter PEFT saved after them.
func (r *Ref) Method(name string) ([]checks.Result, error) {
	dir := filepath.Join(r.Dir, "ref", name)
	meta, m, ad, err := r.loadMethod(dir)
	if err != nil {
		return nil, err
	}
	params := ad.Params()
	var out []checks.Result
	count := 0
	for _, p := range params {
		count += p.Len()
	}
	// PEFT saves only an encoder's output (P-tuning, projected prefix
	// tuning): loaded from adapter_init, the encoder weights PEFT trained
	// are unknown, so only what the output determines can be compared.
	enc, _ := ad.(peft.Encoded)
	partial := enc != nil && !enc.HasEncoder() && count != meta.TrainableCount
	if partial {
		count = enc.EncoderTrainableCount()
	}
	cnt := checks.New(name+".trainable_count", "abs_diff", math.Abs(float64(count-meta.TrainableCount)), 0)
	cnt.Detail = fmt.Sprintf("%d trainable values, reference %d", count, meta.TrainableCount)
	out = append(out, cnt)

	dm, err := r.device(m, false)
	if err != nil {
		return nil, err
	}
	defer dm.Close()
	tokens := r.Batch.TrainedTokens()
	sum, _, err := dm.Step(r.Batch, float32(1/float64(tokens)))
	if err != nil {
		return nil, err
	}
	loss := sum / float64(tokens)
	out = append(out, checks.New(name+".loss", "rel_err", math.Abs(loss-meta.Loss)/math.Abs(meta.Loss), r.o.limit()))
	if len(meta.TrainableNames) == 14*len(m.Layers) && !partial {
		// LoRA on all seven projections: q/k/v and gate/up must run as
		// fused groups, two per block.
		res := checks.New(name+".fused_groups", "missing", float64(2*len(m.Layers)-dm.LoRAGroups()), 0)
		res.Detail = fmt.Sprintf("%d groups", dm.LoRAGroups())
		out = append(out, res)
	}
	grads, err := safetensors.OpenOne(filepath.Join(dir, "grads.safetensors"))
	if err != nil {
		return nil, err
	}
	defer grads.Close()
	if partial {
		// Without the encoder, the trained parameter is its output.
		o := enc.Output()
		var dy []float32
		for _, p := range params {
			if p.Len() == len(o) {
				if dy, err = dm.Grad(p); err != nil {
					return nil, err
				}
			}
		}
		g, err := compareOutputGrad(name+".grads", grads, enc.OutputLayer(), dy)
		if err != nil {
			return nil, err
		}
		skip := checks.New(name+".trajectory", "skipped", 0, 0)
		skip.Detail = "PEFT's adapter_init holds only the encoder output, not the encoder weights PEFT trained from; the trajectory and adapter_after_steps need them"
		return append(append(out, relimit(g, r.o.gradLimit())...), skip), nil
	}
	got, err := deviceGrads(dm, params)
	if err != nil {
		return nil, err
	}
	g, err := compareGrads(name+".grads", grads, got)
	if err != nil {
		return nil, err
	}
	out = append(out, relimit(g, r.o.gradLimit())...)

	if len(meta.Train.Trajectory) > 0 {
		tr, err := r.trajectory(name+".trajectory", dm, meta.Train)
		if err != nil {
			return nil, err
		}
		out = append(out, tr...)
		after := filepath.Join(dir, fmt.Sprintf("adapter_after_%d_steps", len(meta.Train.Trajectory)))
		if _, err := os.Stat(after); err == nil {
			// The host adapter saves what the device trained.
			if err := dm.CopyToHost(); err != nil {
				return nil, err
			}
			res, err := compareAdapter(name+".adapter_after_steps", after, ad)
			if err != nil {
				return nil, err
			}
			out = append(out, relimit([]checks.Result{res}, r.o.trainedLimit())...)
		}
	}
	return out, nil
}

// compareOutputGrad checks the gradient of an encoder's output against the
// gradients of the encoder's last linear layer y = h·Wᵀ + b, which is all
// the reference determines without the encoder weights: db = Σ_rows dy
// exactly, and every column of dW = dyᵀ·h must lie in the span of dy's rows
// (h unknown), which pins dy's direction row by row.
func compareOutputGrad(check string, ref *safetensors.Set, layer string, dy []float32) ([]checks.Result, error) {
	wantB, err := ref.Float64s(layer + ".bias")
	if err != nil {
		return nil, err
	}
	wantW, err := ref.Float64s(layer + ".weight")
	if err != nil {
		return nil, err
	}
	width := len(wantB)
	if dy == nil || len(dy)%width != 0 || len(wantW)%width != 0 {
		return []checks.Result{{Check: check, Metric: "rel_err", Value: math.Inf(1), Limit: Tolerance, Detail: "no output gradient of the expected width"}}, nil
	}
	rows, hid := len(dy)/width, len(wantW)/width
	db := make([]float32, width)
	for i, v := range dy {
		db[i%width] += v
	}
	bias := checks.New(check+".output_bias", "rel_err", checks.RelErr(db, wantB), Tolerance)
	bias.Detail = layer + ".bias = the output gradient summed over virtual tokens"
	// Least squares per column j of dW: min_c ‖dW[:,j] − Σ_p c_p·dy[p,:]‖.
	g := make([]float64, rows*rows)
	for p := 0; p < rows; p++ {
		for q := 0; q < rows; q++ {
			for o := 0; o < width; o++ {
				g[p*rows+q] += float64(dy[p*width+o]) * float64(dy[q*width+o])
			}
		}
	}
	var num, den float64
	for j := 0; j < hid; j++ {
		col := make([]float64, width)
		for o := range col {
			col[o] = wantW[o*hid+j]
		}
		rhs := make([]float64, rows)
		for p := range rhs {
			for o, v := range col {
				rhs[p] += float64(dy[p*width+o]) * v
			}
		}
		c := solveSPD(append([]float64(nil), g...), rhs, rows)
		for o, v := range col {
			fit := 0.0
			for p := 0; p < rows; p++ {
				fit += c[p] * float64(dy[p*width+o])
			}
			num += (v - fit) * (v - fit)
			den += v * v
		}
	}
	span := checks.New(check+".output_weight_span", "rel_err", math.Sqrt(num/den), Tolerance)
	span.Detail = layer + ".weight's columns against the span of the output gradient's rows"
	return []checks.Result{bias, span}, nil
}

// solveSPD solves a·x = b (a n×n symmetric positive semi-definite) by
// Gaussian elimination with partial pivoting; singular directions get 0.
func solveSPD(a, b []float64, n int) []float64 {
	for k := 0; k < n; k++ {
		piv := k
		for i := k + 1; i < n; i++ {
			if math.Abs(a[i*n+k]) > math.Abs(a[piv*n+k]) {
				piv = i
			}
		}
		for j := 0; j < n; j++ {
			a[k*n+j], a[piv*n+j] = a[piv*n+j], a[k*n+j]
		}
		b[k], b[piv] = b[piv], b[k]
		if math.Abs(a[k*n+k]) < 1e-300 {
			continue
		}
		for i := k + 1; i < n; i++ {
			f := a[i*n+k] / a[k*n+k]
			for j := k; j < n; j++ {
				a[i*n+j] -= f * a[k*n+j]
			}
			b[i] -= f * b[k]
		}
	}
	x := make([]float64, n)
	for k := n - 1; k >= 0; k-- {
		if math.Abs(a[k*n+k]) < 1e-300 {
			continue
		}
		s := b[k]
		for j := k + 1; j < n; j++ {
			s -= a[k*n+j] * x[j]
		}
		x[k] = s / a[k*n+k]
	}
	return x
}

// compareAdapter compares a trained method with a saved PEFT adapter: the
// tensors it would save (SavedTensors) or else its parameters by saved name.
func compareAdapter(check, dir string, ad peft.Method) (checks.Result, error) {
	st, err := safetensors.OpenOne(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		return checks.Result{}, err
	}
	defer st.Close()
	saved := map[string][]float32{}
	if s, ok := ad.(peft.SavedTensorer); ok {
		saved = s.SavedTensors()
	} else {
		for _, p := range ad.Params() {
			saved[peft.SavedName(p.Name)] = p.Data
		}
	}
	var num, den float64
	for key, data := range saved {
		want, err := st.Float64s(key)
		if err != nil {
			return checks.Result{}, fmt.Errorf("%s: %w", dir, err)
		}
		if len(want) != len(data) {
			return checks.Result{}, fmt.Errorf("%s: %s has %d values, ours %d", dir, key, len(want), len(data))
		}
		for i, w := range want {
			d := float64(data[i]) - w
			num += d * d
			den += w * w
		}
	}
	if len(saved) != len(st.Names()) {
		return checks.Result{}, fmt.Errorf("%s: %d tensors, ours %d", dir, len(st.Names()), len(saved))
	}
	return checks.New(check, "rel_err", math.Sqrt(num/den), Tolerance), nil
}
