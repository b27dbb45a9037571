package parity

import (
	"fmt"
	"math"
	"path/filepath"

	"gotune/checks"
	"gotune/method"
	"gotune/model"
	"gotune/optim"
	"gotune/quant"
)

// QLoRA trains the reference LoRA adapter on a quantized copy of the base
// model and compares its loss trajectory with the reference trajectory on
// the float32 base. Quantization moves the weights, so the losses cannot be
// equal; the limit is derived from how far the weights moved: the largest
// relative loss deviation over the steps must stay below 0.9 × the relative
// RMS error of the quantized weights (‖Wq−W‖/‖W‖ over every projection).
// On the three reference models the measured ratio is 0.2–0.6 (NF4, FP4,
// INT8 alike), so the limit leaves a margin while still failing for a wrong
// kernel, which gives deviations of order one.
func (r *Ref) QLoRA(qt quant.Type) ([]checks.Result, error) {
	dir := filepath.Join(r.Dir, "ref", "lora")
	var meta peftMeta
	if err := readJSON(filepath.Join(dir, "meta.json"), &meta); err != nil {
		return nil, err
	}
	base, err := model.Load(filepath.Join(r.Dir, "model"), model.LoadOptions{})
	if err != nil {
		return nil, err
	}
	m, err := model.Load(filepath.Join(r.Dir, "model"), model.LoadOptions{Quant: &quant.Options{Type: qt}})
	if err != nil {
		return nil, err
	}
	var num, den float64
	for i, l := range m.Linears() {
		w := base.Linears()[i].W.Data
		q := l.DenseWeight()
		for j := range w {
			d := float64(q[j] - w[j])
			num += d * d
			den += float64(w[j]) * float64(w[j])
		}
	}
	werr := math.Sqrt(num / den)
	ad, err := method.Load(m, filepath.Join(dir, "adapter_init"))
	if err != nil {
		return nil, err
	}
	params := ad.Params()
	opt, err := optim.NewAdamW([]optim.Group{{Params: params, WeightDecay: meta.Train.WeightDecay}}, optim.DefaultConfig())
	if err != nil {
		return nil, err
	}
	ws := m.NewWorkspace()
	count := r.Batch.TrainedTokens()
	var worst float64
	detail := ""
	for i, want := range meta.Train.Trajectory {
		opt.ZeroGrad()
		sum, _ := ws.Step(r.Batch, float32(1/float64(count)))
		loss := sum / float64(count)
		optim.ClipGradNorm(params, meta.Train.Clip)
		opt.Step(meta.Train.LR)
		if d := math.Abs(loss-want.Loss) / want.Loss; d > worst {
			worst = d
			detail = fmt.Sprintf("step %d: loss %.5g vs f32 reference %.5g", i, loss, want.Loss)
		}
	}
	name := "qlora_" + qt.String()
	res := checks.New(name+".trajectory", "max_rel_loss_dev", worst, 0.9*werr)
	res.Detail = fmt.Sprintf("weight rel. error %.4f; %s; %d steps", werr, detail, len(meta.Train.Trajectory))
	return []checks.Result{res}, nil
}
