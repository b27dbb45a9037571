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

// roundTripData is testBlocks' edge cases followed by heavy-tailed rows.
func roundTripData() []float32 {
	x := testBlocks(1024)
	x = append(x, edgeBlocks()...)
	return append(x, weightRows("student3", 16, 3)...)
}

// relRMS returns ‖x−y‖/‖x‖.
func relRMS(x, y []float32) float64 {
	var se, sx float64
	for i := range x {
		e := float64(x[i]) - float64(y[i])
		se += e * e
		sx += float64(x[i]) * float64(x[i])
	}
	return math.Sqrt(se / sx)
}

// checkNearest fails unless decoding with code q is at least as close to v
// as decoding with q−1 or q+1 (inside [lo, hi]) would be: the last step of
// both K-quant encoders picks, for the scales it stored, the nearest code.
func checkNearest(t *testing.T, i int, v float32, q, lo, hi int, dec func(q int) float64) {
	t.Helper()
	e := math.Abs(float64(v) - dec(q))
	tol := 1e-5 * math.Abs(dec(hi)-dec(lo))
	for _, n := range []int{q - 1, q + 1} {
		if n >= lo && n <= hi && math.Abs(float64(v)-dec(n)) < e-tol {
			t.Fatalf("element %d (%g): code %d decodes to %g, code %d to the closer %g", i, v, q, dec(q), n, dec(n))
		}
	}
}

// TestQ4_KRoundTrip decodes the encoder's output: every value carries the
// code nearest to it under its sub-block's stored scale and offset, the
// decoder agrees with the block layout, and the error stays small.
func TestQ4_KRoundTrip(t *testing.T) {
	x := roundTripData()
	y, b := maxErr(t, x, Q4_K)
	for blk := 0; blk < len(x)/256; blk++ {
		p := b[144*blk:]
		d := float64(f16val(binary.LittleEndian.Uint16(p)))
		dmin := float64(f16val(binary.LittleEndian.Uint16(p[2:])))
		for j := 0; j < 8; j++ {
			sc, m := scaleMinK4(j, p[4:16])
			if sc == 0 {
				continue // every code decodes to −dmin·m
			}
			dec := func(q int) float64 { return d*float64(sc)*float64(q) - dmin*float64(m) }
			for l := 0; l < 32; l++ {
				i := 256*blk + 32*j + l
				c, sh := j/2, 4*(j%2)
				q := int(p[16+32*c+l]>>sh) & 15
				if math.Abs(dec(q)-float64(y[i])) > 1e-6*math.Abs(dec(15)-dec(0)) {
					t.Fatalf("element %d decoded as %g, layout says %g", i, y[i], dec(q))
				}
				checkNearest(t, i, x[i], q, 0, 15, dec)
			}
		}
	}
	if rel := relRMS(x[:1024], y[:1024]); rel > 0.12 {
		t.Errorf("relative RMS error %g", rel)
	}
}

// TestQ6_KRoundTrip is TestQ4_KRoundTrip for Q6_K's signed codes.
func TestQ6_KRoundTrip(t *testing.T) {
	x := roundTripData()
	y, b := maxErr(t, x, Q6_K)
	for blk := 0; blk < len(x)/256; blk++ {
		p := b[210*blk:]
		d := float64(f16val(binary.LittleEndian.Uint16(p[208:])))
		for s := 0; s < 16; s++ {
			step := d * float64(int8(p[192+s]))
			if step == 0 {
				continue
			}
			dec := func(q int) float64 { return step * float64(q) }
			for l := 0; l < 16; l++ {
				i := 256*blk + 16*s + l
				// Value k of a half of 128 (k = 32·g + r): low nibble in
				// ql[r + 32·(g%2)] (high nibble when g ≥ 2), top two bits
				// in qh[r] at bit 2g.
				h, k := (16*s+l)/128, (16*s+l)%128
				g, r := k/32, k%32
				lowByte := p[64*h+r+32*(g%2)]
				low := int(lowByte) & 15
				if g >= 2 {
					low = int(lowByte) >> 4
				}
				q := low | (int(p[128+32*h+r])>>(2*g)&3)<<4 - 32
				if math.Abs(dec(q)-float64(y[i])) > 1e-6*math.Abs(step) {
					t.Fatalf("element %d decoded as %g, layout says %g", i, y[i], dec(q))
				}
				checkNearest(t, i, x[i], q, -32, 31, dec)
			}
		}
	}
	if rel := relRMS(x[:1024], y[:1024]); rel > 0.05 {
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
