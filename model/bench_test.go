package model

import (
	"testing"

	"gotune/compute/cpu/cputest"
)

// BenchmarkDecode measures KV-cache decoding on the smollm2-135m shape on
// the CPU backend: a 128-token prompt, then 32 tokens one at a time. It
// reports decoded tokens per second (prefill included in the time, as a user
// waits for it).
func BenchmarkDecode(b *testing.B) {
	m := decodeBenchModel(b)
	dm := newDM(b, m, cputest.Open(), DeviceOptions{Inference: true})
	s, err := dm.NewSession(decodePrompt + decodeGen)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchDecode(b, m.Cfg.Vocab, s.Reset, s.Feed)
}

const decodePrompt, decodeGen = 128, 32

// decodeBenchModel is the random smollm2-135m model the decoding
// benchmarks run.
func decodeBenchModel(b *testing.B) *Model {
	cfg, err := Shape("smollm2-135m")
	if err != nil {
		b.Fatal(err)
	}
	m := New(cfg)
	m.RandomInit(1)
	return m
}

// benchDecode times a decodePrompt-token prompt and decodeGen greedy tokens
// through a session's reset and feed, reporting tokens per second.
func benchDecode(b *testing.B, vocab int, reset func(), feed func([]int32) ([]float32, error)) {
	prompt := make([]int32, decodePrompt)
	for i := range prompt {
		prompt[i] = int32(i * 37 % vocab)
	}
	b.ResetTimer()
	for range b.N {
		reset()
		logits, err := feed(prompt)
		if err != nil {
			b.Fatal(err)
		}
		for range decodeGen {
			if logits, err = feed([]int32{int32(Argmax(logits))}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(decodeGen*b.N)/b.Elapsed().Seconds(), "tok/s")
}
