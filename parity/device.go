package parity

import (
	"gotune/checks"
	"gotune/compute"
	"gotune/model"
	"gotune/nn"
)

// DeviceOptions select the backend and precision the checks run in.
type DeviceOptions struct {
	// Backend runs model.DeviceModel, the transformer block written over
	// the compute seam: the CPU backend, a GPU, or the reference backend.
	Backend compute.Backend
	// Compute is the compute type: F32 (zero means F32), held to Tolerance,
	// or BF16 mixed precision, held to Limit and GradLimit.
	Compute compute.DType
	// Limit replaces Tolerance for losses and trajectories; for bf16 it is
	// the deviation PyTorch's own bf16 run shows from its f32 run.
	Limit float64
	// GradLimit replaces Tolerance for gradients, logits and trained
	// adapters (bf16: PyTorch's own bf16-vs-f32 gradient deviation, about
	// 2^-8 relative rounding per stored value).
	GradLimit float64
}

// bf16 reports whether the checks run in bf16 mixed precision.
func (o DeviceOptions) bf16() bool { return o.Compute == compute.BF16 }

// limit is the limit of losses and trajectories.
func (o DeviceOptions) limit() float64 {
	if o.Limit > 0 {
		return o.Limit
	}
	return Tolerance
}

// gradLimit is the limit of gradients, logits and trained weights: values
// each rounded once to the compute type rather than a loss averaged over
// many of them.
func (o DeviceOptions) gradLimit() float64 {
	if o.GradLimit > 0 {
		return o.GradLimit
	}
	return Tolerance
}

// trainedLimit is the limit of what several optimizer steps produce: a
// trajectory's gradient norms and the trained weights. In f32 the loss
// limit; in bf16 PyTorch's deviation was measured on the loss only, and a
// norm moves about ten times as much as the loss it came from (the trained
// weights, with no yardstick of PyTorch's, get the same).
func (o DeviceOptions) trainedLimit() float64 {
	if o.bf16() {
		return 10 * o.limit()
	}
	return o.limit()
}

// relimit re-judges results against limit (0: keep).
func relimit(res []checks.Result, limit float64) []checks.Result {
	if limit == 0 {
		return res
	}
	for i, r := range res {
		d := r.Detail
		res[i] = checks.New(r.Check, r.Metric, r.Value, limit)
		res[i].Detail = d
	}
	return res
}

// device copies m to the backend; inference copies every parameter frozen
// (logits, generation).
func (r *Ref) device(m *model.Model, inference bool) (*model.DeviceModel, error) {
	return model.NewDeviceModel(m, r.o.Backend, model.DeviceOptions{Compute: r.o.Compute, Inference: inference})
}

// deviceGrads downloads the device gradients of params by name.
func deviceGrads(dm *model.DeviceModel, params []*nn.Param) (map[string][]float32, error) {
	got := map[string][]float32{}
	for _, p := range params {
		g, err := dm.Grad(p)
		if err != nil {
			return nil, err
		}
		got[p.Name] = g
	}
	return got, nil
}
