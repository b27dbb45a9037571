package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gotune/compute"
	"gotune/compute/ref"
	"gotune/nn"
)

// TestDeviceTokenEntropies: at a temperature, the entropies the device
// computes with the log-probabilities equal those of softmax(logits/T) of
// the reference backend's full forward (in float64), and computing them
// changes no log-probability, on the reference and the CPU backend.
func TestDeviceTokenEntropies(t *testing.T) {
	onBackends(t, testDeviceTokenEntropies)
}

func testDeviceTokenEntropies(t *testing.T, be compute.Backend) {
	const temp = 0.7
	m := tinyModel(t, "ref-qwen3", 24)
	b := gradBatch(m.Cfg.Vocab)
	V := m.Cfg.Vocab
	logits := refLogits(t, m, b)
	wantLP, _ := logSoftmaxAt(logits, b, V, temp)
	var want []float64
	for r := 0; r < b.B; r++ {
		for p := 0; p+1 < b.T; p++ {
			if b.Labels[r*b.T+p+1] == IgnoreIndex {
				continue
			}
			row := logits[(r*b.T+p)*V : (r*b.T+p+1)*V]
			mx := math.Inf(-1)
			for _, v := range row {
				mx = math.Max(mx, float64(v)/temp)
			}
			var z float64
			for _, v := range row {
				z += math.Exp(float64(v)/temp - mx)
			}
			var h float64
			for _, v := range row {
				q := math.Exp(float64(v)/temp-mx) / z
				h -= q * math.Log(q)
			}
			want = append(want, h)
		}
	}
	dm := newDM(t, m, be, DeviceOptions{Inference: true})
	dm.Temperature = temp
	plain := mustLogProbs(t, dm, b)
	if dm.TokenEntropies() != nil {
		t.Error("entropies without SetEntropy")
	}
	dm.SetEntropy(true)
	lp := mustLogProbs(t, dm, b)
	got := dm.TokenEntropies()
	if len(got) != len(want) {
		t.Fatalf("%d entropies, %d trained tokens", len(got), len(want))
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-5*want[i] {
			t.Errorf("token %d: entropy %.7g, want %.7g", i, got[i], want[i])
		}
		if lp[i] != plain[i] || math.Abs(lp[i]-wantLP[i]) > 1e-5*math.Max(1, math.Abs(wantLP[i])) {
			t.Errorf("token %d: log p %.7g with entropies, %.7g without, want %.7g", i, lp[i], plain[i], wantLP[i])
		}
	}
}

// TestDeviceReference: after training steps, WithReference scores with the
// weights KeepReference kept (full fine-tuning, and LoRA whose A matrices
// run as fused groups), refuses a backward pass, and restore brings back
// the trained weights, which CopyToHost leaves in the host model (a fresh
// copy of it scores as the trained one).
func TestDeviceReference(t *testing.T) {
	for _, lora := range []bool{false, true} {
		t.Run(fmt.Sprint("lora ", lora), func(t *testing.T) {
			m := tinyModel(t, "ref-qwen3", 23)
			if lora {
				r := rand.New(rand.NewPCG(7, 8))
				for _, l := range m.Linears() {
					a := &nn.Param{Name: l.Name + ".lora_A", Shape: []int{2, l.In}, Data: randVec32(r, 2*l.In, 0.3)}
					bb := &nn.Param{Name: l.Name + ".lora_B", Shape: []int{l.Out, 2}, Data: randVec32(r, 2*l.Out, 0.3)}
					a.SetTrainable(true)
					bb.SetTrainable(true)
					l.Adapter = &testLoRA{a: a, b: bb, scale: 2}
				}
			} else {
				setTrainable(m)
			}
			b := gradBatch(m.Cfg.Vocab)
			dm, err := NewDeviceModel(m, ref.New(), DeviceOptions{Compute: compute.F32})
			if err != nil {
				t.Fatal(err)
			}
			defer dm.Close()
			if lora && dm.LoRAGroups() == 0 {
				t.Fatal("no fused LoRA groups: the test would not cover them")
			}
			before, err := dm.TokenLogProbs(b)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := dm.WithReference(); err == nil {
				t.Error("WithReference before KeepReference: no error")
			}
			if err := dm.KeepReference(); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if _, err := dm.TokenLogProbs(b); err != nil {
					t.Fatal(err)
				}
				coef := make([]float32, len(before))
				for i := range coef {
					coef[i] = 1
				}
				dm.ZeroGrad()
				if err := dm.BackwardTokens(coef); err != nil {
					t.Fatal(err)
				}
				if _, err := dm.AdamW(AdamWConfig{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}); err != nil {
					t.Fatal(err)
				}
			}
			after, err := dm.TokenLogProbs(b)
			if err != nil {
				t.Fatal(err)
			}
			restore, err := dm.WithReference()
			if err != nil {
				t.Fatal(err)
			}
			refLP, err := dm.TokenLogProbs(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := dm.BackwardTokens(make([]float32, len(refLP))); err == nil || !strings.Contains(err.Error(), "reference") {
				t.Errorf("BackwardTokens under the reference: %v, want a refusal", err)
			}
			restore()
			again, err := dm.TokenLogProbs(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := dm.CopyToHost(); err != nil {
				t.Fatal(err)
			}
			cpu := refTokenLogProbs(t, m, b, 1)
			var moved, dRef, dAgain, dCPU float64
			for i := range before {
				moved = math.Max(moved, math.Abs(after[i]-before[i]))
				dRef = math.Max(dRef, math.Abs(refLP[i]-before[i]))
				dAgain = math.Max(dAgain, math.Abs(again[i]-after[i]))
				dCPU = math.Max(dCPU, math.Abs(cpu[i]-after[i]))
			}
			if moved < 1e-3 {
				t.Fatalf("training moved log p by %.3g only: the test proves nothing", moved)
			}
			if dRef > 1e-6 || dAgain > 1e-6 || dCPU > 1e-4 {
				t.Errorf("log p: reference differs from the initial by %.3g, restored from trained by %.3g, copied to the host from device by %.3g", dRef, dAgain, dCPU)
			}
		})
	}
}
