package quant

import (
	"gotune/nn"
	"testing"
)

func TestFootprintQwen3_0_6B(t *testing.T) {
	s := Qwen3_0_6B()
	const (
		linearParams = 28 * (2048*1024 + 2*1024*1024 + 1024*2048 + 3*3072*1024) // 440,401,920
		embedParams  = 151936 * 1024                                            // 155,582,464
		normParams   = 28*(2*1024+2*128) + 1024                                 // 65,536
		blocks       = linearParams / 64
	)
	// Bytes of the 4-bit layer tables per matrix: quant_map (64) + decode table (2048).
	const tables4 = 196 * (64 + 2048)
	cases := []struct {
		name          string
		linear, embed Options
		want          int64
	}{
		{"f32", Options{Type: F32}, Options{Type: F32}, 4 * (linearParams + embedParams + normParams)},
		{"bf16", Options{Type: BF16}, Options{Type: BF16}, 2 * (linearParams + embedParams + normParams)},
		{"int8 (linear+embeddings int8-row)", Options{Type: Int8Row}, Options{Type: Int8Row},
			linearParams + 4*(28*(2048+2*1024+1024+2*3072+1024)) + embedParams + 4*151936 + 4*normParams},
		{"nf4 (linear+embeddings)", Options{Type: NF4}, Options{Type: NF4},
			linearParams/2 + 4*blocks + tables4 + embedParams/2 + 4*embedParams/64 + 64 + 2048 + 4*normParams},
		{"nf4 linear, bf16 embeddings (QLoRA)", Options{Type: NF4}, Options{Type: BF16},
			linearParams/2 + 4*blocks + tables4 + 2*embedParams + 2*normParams},
		{"nf4+dq linear, bf16 embeddings", Options{Type: NF4, DoubleQuant: true}, Options{Type: BF16},
			linearParams/2 + blocks + 4*(28*(2048*1024/64/256+2*1024*1024/64/256+1024*2048/64/256+3*3072*1024/64/256)) + tables4 + 196*(1024+4) + 2*embedParams + 2*normParams},
	}
	for _, tc := range cases {
		m, err := Footprint(s, tc.linear, tc.embed)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if m.LinearParams != linearParams || m.EmbeddingParams != embedParams || m.NormParams != normParams {
			t.Errorf("%s: params %d/%d/%d, want %d/%d/%d", tc.name, m.LinearParams, m.EmbeddingParams, m.NormParams, linearParams, embedParams, normParams)
		}
		if m.TotalBytes != tc.want {
			t.Errorf("%s: %d bytes, want %d", tc.name, m.TotalBytes, tc.want)
		}
		t.Logf("%-36s linear %7.1f MB  embeddings %7.1f MB  norms %.2f MB  total %7.1f MB", tc.name,
			float64(m.LinearBytes)/1e6, float64(m.EmbeddingBytes)/1e6, float64(m.NormBytes)/1e6, float64(m.TotalBytes)/1e6)
	}
	if _, err := Footprint(ModelShape{}, Options{Type: NF4}, Options{Type: F32}); err == nil {
		t.Error("Footprint of an empty shape succeeded")
	}
}

// BytesFor predicts the Bytes of a weight stored in every form exactly
// (the planner counts with it).
func TestBytesForMatchesWeight(t *testing.T) {
	for _, opt := range append(kernelOpts, Options{Type: NF4, DoubleQuant: true}, Options{Type: FP4, BlockSize: 4096}, Options{Type: F32}, Options{Type: BF16}) {
		for _, sh := range [][2]int{{1, 1}, {7, 13}, {300, 257}} {
			w, err := opt.Store(&nn.Param{Shape: []int{sh[0], sh[1]}, Data: normals(1, sh[0]*sh[1], 1)})
			if err != nil {
				t.Fatal(err)
			}
			got, err := BytesFor(sh[0], sh[1], opt)
			if err != nil || got != w.Bytes() {
				t.Errorf("%+v %v: BytesFor %d (%v), %T.Bytes %d", opt, sh, got, err, w, w.Bytes())
			}
		}
	}
}
