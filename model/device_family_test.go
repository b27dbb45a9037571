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

// TestDeviceFamilyStepMatchesCPU: a full fine-tuning step of each family
// through the seam gives the CPU workspace's loss and every gradient (with
// and without checkpointing, and close to it in bf16).
func TestDeviceFamilyStepMatchesCPU(t *testing.T) {
	testDeviceStep(t, ref.New(), familyShapes)
}

func TestDeviceFamilyStepMatchesCPUOnGPU(t *testing.T) {
	testDeviceStep(t, cudatest.Open(t), familyShapes)
}

// TestDeviceFamilySessionMatchesCPU: decoding each family with a key/value
// cache gives the CPU session's logits at every step. The 3-token prompt
// sits inside Phi-3's pretrained context, so the session crosses into the
// long factors (and runs the sequence again) on the second token; Gemma's
// windows slide over the cache.
func TestDeviceFamilySessionMatchesCPU(t *testing.T) {
	testDeviceSession(t, ref.New(), familyShapes, []int32{3, 41, 59})
}

func TestDeviceFamilySessionMatchesCPUOnGPU(t *testing.T) {
	testDeviceSession(t, cudatest.Open(t), familyShapes, []int32{3, 41, 59})
}

// TestDeviceFamilyLoRAMatchesCPU: a LoRA step (every linear adapted, the
// fused ones included, the base frozen) of each family on the reference
// backend gives the CPU workspace's loss and adapter gradients.
func TestDeviceFamilyLoRAMatchesCPU(t *testing.T) {
	testDeviceLoRA(t, ref.New(), familyShapes)
}

func TestDeviceFamilyLoRAMatchesCPUOnGPU(t *testing.T) {
	testDeviceLoRA(t, cudatest.Open(t), familyShapes)
}

func testDeviceLoRA(t *testing.T, d compute.Backend, shapes []string) {
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) {
			m := tinyModel(t, shape, 17)
			adapters := attachGradLoRA(m, 4, 23)
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
			csum, _ := m.NewWorkspace().Step(b, scale)
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
				t.Errorf("loss %.8g, CPU %.8g (rel %.2g)", gsum, csum, e)
			}
			var worst float64
			for _, l := range adapters {
				for _, p := range l.Params() {
					g, err := dm.Grad(p)
					if err != nil {
						t.Fatal(err)
					}
					e := relDiff(g, p.Grad)
					worst = max(worst, e)
					if e > 1e-4 {
						t.Errorf("%s: gradient differs from the CPU's by %.3g", p.Name, e)
					}
				}
			}
			t.Logf("loss %.8g, CPU %.8g; worst adapter gradient error %.3g over %d adapters", gsum, csum, worst, len(adapters))
		})
	}
}

// gradLoRA is testLoRA with a backward pass, so that the CPU workspace can
// train it: y = W·x + s·B·(A·x), base weights frozen.
type gradLoRA struct{ testLoRA }

func (l *gradLoRA) Backward(lin *nn.Linear, dx, dy, x []float32, n int) {
	lin.BaseBackward(dx, dy, x, n)
	r := l.a.Shape[0]
	for i := 0; i < n; i++ {
		xi, dyi := x[i*lin.In:(i+1)*lin.In], dy[i*lin.Out:(i+1)*lin.Out]
		h := make([]float64, r) // A·x
		for k := range h {
			for j, v := range xi {
				h[k] += float64(v) * float64(l.a.Data[k*lin.In+j])
			}
		}
		dh := make([]float64, r) // s·Bᵀ·dy
		for o, g := range dyi {
			for k := 0; k < r; k++ {
				l.b.Grad[o*r+k] += l.scale * g * float32(h[k])
				dh[k] += float64(l.scale) * float64(g) * float64(l.b.Data[o*r+k])
			}
		}
		for k, v := range dh {
			for j := range xi {
				l.a.Grad[k*lin.In+j] += float32(v) * xi[j]
				if dx != nil {
					dx[i*lin.In+j] += float32(v) * l.a.Data[k*lin.In+j]
				}
			}
		}
	}
}

// attachGradLoRA puts a rank-r gradLoRA on every linear of every block
// (random A and B, so that both get gradients) and freezes the base.
func attachGradLoRA(m *Model, rank int, seed uint64) []*gradLoRA {
	for _, p := range m.Params() {
		p.SetTrainable(false)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	var out []*gradLoRA
	for _, l := range m.Layers {
		lins := []*nn.Linear{l.Q, l.K, l.V, l.O, l.Gate, l.Up, l.Down, l.QKV, l.GateUp}
		if l.MoE != nil {
			lins = append(lins, l.MoE.linears()...)
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
			g := &gradLoRA{testLoRA{a: a, b: b, scale: 0.5}}
			lin.Adapter = g
			out = append(out, g)
		}
	}
	return out
}
