//go:build linux && (amd64 || arm64)

package cuda

import (
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gotune/compute"
)

// TestAdam8MapInKernels: the quantization table written into kernels.cu is
// compute.DynamicMap bit for bit (no GPU needed).
func TestAdam8MapInKernels(t *testing.T) {
	src := KernelSource()
	i := strings.Index(src, "adam8_qmap_bits[512] = {")
	if i < 0 {
		t.Fatal("kernels.cu has no adam8_qmap_bits table")
	}
	body := src[i:]
	body = body[strings.Index(body, "{")+1 : strings.Index(body, "}")]
	words := regexp.MustCompile(`0x[0-9a-f]{8}u`).FindAllString(body, -1)
	if len(words) != 512 {
		t.Fatalf("table of %d entries, want 512", len(words))
	}
	for k, w := range words {
		bits, err := strconv.ParseUint(strings.TrimSuffix(w, "u")[2:], 16, 32)
		if err != nil {
			t.Fatal(err)
		}
		want := compute.DynamicMap(k < 256)[k%256]
		if math.Float32frombits(uint32(bits)) != want {
			t.Fatalf("entry %d: %s, want %g", k, w, want)
		}
	}
}

// TestGPUAdamW8bit: three 8-bit AdamW steps on the GPU (a short last block,
// a bf16 shadow, block sizes 256 and 2048) against the CPU's host kernel.
// The kernel rounds every operation as written, so weights, scales and codes
// are expected to be bit-identical; the test allows a handful of codes one
// step away and float32 rounding in the weights in case a platform differs.
func TestGPUAdamW8bit(t *testing.T) {
	d := openGPU(t)
	r := rand.New(rand.NewPCG(31, 32))
	for _, block := range []int{compute.Adam8Block, 2048} {
		n := 1000*block + 77
		nb := compute.Adam8Blocks(n, block)
		pv := randVec(r, n, 1)
		p := upload(t, d, compute.F32, pv)
		m8, _ := d.Alloc(compute.U8, n)
		v8, _ := d.Alloc(compute.U8, n)
		ms, _ := d.Alloc(compute.F32, nb)
		vs, _ := d.Alloc(compute.F32, nb)
		shadow, _ := d.Alloc(compute.BF16, n)
		for _, x := range []compute.Tensor{m8, v8, ms, vs} {
			d.Zero(x)
		}
		hm8, hv8, hms, hvs := make([]byte, n), make([]byte, n), make([]float32, nb), make([]float32, nb)
		hp := append([]float32(nil), pv...)
		for step := 1; step <= 3; step++ {
			gv := randVec(r, n, 0.5)
			g := upload(t, d, compute.F32, gv)
			s := compute.AdamStep{GradScale: 0.8, Decay: 0.9999, Beta1: 0.9, Beta2: 0.999,
				StepSize: float32(1e-3 / (1 - math.Pow(0.9, float64(step)))), BC2Sqrt: float32(math.Sqrt(1 - math.Pow(0.999, float64(step)))), Eps: 1e-8}
			d.AdamW8bit(p, g, m8, v8, ms, vs, shadow, s, block)
			if err := compute.AdamW8bitSlices(hp, gv, hm8, hv8, hms, hvs, nil, nil, s, block); err != nil {
				t.Fatal(err)
			}
			g.Free()
		}
		want := make([]float64, n)
		for i, x := range hp {
			want[i] = float64(x)
		}
		check(t, "adamw 8-bit weights", download(t, d, p), want, 1e-6)
		check(t, "adamw 8-bit bf16 shadow", download(t, d, shadow), want, 5e-3)
		for _, c := range []struct {
			what string
			got  compute.Tensor
			want []float32
		}{{"m scales", ms, hms}, {"v scales", vs, hvs}} {
			w := make([]float64, len(c.want))
			for i, x := range c.want {
				w[i] = float64(x)
			}
			check(t, c.what, download(t, d, c.got), w, 1e-6)
		}
		for _, c := range []struct {
			what string
			got  compute.Tensor
			want []byte
		}{{"m codes", m8, hm8}, {"v codes", v8, hv8}} {
			got := download(t, d, c.got)
			off := 0
			for i, x := range got {
				if dd := int(x) - int(c.want[i]); dd != 0 {
					off++
					if dd < -1 || dd > 1 {
						t.Fatalf("%s[%d] = %v, want %d", c.what, i, x, c.want[i])
					}
				}
			}
			if off > n/10000 {
				t.Errorf("%s: %d of %d differ from the CPU's", c.what, off, n)
			}
			t.Logf("block %d: %s: %d of %d differ from the CPU's", block, c.what, off, n)
		}
		for _, x := range []compute.Tensor{p, m8, v8, ms, vs, shadow} {
			x.Free()
		}
	}
}
