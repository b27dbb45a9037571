package gguf

import "testing"

func benchEncode(b *testing.B, typ TensorType) {
	x := testBlocks(1 << 20)
	b.SetBytes(int64(4 * len(x)))
	for b.Loop() {
		if _, err := Encode(x, typ); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeQ8_0(b *testing.B) { benchEncode(b, Q8_0) }
func BenchmarkEncodeQ4_0(b *testing.B) { benchEncode(b, Q4_0) }
func BenchmarkEncodeQ4_K(b *testing.B) { benchEncode(b, Q4_K) }
func BenchmarkEncodeF16(b *testing.B)  { benchEncode(b, F16) }

func BenchmarkDecodeQ4_K(b *testing.B) {
	x := testBlocks(1 << 20)
	enc, _ := Encode(x, Q4_K)
	b.SetBytes(int64(4 * len(x)))
	for b.Loop() {
		Decode(x, enc, Q4_K)
	}
}

func BenchmarkEncodeQ6_K(b *testing.B) { benchEncode(b, Q6_K) }
