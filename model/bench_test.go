package model

import (
	"testing"
)

// BenchmarkDecode measures KV-cache decoding on the smollm2-135m shape: a
// 128-token prompt, then 32 tokens one at a time. It reports decoded tokens
// per second (prefill included in the time, as a user waits for it).
func BenchmarkDecode(b *testing.B) {
	cfg, err := Shape("smollm2-135m")
	if err != nil {
		b.Fatal(err)
	}
	m := New(cfg)
	m.RandomInit(1)
	prompt := make([]int32, 128)
	for i := range prompt {
		prompt[i] = int32(i * 37 % cfg.Vocab)
	}
	const gen = 32
	s := m.NewSession(len(prompt) + gen)
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
