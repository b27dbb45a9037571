package model

import (
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
)

// The block written over the compute seam also runs on the CPU backend,
// with the kernels of the CPU trainer: same loss, gradients and decoding as
// the workspace path.

func TestDeviceStepMatchesCPUOnHost(t *testing.T) {
	testDeviceStep(t, cputest.Open(), append(llamaShapes, familyShapes...))
}

func TestDeviceSessionMatchesCPUOnHost(t *testing.T) {
	testDeviceSession(t, cputest.Open(), llamaShapes, []int32{3, 141, 59, 26, 535})
	testDeviceSession(t, cputest.Open(), familyShapes, []int32{3, 41, 59})
}

func TestDeviceLoRAMatchesCPUOnHost(t *testing.T) {
	testDeviceLoRA(t, cputest.Open(), familyShapes)
}

// BenchmarkDecodeHost is BenchmarkDecode through the compute seam on the CPU
// backend: the same prompt and greedy tokens, to compare with the workspace
// session.
func BenchmarkDecodeHost(b *testing.B) {
	cfg, err := Shape("smollm2-135m")
	if err != nil {
		b.Fatal(err)
	}
	m := New(cfg)
	m.RandomInit(1)
	dm, err := NewDeviceModel(m, cputest.Open(), DeviceOptions{Compute: compute.F32, Inference: true})
	if err != nil {
		b.Fatal(err)
	}
	defer dm.Close()
	prompt := make([]int32, 128)
	for i := range prompt {
		prompt[i] = int32(i * 37 % cfg.Vocab)
	}
	const gen = 32
	s, err := dm.NewSession(len(prompt) + gen)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for range b.N {
		s.Reset()
		logits, err := s.Feed(prompt)
		if err != nil {
			b.Fatal(err)
		}
		for range gen {
			if logits, err = s.Feed([]int32{int32(Argmax(logits))}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(gen*b.N)/b.Elapsed().Seconds(), "tok/s")
}

func TestDeviceGroupSessionMatchesCPUOnHost(t *testing.T) {
	testDeviceGroupSession(t, cputest.Open())
}
