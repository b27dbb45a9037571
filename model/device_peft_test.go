package model_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
	"gotune/compute/cuda/cudatest"
	"gotune/compute/ref"
	"gotune/model"
	"gotune/nn"
	"gotune/optim"
	"gotune/peft"
)

// The device block's tests for the methods that are not adapters on a
// linear layer (prompt tuning, P-tuning, prefix tuning, bottleneck
// adapters) and for SGD. They live in an external test package so that they
// can attach peft's real implementations.

func tinyPEFTModel(t *testing.T, shape string, seed uint64) *model.Model {
	t.Helper()
	var cfg *model.Config
	var err error
	if js, ok := model.FamilyConfig(shape); ok {
		cfg, err = model.ParseConfig(shape+"/config.json", []byte(js))
	} else {
		cfg, err = model.Shape(shape)
	}
	if err != nil {
		t.Fatal(err)
	}
	m := model.New(cfg)
	m.RandomInit(seed)
	return m
}

// randomize gives parameters that start at zero (a bottleneck's up
// projection) values, so that every gradient is exercised.
func randomize(ps []*nn.Param, seed uint64, scale float64) {
	r := rand.New(rand.NewPCG(seed, 5))
	for _, p := range ps {
		for i := range p.Data {
			p.Data[i] = float32(scale * r.NormFloat64())
		}
	}
}

type peftCase struct {
	name string
	// attach adds the method and returns every parameter it trains.
	attach func(t *testing.T, m *model.Model) []*nn.Param
}

// trained takes an attach function's results and returns the method's
// parameters, failing the test on an error.
func trained(t *testing.T) func(interface{ Params() []*nn.Param }, error) []*nn.Param {
	return func(m interface{ Params() []*nn.Param }, err error) []*nn.Param {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return m.Params()
	}
}

func bottleneck(t *testing.T, m *model.Model, c peft.BottleneckConfig, seed uint64) []*nn.Param {
	t.Helper()
	s, err := peft.AttachBottleneck(m, c, seed)
	if err != nil {
		t.Fatal(err)
	}
	// Up starts at zero, which would leave the down projection untrained.
	randomize(upParams(s), seed+1, 0.05)
	return s.Params()
}

var peftCases = []peftCase{
	{"prompt_tuning", func(t *testing.T, m *model.Model) []*nn.Param {
		return trained(t)(peft.AttachPromptTuning(m, peft.PromptTuningConfig{Virtual: 3}, 1))
	}},
	// A trained embedding beside virtual tokens: their rows must not reach
	// the embedding of id 0.
	{"prompt_tuning+embed", func(t *testing.T, m *model.Model) []*nn.Param {
		ps := trained(t)(peft.AttachPromptTuning(m, peft.PromptTuningConfig{Virtual: 2}, 1))
		m.Embed.SetTrainable(true)
		return append(ps, m.Embed)
	}},
	{"p_tuning_mlp", func(t *testing.T, m *model.Model) []*nn.Param {
		return trained(t)(peft.AttachPTuning(m, peft.PTuningConfig{Virtual: 3, EncoderHidden: 24}, 2))
	}},
	// P-tuning's LSTM encoder: two bidirectional layers, then its MLP head.
	{"p_tuning_lstm", func(t *testing.T, m *model.Model) []*nn.Param {
		return trained(t)(peft.AttachPTuning(m, peft.PTuningConfig{Virtual: 4, EncoderType: "LSTM", EncoderHidden: 6, EncoderLayers: 2}, 11))
	}},
	{"prefix", func(t *testing.T, m *model.Model) []*nn.Param {
		return trained(t)(peft.AttachPrefix(m, peft.PrefixConfig{Virtual: 4}, 3))
	}},
	{"prefix_projection", func(t *testing.T, m *model.Model) []*nn.Param {
		return trained(t)(peft.AttachPrefix(m, peft.PrefixConfig{Virtual: 4, Projection: true, EncoderHidden: 20}, 4))
	}},
	{"bottleneck_houlsby_relu", func(t *testing.T, m *model.Model) []*nn.Param {
		return bottleneck(t, m, peft.BottleneckConfig{Size: 6}, 5)
	}},
	{"bottleneck_pfeiffer_gelu", func(t *testing.T, m *model.Model) []*nn.Param {
		return bottleneck(t, m, peft.BottleneckConfig{Size: 5, Activation: "gelu", Placement: "pfeiffer", Scaling: 0.5}, 7)
	}},
	{"bottleneck_attention_silu", func(t *testing.T, m *model.Model) []*nn.Param {
		return bottleneck(t, m, peft.BottleneckConfig{Size: 4, Activation: "silu", Placement: "attention", Scaling: 2}, 9)
	}},
}

func caseNamed(name string) peftCase {
	for _, c := range peftCases {
		if c.name == name {
			return c
		}
	}
	panic("no test case " + name)
}

func upParams(s *peft.BottleneckSet) []*nn.Param {
	var ps []*nn.Param
	for _, b := range s.Modules {
		ps = append(ps, b.Up, b.UpBias)
	}
	return ps
}

// peftBatch is two rows, the second right-padded, with trained labels.
func peftBatch(vocab int) *model.Batch {
	const B, T = 2, 9
	b := &model.Batch{B: B, T: T, IDs: make([]int32, B*T), Labels: make([]int32, B*T), Mask: make([]int32, B*T)}
	for i := range b.IDs {
		b.IDs[i] = int32((i*41 + 3) % vocab)
		b.Labels[i] = model.IgnoreIndex
		if i < T+6 {
			b.Mask[i] = 1
			if i%T > 1 {
				b.Labels[i] = b.IDs[i]
			}
		}
	}
	return b
}

func sumSq(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return s
}

func relErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / den)
}

// TestDevicePEFTStepMatchesRef: for prompt tuning, P-tuning (MLP and LSTM
// encoders), prefix tuning (with and without its projection) and
// bottleneck adapters, one step of the device block gives the loss and
// every trainable gradient of the reference backend's plain f32 step
// (relative error ≤ 1e-5), with and without gradient checkpointing and
// chunked attention, on two shapes (q/k norms and GQA). On the reference
// backend itself this checks checkpointing, chunked attention and bf16.
func TestDevicePEFTStepMatchesRef(t *testing.T) {
	testDevicePEFTStep(t, ref.New(), 1e-5)
}

func TestDevicePEFTStepMatchesRefOnGPU(t *testing.T) {
	testDevicePEFTStep(t, cudatest.Open(t), 1e-4)
}

func testDevicePEFTStep(t *testing.T, d compute.Backend, tol float64) {
	testDevicePEFTStepShapes(t, d, tol, []string{"ref-qwen3", "ref-llama"})
}

// TestDevicePEFTFamiliesMatchesRef: the same methods on the families beyond
// the Llama kind (Gemma 2 scales virtual tokens by √hidden, Gemma 3 does
// not; soft caps and windows under a prefix; fused projections; experts).
func TestDevicePEFTFamiliesMatchesRef(t *testing.T) {
	testDevicePEFTStepShapes(t, ref.New(), 1e-5, []string{"gemma2", "gemma3", "phi3", "mixtral"})
}

func testDevicePEFTStepShapes(t *testing.T, d compute.Backend, tol float64, shapes []string) {
	for _, shape := range shapes {
		for _, c := range peftCases {
			t.Run(shape+"/"+c.name, func(t *testing.T) {
				m := tinyPEFTModel(t, shape, 17)
				c.attach(t, m)
				b := peftBatch(m.Cfg.Vocab)
				scale := float32(1 / float64(b.TrainedTokens()))
				csum, ccount, want := model.RefStep(t, m, b, scale)
				for _, ckpt := range []bool{false, true} {
					dm, err := model.NewDeviceModel(m, d, model.DeviceOptions{Compute: compute.F32, Checkpoint: ckpt})
					if err != nil {
						t.Fatal(err)
					}
					if ckpt {
						model.SetAttnBudget(dm, 1)
					}
					gsum, gcount, err := dm.Step(b, scale)
					if err != nil {
						t.Fatal(err)
					}
					if gcount != ccount {
						t.Fatalf("trained tokens %d, reference %d", gcount, ccount)
					}
					if e := math.Abs(gsum-csum) / math.Abs(csum); e > tol {
						t.Errorf("checkpoint %v: loss %.8g, reference %.8g (rel %.2g)", ckpt, gsum, csum, e)
					}
					trainable := dm.Trainable()
					if len(trainable) == 0 {
						t.Fatal("nothing trained on the device")
					}
					for _, p := range trainable {
						g, err := dm.Grad(p)
						if err != nil {
							t.Fatal(err)
						}
						if sumSq(want[p]) == 0 {
							t.Fatalf("%s: the reference's gradient is zero; the test would prove nothing", p.Name)
						}
						if e := relErr(g, want[p]); !(e <= tol) {
							t.Errorf("checkpoint %v: %s: gradient differs from the reference's by %.3g", ckpt, p.Name, e)
						}
					}
					dm.Close()
				}
				// bf16 mixed precision stays close.
				dm, err := model.NewDeviceModel(m, d, model.DeviceOptions{Compute: compute.BF16})
				if err != nil {
					t.Fatal(err)
				}
				defer dm.Close()
				hsum, _, err := dm.Step(b, scale)
				if err != nil {
					t.Fatal(err)
				}
				if e := math.Abs(hsum-csum) / math.Abs(csum); e > 2e-2 {
					t.Errorf("bf16 loss %.6g, f32 %.6g", hsum, csum)
				}
			})
		}
	}
}

// TestDevicePEFTOffAndScoring: with the method switched off (a reference
// policy) the device scores as the base model without it, and
// TokenLogProbs with it on gives the reference backend's values, on the
// reference and the CPU backend.
func TestDevicePEFTOffAndScoring(t *testing.T) {
	for _, be := range []struct {
		name string
		be   compute.Backend
	}{{"ref", ref.New()}, {"cpu", cputest.Open()}} {
		for _, c := range peftCases {
			t.Run(be.name+"/"+c.name, func(t *testing.T) { testDevicePEFTOffAndScoring(t, be.be, c) })
		}
	}
}

func testDevicePEFTOffAndScoring(t *testing.T, be compute.Backend, c peftCase) {
	m := tinyPEFTModel(t, "ref-qwen3", 19)
	b := peftBatch(m.Cfg.Vocab)
	base, err := model.NewDeviceModel(m, ref.New(), model.DeviceOptions{Compute: compute.F32, Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	wantOff, _, err := base.Loss(b)
	base.Close()
	if err != nil {
		t.Fatal(err)
	}
	c.attach(t, m)
	oracle, err := model.NewDeviceModel(m, ref.New(), model.DeviceOptions{Compute: compute.F32, Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	want, err := oracle.TokenLogProbs(b)
	oracle.Close()
	if err != nil {
		t.Fatal(err)
	}
	dm, err := model.NewDeviceModel(m, be, model.DeviceOptions{Compute: compute.F32, Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	got, err := dm.TokenLogProbs(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d log-probs, reference %d", len(got), len(want))
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-5*max(1, math.Abs(want[i])) {
			t.Fatalf("log p[%d] = %.8g, reference %.8g", i, got[i], want[i])
		}
	}
	off := dm.WithoutAdapters()
	gotOff, _, err := dm.Loss(b)
	off()
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(gotOff-wantOff) > 1e-5*math.Abs(wantOff) {
		t.Errorf("adapters off: loss %.8g, base %.8g", gotOff, wantOff)
	}
	var on float64
	for _, v := range want {
		on -= v
	}
	if math.Abs(on-wantOff) < 1e-6*math.Abs(wantOff) {
		t.Errorf("the method does not change the loss (%.8g): the test would prove nothing", on)
	}
}

// TestDevicePEFTSessionMatchesFullForward: decoding with a key/value cache
// that starts with the prefix and the virtual tokens (a prompt, then greedy
// tokens one at a time, then again after Reset) gives at every step the
// logits of a full forward pass over the tokens so far with the method on
// the reference backend.
func TestDevicePEFTSessionMatchesFullForward(t *testing.T) {
	testDevicePEFTSession(t, ref.New(), 1e-5)
}

func TestDevicePEFTSessionMatchesFullForwardOnGPU(t *testing.T) {
	testDevicePEFTSession(t, cudatest.Open(t), 1e-4)
}

func testDevicePEFTSession(t *testing.T, d compute.Backend, tol float64) {
	for _, c := range peftCases {
		t.Run(c.name, func(t *testing.T) {
			m := tinyPEFTModel(t, "ref-qwen3", 37)
			c.attach(t, m)
			V := m.Cfg.Vocab
			dm, err := model.NewDeviceModel(m, d, model.DeviceOptions{Compute: compute.F32, Inference: true})
			if err != nil {
				t.Fatal(err)
			}
			defer dm.Close()
			oracle, err := model.NewDeviceModel(m, ref.New(), model.DeviceOptions{Compute: compute.F32, Inference: true})
			if err != nil {
				t.Fatal(err)
			}
			defer oracle.Close()
			gs, err := dm.NewSession(40)
			if err != nil {
				t.Fatal(err)
			}
			defer gs.Close()
			// The cache starts with the prefix and the virtual tokens.
			extra := 0
			if p := m.Layers[0].Prefix; p != nil {
				extra += p.Len()
			}
			if m.Input != nil {
				extra += m.Input.Virtual()
			}
			if gs.Len() != extra {
				t.Fatalf("a fresh session holds %d positions, want the method's %d", gs.Len(), extra)
			}
			for round := 0; round < 2; round++ {
				seq := []int32{3, 141, 59, 26}
				feed := seq
				for step := 0; step <= 8; step++ {
					full := model.DeviceLogits(t, oracle, &model.Batch{B: 1, T: len(seq), IDs: seq})
					want := full[len(full)-V:]
					got, err := gs.Feed(feed)
					if err != nil {
						t.Fatal(err)
					}
					if e := relErr(got, want); !(e <= tol) {
						t.Fatalf("round %d step %d: logits differ from the full forward's by %.3g", round, step, e)
					}
					feed = []int32{int32(model.Argmax(want))}
					seq = append(seq, feed...)
				}
				if want := extra + len(seq) - 1; gs.Len() != want {
					t.Errorf("session holds %d positions, want %d", gs.Len(), want)
				}
				gs.Reset()
				if gs.Len() != extra {
					t.Errorf("after Reset the session holds %d positions, want %d", gs.Len(), extra)
				}
			}
		})
	}
}

// TestDeviceSGDMatchesHost: three steps of SGD on the device (plain; with
// momentum, dampening and weight decay; Nesterov), clipped, leave the
// parameters where optim.SGD on the host does with the reference
// backend's gradients, the third step on a fresh device copy resumed from
// the host weights and the momentum buffers.
func TestDeviceSGDMatchesHost(t *testing.T) {
	testDeviceSGD(t, ref.New(), 1e-5)
}

func TestDeviceSGDMatchesHostOnGPU(t *testing.T) {
	testDeviceSGD(t, cudatest.Open(t), 1e-4)
}

func testDeviceSGD(t *testing.T, d compute.Backend, tol float64) {
	for _, c := range []model.SGDConfig{
		{LR: 0.05, MaxGradNorm: 0.5},
		{LR: 0.05, WeightDecay: 0.1, Momentum: 0.9, Dampening: 0.2, MaxGradNorm: 0.5},
		{LR: 0.02, Momentum: 0.8, Nesterov: true},
	} {
		// Virtual tokens and bottleneck adapters together.
		build := func() (*model.Model, []*nn.Param) {
			m := tinyPEFTModel(t, "ref-qwen3", 29)
			ps := caseNamed("prompt_tuning").attach(t, m)
			return m, append(ps, caseNamed("bottleneck_houlsby_relu").attach(t, m)...)
		}
		cm, cps := build()
		dmod, _ := build()
		b := peftBatch(cm.Cfg.Vocab)
		scale := float32(1 / float64(b.TrainedTokens()))

		// The host side: gradients of the reference backend, optim.SGD.
		host, err := model.NewDeviceModel(cm, ref.New(), model.DeviceOptions{Compute: compute.F32})
		if err != nil {
			t.Fatal(err)
		}
		dev, err := model.NewDeviceModel(dmod, d, model.DeviceOptions{Compute: compute.F32})
		if err != nil {
			t.Fatal(err)
		}
		// The host parameters in the device's order.
		byName := map[string]*nn.Param{}
		for _, p := range cps {
			byName[p.Name] = p
		}
		var params []*nn.Param
		for _, p := range dev.Trainable() {
			params = append(params, byName[p.Name])
		}
		if len(params) != len(cps) {
			t.Fatalf("%d parameters trained on the device, %d on the host", len(params), len(cps))
		}
		opt, err := optim.NewSGD([]optim.Group{{Params: params, WeightDecay: c.WeightDecay}},
			optim.Config{Momentum: c.Momentum, Dampening: c.Dampening, Nesterov: c.Nesterov})
		if err != nil {
			t.Fatal(err)
		}
		for step := 0; step < 3; step++ {
			host.ZeroGrad()
			if _, _, err := host.Step(b, scale); err != nil {
				t.Fatal(err)
			}
			for _, p := range params {
				g, err := host.Grad(p)
				if err != nil {
					t.Fatal(err)
				}
				copy(p.Grad, g)
			}
			cnorm := optim.ClipGradNorm(params, c.MaxGradNorm)
			opt.Step(c.LR)
			if err := host.LoadTrainableFromHost(); err != nil {
				t.Fatal(err)
			}

			if step == 2 {
				// Resume: a fresh device copy of the host weights, given
				// the momentum buffers, continues as the first would.
				if err := dev.CopyToHost(); err != nil {
					t.Fatal(err)
				}
				next, err := model.NewDeviceModel(dmod, d, model.DeviceOptions{Compute: compute.F32})
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range dev.Trainable() {
					buf, ok, err := dev.MomentumBuffer(p)
					if err != nil || ok != (c.Momentum != 0) {
						t.Fatalf("%s: momentum buffer present %v (%v) with momentum %g", p.Name, ok, err, c.Momentum)
					}
					if ok {
						if err := next.SetMomentumBuffer(p, buf); err != nil {
							t.Fatal(err)
						}
					}
				}
				dev.Close()
				dev = next
			}
			dev.ZeroGrad()
			if _, _, err := dev.Step(b, scale); err != nil {
				t.Fatal(err)
			}
			norm, err := dev.GradNorm()
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(norm-cnorm) > tol*cnorm {
				t.Errorf("%+v step %d: gradient norm %.8g, host %.8g", c, step, norm, cnorm)
			}
			if err := dev.ApplySGD(c, norm); err != nil {
				t.Fatal(err)
			}
		}
		if err := dev.CopyToHost(); err != nil {
			t.Fatal(err)
		}
		dps := dev.Trainable()
		for i, p := range params {
			if e := relErr(dps[i].Data, p.Data); !(e <= tol) {
				t.Errorf("%+v: %s after 3 steps differs from the host's by %.3g", c, p.Name, e)
			}
		}
		dev.Close()
		host.Close()
	}
}
