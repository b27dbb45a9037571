package model

import (
	"testing"

	"gotune/compute"
	"gotune/compute/cuda/cudatest"
	"gotune/compute/ref"
)

// TestDeviceStepMatchesRef: on the reference backend, checkpointing with
// chunked attention gives the loss and every gradient of full fine-tuning
// of the plain pass, and bf16 stays close to it, with right padding,
// GQA/MQA, biases and q/k norms (the three reference shapes). The same on
// the CPU backend (OnHost) and a GPU compares them with the reference
// backend's plain f32 pass.
func TestDeviceStepMatchesRef(t *testing.T) {
	testDeviceStep(t, ref.New(), llamaShapes)
}

func TestDeviceStepMatchesRefOnGPU(t *testing.T) {
	testDeviceStep(t, cudatest.Open(t), llamaShapes)
}

// llamaShapes are the three reference shapes of the Llama kind.
var llamaShapes = []string{"ref-qwen3", "ref-llama", "ref-qwen2"}

// testDeviceStep runs full fine-tuning steps of each shape (a Shape name or
// a familyConfigs key) on d against the reference backend's f32 step.
func testDeviceStep(t *testing.T, d compute.Backend, shapes []string) {
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) {
			m := tinyModel(t, shape, 7)
			for _, p := range m.Params() {
				p.SetTrainable(true)
			}
			T := 11
			b := &Batch{B: 2, T: T, IDs: make([]int32, 2*T), Labels: make([]int32, 2*T), Mask: make([]int32, 2*T)}
			for i := range b.IDs {
				b.IDs[i] = int32((i*37 + 5) % m.Cfg.Vocab)
				b.Labels[i] = IgnoreIndex
				b.Mask[i] = b32(i < T+7)
				if i%T > 3 && b.Mask[i] == 1 {
					b.Labels[i] = b.IDs[i]
				}
			}
			scale := float32(1 / float64(b.TrainedTokens()))
			csum, ccount, want := refStep(t, m, b, scale)
			var gsum float64
			for _, ckpt := range []bool{false, true} {
				dm, err := NewDeviceModel(m, d, DeviceOptions{Compute: compute.F32, Checkpoint: ckpt})
				if err != nil {
					t.Fatal(err)
				}
				if ckpt {
					// One sequence's scores at a time: the chunked path.
					dm.attnBudget = 1
				}
				var gcount int
				gsum, gcount, err = dm.Step(b, scale)
				if err != nil {
					t.Fatal(err)
				}
				if gcount != ccount {
					t.Fatalf("trained tokens %d, reference %d", gcount, ccount)
				}
				if e := abs(gsum-csum) / abs(csum); e > 1e-5 {
					t.Errorf("checkpoint %v: loss %.8g, reference %.8g (rel %.2g)", ckpt, gsum, csum, e)
				}
				for _, p := range m.Params() {
					g, err := dm.Grad(p)
					if err != nil {
						t.Fatal(err)
					}
					if e := relDiff(g, want[p]); e > 1e-4 {
						t.Errorf("checkpoint %v: %s: gradient differs from the reference's by %.3g", ckpt, p.Name, e)
					}
				}
				dm.Close()
			}
			// bf16 mixed precision stays close to f32.
			dm16, err := NewDeviceModel(m, d, DeviceOptions{Compute: compute.BF16})
			if err != nil {
				t.Fatal(err)
			}
			defer dm16.Close()
			hsum, _, err := dm16.Step(b, scale)
			if err != nil {
				t.Fatal(err)
			}
			if e := abs(hsum-csum) / abs(csum); e > 2e-2 {
				t.Errorf("bf16 loss %.6g, f32 %.6g (rel %.2g)", hsum, csum, e)
			}
			t.Logf("loss f32 %.8g, bf16 %.8g, reference %.8g", gsum, hsum, csum)
		})
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestDeviceSessionMatchesFullForward: decoding through the seam with a
// key/value cache (a prompt, then 16 tokens one at a time) gives at every
// step the logits of a full forward pass over the tokens so far on the
// reference backend (no cache), on the three reference shapes.
func TestDeviceSessionMatchesFullForward(t *testing.T) {
	testDeviceSession(t, ref.New(), llamaShapes, []int32{3, 141, 59, 26, 535})
}

func TestDeviceSessionMatchesFullForwardOnGPU(t *testing.T) {
	testDeviceSession(t, cudatest.Open(t), llamaShapes, []int32{3, 141, 59, 26, 535})
}

// testDeviceSession decodes prompt and then 16 greedy tokens with each
// shape on d against the reference backend's full forward.
func testDeviceSession(t *testing.T, d compute.Backend, shapes []string, prompt []int32) {
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) {
			m := tinyModel(t, shape, 11)
			V := m.Cfg.Vocab
			dm, err := NewDeviceModel(m, d, DeviceOptions{Compute: compute.F32, Inference: true})
			if err != nil {
				t.Fatal(err)
			}
			defer dm.Close()
			gs, err := dm.NewSession(32)
			if err != nil {
				t.Fatal(err)
			}
			defer gs.Close()
			oracle := newDM(t, m, ref.New(), DeviceOptions{Inference: true})
			seq := append([]int32(nil), prompt...)
			feed := prompt
			for step := 0; step <= 16; step++ {
				full := deviceLogits(t, oracle, &Batch{B: 1, T: len(seq), IDs: seq})
				want := full[(len(seq)-1)*V:]
				got, err := gs.Feed(feed)
				if err != nil {
					t.Fatal(err)
				}
				if e := relErr32(got, want); e > 1e-5 {
					t.Fatalf("step %d: logits differ from the full forward's by %.3g", step, e)
				}
				feed = []int32{int32(Argmax(want))}
				seq = append(seq, feed...)
			}
			if gs.Len() != len(prompt)+16 {
				t.Errorf("session holds %d positions, want %d", gs.Len(), len(prompt)+16)
			}
		})
	}
}

// TestDevicePackedMatchesSeparateRows: packed rows (segment ids, positions
// restarting per sample) give the loss and gradients of the same samples
// in rows of their own, on the reference and the CPU backend.
func TestDevicePackedMatchesSeparateRows(t *testing.T) {
	// Gemma 2's windows and Qwen3-MoE's routing see the packed rows too.
	for _, shape := range []string{"ref-qwen3", "gemma2", "qwen3_moe"} {
		t.Run(shape, func(t *testing.T) {
			onBackends(t, func(t *testing.T, be compute.Backend) { testDevicePacked(t, be, shape) })
		})
	}
}

func testDevicePacked(t *testing.T, be compute.Backend, shape string) {
	m := tinyModel(t, shape, 13)
	for _, p := range m.Params() {
		p.SetTrainable(true)
	}
	const T, cut = 14, 6 // a second sample from position 6 of each row
	b := &Batch{B: 2, T: T, IDs: make([]int32, 2*T), Labels: make([]int32, 2*T), Seg: make([]int32, 2*T), Pos: make([]int32, 2*T)}
	// The same four samples unpacked: one per row, right-padded.
	u := &Batch{B: 4, T: T - cut, IDs: make([]int32, 4*(T-cut)), Labels: make([]int32, 4*(T-cut)), Mask: make([]int32, 4*(T-cut))}
	for i := range u.Labels {
		u.Labels[i] = IgnoreIndex
	}
	for i := range b.IDs {
		t := i % T
		b.IDs[i] = int32((i*53 + 7) % m.Cfg.Vocab)
		b.Labels[i] = b.IDs[i]
		b.Seg[i], b.Pos[i] = int32(i/T*2), int32(t)
		if t >= cut {
			b.Seg[i], b.Pos[i] = int32(i/T*2+1), int32(t-cut)
		}
		if t == 0 || t == cut {
			b.Labels[i] = IgnoreIndex
		}
		j := int(b.Seg[i])*u.T + int(b.Pos[i])
		u.IDs[j], u.Labels[j], u.Mask[j] = b.IDs[i], b.Labels[i], 1
	}
	if b.TrainedTokens() != u.TrainedTokens() {
		t.Fatalf("packed batch trains %d tokens, unpacked %d", b.TrainedTokens(), u.TrainedTokens())
	}
	scale := float32(1 / float64(b.TrainedTokens()))
	sep := newDM(t, m, be, DeviceOptions{})
	csum, _ := mustStep(t, sep, u, scale)
	dm := newDM(t, m, be, DeviceOptions{})
	gsum, _ := mustStep(t, dm, b, scale)
	if e := abs(gsum-csum) / abs(csum); e > 1e-5 {
		t.Errorf("packed loss %.8g, separate rows %.8g", gsum, csum)
	}
	for _, p := range m.Params() {
		g, err := dm.Grad(p)
		if err != nil {
			t.Fatal(err)
		}
		w, err := sep.Grad(p)
		if err != nil {
			t.Fatal(err)
		}
		if e := relDiff(g, w); e > 1e-4 {
			t.Errorf("%s: gradient differs from the separate rows' by %.3g", p.Name, e)
		}
	}
}

// TestDeviceRefusesNewFamilies: every family the CPU trains loads on the
// device block (the reference models of Gemma 2/3, Phi-3, Qwen3-MoE and
// Mixtral), and an architecture it does not implement is refused with the
// reason, so `device: auto` trains it on the CPU with a note instead of
// computing something else.
func TestDeviceRefusesNewFamilies(t *testing.T) {
	for _, dir := range []string{"phi3", "phi3_longrope", "gemma2", "gemma3_text", "qwen3_moe", "mixtral"} {
		m, err := Load("../testdata/reference/"+dir+"/model", LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dm, err := NewDeviceModel(m, ref.New(), DeviceOptions{Compute: compute.F32})
		if err != nil {
			t.Errorf("%s: %v", dir, err)
			continue
		}
		dm.Close()
	}
	m := tinyModel(t, "ref-llama", 1)
	m.Cfg.Act = "relu2"
	_, err := NewDeviceModel(m, ref.New(), DeviceOptions{Compute: compute.F32})
	if err == nil || !contains(err.Error(), "relu2") || !contains(err.Error(), m.Cfg.ModelType) {
		t.Errorf("NewDeviceModel error %v, want one naming %s and relu2", err, m.Cfg.ModelType)
	}
}
