package model_test

import (
	"math"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
	"gotune/compute/ref"
	"gotune/model"
	"gotune/nn"
	"gotune/peft"
)

// TestDeviceBF16LoadedOnHost: a model loaded with bf16 storage (its linear
// weights only as bfloat16 bits) trains LoRA and DoRA through the compute
// seam on the CPU backend, its frozen weights held in 16 bits and read in
// place, with the reference backend's loss and adapter gradients on the
// same bf16 model (close to them in bf16 compute); and it decodes with the
// logits of the reference backend's full forward at every step. Every
// reference family: q/k norms and GQA (qwen3), llama, Gemma 2 and 3's
// pieces, Phi-3's fused projections and two mixtures of experts (router
// and experts in bf16).
func TestDeviceBF16LoadedOnHost(t *testing.T) {
	for _, c := range []struct {
		dir  string
		dora bool
	}{{"qwen3", false}, {"qwen3", true}, {"llama", false}, {"gemma2", false}, {"gemma3_text", false}, {"phi3", false}, {"qwen3_moe", false}, {"mixtral", false}} {
		name := c.dir
		if c.dora {
			name += "-dora"
		}
		t.Run(name, func(t *testing.T) {
			m, err := model.Load("../testdata/reference/"+c.dir+"/model", model.LoadOptions{Storage: model.BF16})
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range m.Linears() {
				if _, ok := l.W.(*nn.BF16); !ok {
					t.Fatalf("%s: not held in bf16 after a bf16 load", l.Name)
				}
			}
			set, err := peft.AttachLoRA(m, peft.LoRAConfig{R: 4, Alpha: 8, Targets: []string{"all"}, DoRA: c.dora}, 3)
			if err != nil {
				t.Fatal(err)
			}
			randomize(set.Params(), 9, 0.05) // B starts at zero: give every gradient a value
			b := peftBatch(m.Cfg.Vocab)
			scale := float32(1 / float64(b.TrainedTokens()))
			csum, _, want := model.RefStep(t, m, b, scale)

			dm, err := model.NewDeviceModel(m, cputest.Open(), model.DeviceOptions{Compute: compute.F32})
			if err != nil {
				t.Fatal(err)
			}
			defer dm.Close()
			gsum, _, err := dm.Step(b, scale)
			if err != nil {
				t.Fatal(err)
			}
			if e := math.Abs(gsum-csum) / math.Abs(csum); e > 1e-5 {
				t.Errorf("loss %.8g, reference %.8g (rel %.2g)", gsum, csum, e)
			}
			var worst float64
			for _, p := range set.Params() {
				g, err := dm.Grad(p)
				if err != nil {
					t.Fatal(err)
				}
				e := relErr(g, want[p])
				worst = max(worst, e)
				if !(e <= 1e-4) {
					t.Errorf("%s: gradient differs from the reference's by %.3g", p.Name, e)
				}
			}
			t.Logf("loss %.8g, reference %.8g; worst adapter gradient error %.3g", gsum, csum, worst)
			for _, l := range m.Linears() {
				if l.F32() != nil {
					t.Fatalf("%s: the host layer got a float weight", l.Name)
				}
			}
			// Mixed precision (what `bf16: true` trains in on a device) reads
			// the same 16-bit weights and stays close.
			dm16, err := model.NewDeviceModel(m, cputest.Open(), model.DeviceOptions{Compute: compute.BF16})
			if err != nil {
				t.Fatal(err)
			}
			defer dm16.Close()
			hsum, _, err := dm16.Step(b, scale)
			if err != nil {
				t.Fatal(err)
			}
			if e := math.Abs(hsum-csum) / math.Abs(csum); e > 2e-2 {
				t.Errorf("bf16 compute: loss %.6g, reference %.6g (rel %.2g)", hsum, csum, e)
			}
			if c.dora {
				return
			}

			// Decoding: a prompt, then greedy tokens one at a time, with the
			// adapters on.
			inf, err := model.NewDeviceModel(m, cputest.Open(), model.DeviceOptions{Compute: compute.F32, Inference: true})
			if err != nil {
				t.Fatal(err)
			}
			defer inf.Close()
			gs, err := inf.NewSession(24)
			if err != nil {
				t.Fatal(err)
			}
			defer gs.Close()
			oracle, err := model.NewDeviceModel(m, ref.New(), model.DeviceOptions{Compute: compute.F32, Inference: true})
			if err != nil {
				t.Fatal(err)
			}
			defer oracle.Close()
			V := m.Cfg.Vocab
			seq := []int32{3, 41, 59, 26}
			feed := seq
			for step := 0; step <= 8; step++ {
				full := model.DeviceLogits(t, oracle, &model.Batch{B: 1, T: len(seq), IDs: seq})
				want := full[len(full)-V:]
				got, err := gs.Feed(feed)
				if err != nil {
					t.Fatal(err)
				}
				if e := relErr(got, want); !(e <= 1e-5) {
					t.Fatalf("step %d: logits differ from the full forward's by %.3g", step, e)
				}
				feed = []int32{int32(model.Argmax(want))}
				seq = append(seq, feed...)
			}
		})
	}
}
