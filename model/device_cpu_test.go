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
	m := decodeBenchModel(b)
	dm, err := NewDeviceModel(m, cputest.Open(), DeviceOptions{Compute: compute.F32, Inference: true})
	if err != nil {
		b.Fatal(err)
	}
	defer dm.Close()
	s, err := dm.NewSession(decodePrompt + decodeGen)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchDecode(b, m.Cfg.Vocab, s.Reset, s.Feed)
}

func TestDeviceGroupSessionMatchesCPUOnHost(t *testing.T) {
	testDeviceGroupSession(t, cputest.Open())
}
