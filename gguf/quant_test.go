package gguf

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// testBlocks returns data that exercises the quantizers' edge cases: Gaussian
// values, a block whose largest magnitude is negative with its mirror image
// present (Q4_0's clamped code), all zeros, all positive, and outliers.
func testBlocks(n int) []float32 {
	rng := rand.New(rand.NewPCG(7, 9))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	// Block 1: contains -3 and +3 (mirror of the signed max).
	x[32], x[33] = -3, 3
	// Block 2: all zeros.
	for i := 64; i < 96; i++ {
		x[i] = 0
	}
	// Block 3: all positive.
	for i := 96; i < 128; i++ {
		x[i] = 0.1 + float32(rng.Float64())
	}
	// An outlier.
	x[300] = 40
	return x
}

func maxErr(t *testing.T, x []float32, typ TensorType) ([]float32, []byte) {
	t.Helper()
	b, err := Encode(x, typ)
	if err != nil {
		t.Fatal(err)
	}
	y := make([]float32, len(x))
	if err := Decode(y, b, typ); err != nil {
		t.Fatal(err)
	}
	return y, b
}

func TestQ8_0Bound(t *testing.T) {
	x := testBlocks(1024)
	y, b := maxErr(t, x, Q8_0)
	for blk := 0; blk < len(x)/32; blk++ {
		var amax float64
		for _, v := range x[32*blk : 32*blk+32] {
			amax = math.Max(amax, math.Abs(float64(v)))
		}
		d32 := float64(float32(amax) / 127)
		d16 := float64(f16val(binary.LittleEndian.Uint16(b[34*blk:])))
		// x is within d/2 of q·d32 and q·d16 differs from it by |q|·|d32−d16|.
		bound := d32/2 + 127*math.Abs(d32-d16) + 1e-6*amax
		for j := 32 * blk; j < 32*blk+32; j++ {
			if e := math.Abs(float64(x[j] - y[j])); e > bound {
				t.Fatalf("element %d: |err| %g > bound %g (d %g)", j, e, bound, d16)
			}
		}
	}
}

func TestQ4_0Bound(t *testing.T) {
	x := testBlocks(1024)
	y, b := maxErr(t, x, Q4_0)
	clamped := 0
	for blk := 0; blk < len(x)/32; blk++ {
		var amax, mx float64
		for _, v := range x[32*blk : 32*blk+32] {
			if a := math.Abs(float64(v)); a > amax {
				amax, mx = a, float64(v)
			}
		}
		d32 := float64(float32(mx) / -8)
		d16 := float64(f16val(binary.LittleEndian.Uint16(b[18*blk:])))
		for j := 32 * blk; j < 32*blk+32; j++ {
			// t = x/d lies in [−8, 8]; codes −8…7 cover it to within 1/2 except
			// t ∈ (7.5, 8], the mirror of the maximum, which clamps to 7.
			k := 0.5
			if d32 != 0 && float64(x[j])/d32 > 7.5 {
				k = 1
				clamped++
			}
			bound := k*math.Abs(d32) + 8*math.Abs(d32-d16) + 1e-6*amax
			if e := math.Abs(float64(x[j] - y[j])); e > bound {
				t.Fatalf("element %d: |err| %g > bound %g", j, e, bound)
			}
		}
	}
	if clamped == 0 {
		t.Error("test data never reached the clamped code")
	}
	// The maximum itself is exact up to the f16 scale: −8·d = max.
	if math.Abs(float64(y[32]-(-3))) > 3e-3 {
		t.Errorf("block max decoded as %g", y[32])
	}
}

func TestQ4_KBound(t *testing.T) {
	x := testBlocks(1024)
	y, b := maxErr(t, x, Q4_K)
	var se, sx float64
	for blk := 0; blk < len(x)/256; blk++ {
		p := b[144*blk:]
		d := float64(f16val(binary.LittleEndian.Uint16(p)))
		for j := 0; j < 8; j++ {
			sc, _ := scaleMinK4(j, p[4:16])
			// The grid covers each sub-block's range, so no value is further
			// than half a step from its code.
			bound := d*float64(sc)/2*(1+1e-5) + 1e-6
			for l := 0; l < 32; l++ {
				i := 256*blk + 32*j + l
				e := math.Abs(float64(x[i] - y[i]))
				if e > bound {
					t.Fatalf("element %d: |err| %g > half step %g", i, e, bound)
				}
				se += e * e
				sx += float64(x[i]) * float64(x[i])
			}
		}
	}
	if rel := math.Sqrt(se / sx); rel > 0.12 {
		t.Errorf("relative RMS error %g", rel)
	}
}

func TestQ6_KBound(t *testing.T) {
	x := testBlocks(1024)
	y, b := maxErr(t, x, Q6_K)
	var se, sx float64
	for blk := 0; blk < len(x)/256; blk++ {
		p := b[210*blk:]
		d := float64(f16val(binary.LittleEndian.Uint16(p[208:])))
		for s := 0; s < 16; s++ {
			step := math.Abs(d * float64(int8(p[192+s])))
			// Codes −32…31 cover the sub-block to within half a step except the
			// mirror of its signed maximum, which clamps to 31 (a whole step);
			// rounding the scale to an int8 multiple of d moves the extreme
			// codes by at most 32·d/2 more.
			bound := step + 16*math.Abs(d) + 1e-6
			for l := 0; l < 16; l++ {
				i := 256*blk + 16*s + l
				e := math.Abs(float64(x[i] - y[i]))
				if e > bound {
					t.Fatalf("element %d: |err| %g > bound %g", i, e, bound)
				}
				se += e * e
				sx += float64(x[i]) * float64(x[i])
			}
		}
	}
	if rel := math.Sqrt(se / sx); rel > 0.05 {
		t.Errorf("relative RMS error %g", rel)
	}
}

// TestQ4_KLayout checks the decoder against a block assembled by hand from the
// published layout, independently of the encoder.
func TestQ4_KLayout(t *testing.T) {
	b := make([]byte, 144)
	binary.LittleEndian.PutUint16(b, f16bits(0.5))
	binary.LittleEndian.PutUint16(b[2:], f16bits(0.25))
	sc := [8]uint8{1, 2, 3, 4, 33, 46, 59, 63}
	m := [8]uint8{5, 6, 7, 8, 17, 30, 41, 62}
	putScaleMinK4(b[4:16], &sc, &m)
	for j := 0; j < 8; j++ {
		if s, mm := scaleMinK4(j, b[4:16]); s != sc[j] || mm != m[j] {
			t.Fatalf("sub-block %d: scale/min %d/%d, want %d/%d", j, s, mm, sc[j], m[j])
		}
	}
	for i := 0; i < 128; i++ {
		b[16+i] = byte(i%16) | byte((i*7)%16)<<4
	}
	y := make([]float32, 256)
	if err := Decode(y, b, Q4_K); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 256; i++ {
		// Value i is in sub-block i/32; chunk c = i/64 uses bytes 32c..32c+31,
		// low nibbles for its first 32 values and high nibbles for the next.
		c, l, hi := i/64, i%32, (i%64) >= 32
		q := b[16+32*c+l] & 15
		if hi {
			q = b[16+32*c+l] >> 4
		}
		j := i / 32
		want := 0.5*float32(sc[j])*float32(q) - 0.25*float32(m[j])
		if y[i] != want {
			t.Fatalf("value %d = %g, want %g", i, y[i], want)
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	if _, err := Encode(make([]float32, 31), Q8_0); err == nil {
		t.Error("31 values encoded as Q8_0")
	}
	if _, err := Encode(make([]float32, 32), Q5_1); err == nil {
		t.Error("encoded an unsupported type")
	}
	if err := Decode(make([]float32, 32), make([]byte, 10), Q8_0); err == nil {
		t.Error("decoded short data")
	}
}
