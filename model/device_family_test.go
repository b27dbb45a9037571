package model

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gotune/compute"
	"gotune/compute/cuda/cudatest"
	"gotune/compute/ref"
	"gotune/nn"
)

// familyShapes are small random models of the families beyond the Llama
// kind with every feature on (see familyConfigs): Gemma 2's soft caps,
// windows shorter than the batch, GeGLU, (1+w) sandwich norms and scaled
// embeddings; Gemma 3's q/k norms and local rope; Phi-3's fused projections
// with LongRoPE past its 4-position pretrained context. Qwen3-MoE and
// Mixtral route to experts (probabilities or weights renormalised over the
// top-k, a dense layer, with and without the load-balancing loss).
var familyShapes = []string{"gemma2", "gemma3", "phi3", "qwen3_moe", "mixtral", "mixtral-noaux"}

// TestDeviceFamilyStepMatchesRef: a full fine-tuning step of each family
// through the seam gives the reference backend's loss and every gradient
// (checkpointing with chunked attention against the plain pass on the
// reference backend itself, and close to it in bf16).
func TestDeviceFamilyStepMatchesRef(t *testing.T) {
	testDeviceStep(t, ref.New(), familyShapes)
}

func TestDeviceFamilyStepMatchesRefOnGPU(t *testing.T) {
	testDeviceStep(t, cudatest.Open(t), familyShapes)
}

// TestDeviceFamilySessionMatchesFullForward: decoding each family with a
// key/value cache gives the full forward's logits at every step. The
// 3-token prompt sits inside Phi-3's pretrained context, so the session
// crosses into the long factors (and runs the sequence again) on the second
// token; Gemma's windows slide over the cache.
func TestDeviceFamilySessionMatchesFullForward(t *testing.T) {
	testDeviceSession(t, ref.New(), familyShapes, []int32{3, 41, 59})
}

func TestDeviceFamilySessionMatchesFullForwardOnGPU(t *testing.T) {
	testDeviceSession(t, cudatest.Open(t), familyShapes, []int32{3, 41, 59})
}

// TestDeviceFamilyLoRAMatchesMerged: a LoRA step (every linear adapted, the
// fused ones and the experts' included, the base frozen) of each family
// gives the loss of the model with the adapters merged into its weights,
// and adapter gradients that are the chain rule of the merged weights'
// gradients: ∂L/∂B = s·∂L/∂W·Aᵀ, ∂L/∂A = s·Bᵀ·∂L/∂W (the merged model
// fully fine-tuned on the reference backend).
func TestDeviceFamilyLoRAMatchesMerged(t *testing.T) {
	testDeviceLoRA(t, ref.New(), familyShapes)
}

func TestDeviceFamilyLoRAMatchesMergedOnGPU(t *testing.T) {
	testDeviceLoRA(t, cudatest.Open(t), familyShapes)
}

func testDeviceLoRA(t *testing.T, d compute.Backend, shapes []string) {
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) {
			m := tinyModel(t, shape, 17)
			adapters := attachTestLoRA(m, 4, 23)
			T := 11
			b := &Batch{B: 2, T: T, IDs: make([]int32, 2*T), Labels: make([]int32, 2*T), Mask: make([]int32, 2*T)}
			for i := range b.IDs {
				b.IDs[i] = int32((i*31 + 2) % m.Cfg.Vocab)
				b.Labels[i] = IgnoreIndex
				b.Mask[i] = b32(i < T+8)
				if i%T > 2 && b.Mask[i] == 1 {
					b.Labels[i] = b.IDs[i]
				}
			}
			scale := float32(1 / float64(b.TrainedTokens()))

			// The oracle: the same model with W + s·B·A in every adapted
			// layer, every weight trained.
			merged := tinyModel(t, shape, 17)
			mergedLin := map[string]*nn.Linear{}
			for _, l := range merged.Linears() {
				mergedLin[l.Name] = l
			}
			for _, p := range merged.Params() {
				p.SetTrainable(true)
			}
			for _, a := range adapters {
				mergeLoRA(mergedLin[a.lin.Name].F32().Data, a.testLoRA, a.lin.In, a.lin.Out)
			}
			csum, _, mgrads := refStep(t, merged, b, scale)

			dm, err := NewDeviceModel(m, d, DeviceOptions{Compute: compute.F32})
			if err != nil {
				t.Fatal(err)
			}
			defer dm.Close()
			if got, want := len(dm.Trainable()), 2*len(adapters); got != want {
				t.Fatalf("%d parameters trained on the device, want the %d LoRA matrices", got, want)
			}
			gsum, _, err := dm.Step(b, scale)
			if err != nil {
				t.Fatal(err)
			}
			if e := abs(gsum-csum) / abs(csum); e > 1e-5 {
				t.Errorf("loss %.8g, merged %.8g (rel %.2g)", gsum, csum, e)
			}
			var worst float64
			for _, l := range adapters {
				ga, gb := l.chainRule(mgrads[mergedLin[l.lin.Name].F32()])
				for _, c := range []struct {
					p    *nn.Param
					want []float32
				}{{l.a, ga}, {l.b, gb}} {
					g, err := dm.Grad(c.p)
					if err != nil {
						t.Fatal(err)
					}
					e := relDiff(g, c.want)
					worst = max(worst, e)
					if e > 1e-4 {
						t.Errorf("%s: gradient differs from the merged model's by %.3g", c.p.Name, e)
					}
				}
			}
			t.Logf("loss %.8g, merged %.8g; worst adapter gradient error %.3g over %d adapters", gsum, csum, worst, len(adapters))
		})
	}
}

// layerLoRA is a testLoRA attached to lin.
type layerLoRA struct {
	*testLoRA
	lin *nn.Linear
}

func (l layerLoRA) r() int { return l.a.Shape[0] }

// chainRule turns the gradient of the merged weight W + s·B·A into the
// gradients of A and B, in float64.
func (l layerLoRA) chainRule(dw []float32) (da, db []float32) {
	r, in, out := l.r(), l.lin.In, l.lin.Out
	s := float64(l.scale)
	da, db = make([]float32, r*in), make([]float32, out*r)
	for k := 0; k < r; k++ {
		for j := 0; j < in; j++ {
			var v float64 // Σ_o B[o,k]·dW[o,j]
			for o := 0; o < out; o++ {
				v += float64(l.b.Data[o*r+k]) * float64(dw[o*in+j])
			}
			da[k*in+j] = float32(s * v)
		}
	}
	for o := 0; o < out; o++ {
		for k := 0; k < r; k++ {
			var v float64 // Σ_j dW[o,j]·A[k,j]
			for j := 0; j < in; j++ {
				v += float64(dw[o*in+j]) * float64(l.a.Data[k*in+j])
			}
			db[o*r+k] = float32(s * v)
		}
	}
	return da, db
}

// attachTestLoRA puts a rank-r testLoRA on every linear of every block
// (random A and B, so that both get gradients) and freezes the base.
func attachTestLoRA(m *Model, rank int, seed uint64) []layerLoRA {
	for _, p := range m.Params() {
		p.SetTrainable(false)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	var out []layerLoRA
	for _, l := range m.Layers {
		lins := []*nn.Linear{l.Q, l.K, l.V, l.O, l.Gate, l.Up, l.Down, l.QKV, l.GateUp}
		if l.MoE != nil {
			for _, e := range l.MoE.Experts {
				lins = append(lins, e.Gate, e.Up, e.Down)
			}
		}
		for _, lin := range lins {
			if lin == nil {
				continue
			}
			a := nn.NewParam(fmt.Sprintf("%s.lora_A", lin.Name), rank, lin.In)
			b := nn.NewParam(fmt.Sprintf("%s.lora_B", lin.Name), lin.Out, rank)
			for _, p := range []*nn.Param{a, b} {
				for i := range p.Data {
					p.Data[i] = float32(0.1 * rng.NormFloat64())
				}
				p.SetTrainable(true)
			}
			g := &testLoRA{a: a, b: b, scale: 0.5}
			lin.Adapter = g
			out = append(out, layerLoRA{g, lin})
		}
	}
	return out
}
