package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// weightRows returns rows×256 values drawn as the named distribution,
// scaled to the magnitude of real LLM weights (σ ≈ 0.02).
func weightRows(dist string, rows int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	x := make([]float32, rows*qkK)
	for i := range x {
		var v float64
		switch dist {
		case "gauss":
			v = rng.NormFloat64()
		case "laplace":
			v = rng.ExpFloat64()
			if rng.IntN(2) == 0 {
				v = -v
			}
		case "student3": // Student's t with 3 degrees of freedom
			var chi2 float64
			for range 3 {
				g := rng.NormFloat64()
				chi2 += g * g
			}
			v = rng.NormFloat64() / math.Sqrt(chi2/3)
		case "uniform":
			v = 2*rng.Float64() - 1
		case "positive":
			v = rng.ExpFloat64()
		}
		x[i] = float32(0.02 * v)
	}
	return x
}

// TestQuantMatchesGGMLHarness compares the Q8_0, Q4_0, Q4_K and Q6_K
// encoders with ggml's reference quantizers byte for byte. It needs the
// program built from scripts/ggmlquant/harness.c and ggml's ggml-quants.c
// (see that file); set GGML_QUANT_HARNESS to its path to run it.
func TestQuantMatchesGGMLHarness(t *testing.T) {
	prog := os.Getenv("GGML_QUANT_HARNESS")
	if prog == "" {
		t.Skip("GGML_QUANT_HARNESS not set")
	}
	var x []float32
	for i, d := range []string{"gauss", "laplace", "student3", "uniform", "positive"} {
		x = append(x, weightRows(d, 400, uint64(i))...)
	}
	x = append(x, testBlocks(1024)...)
	x = append(x, edgeBlocks()...)
	x = append(x, mixedBlocks(2000, 42)...)
	x = append(x, exactRows(256, 2026)...)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.f32")
	raw := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	if err := os.WriteFile(in, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		typ  TensorType
	}{{"q8_0", Q8_0}, {"q4_0", Q4_0}, {"q4k", Q4_K}, {"q6k", Q6_K}} {
		out := filepath.Join(dir, c.name)
		if b, err := exec.Command(prog, c.name, in, out).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", prog, err, b)
		}
		want, _ := os.ReadFile(out)
		got, err := Encode(x, c.typ)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != len(got) {
			t.Fatalf("%s: ggml wrote %d bytes, gotune %d", c.typ, len(want), len(got))
		}
		blocks := len(x) / c.typ.BlockSize()
		bs := len(got) / blocks
		diff := 0
		for b := 0; b < blocks; b++ {
			if !bytes.Equal(got[b*bs:(b+1)*bs], want[b*bs:(b+1)*bs]) {
				if diff < 3 {
					t.Errorf("%s block %d differs:\n got %x\nwant %x", c.typ, b, got[b*bs:(b+1)*bs], want[b*bs:(b+1)*bs])
				}
				diff++
			}
		}
		t.Logf("%s: %d of %d blocks differ", c.typ, diff, blocks)
	}
}

// mixedBlocks returns blocks whose sub-blocks each have their own random
// spread and offset, so that some are all positive, some all negative,
// some nearly constant and some zero: the shapes that steer the scale
// searches into their corner cases.
func mixedBlocks(n int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n*qkK)
	for s := 0; s < len(x)/16; s++ {
		spread := math.Pow(10, -6*rng.Float64())
		offset := (2*rng.Float64() - 1) * math.Pow(10, 2-4*rng.Float64())
		kind := rng.IntN(10)
		for i := 16 * s; i < 16*s+16; i++ {
			switch kind {
			case 0:
				x[i] = 0
			case 1:
				x[i] = float32(offset)
			default:
				x[i] = float32(offset + spread*rng.NormFloat64())
			}
		}
	}
	return x
}
