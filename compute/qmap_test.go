package compute

import (
	"flag"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestDynamicMap checks the tables' shape: 256 strictly increasing values,
// the signed one symmetric around its 0 with −0.99297 and 1 at the ends
// (bitsandbytes' signed map), the unsigned one from 0 to 1, and seven
// decades of resolution (the smallest nonzero magnitude is below 10⁻⁶).
func TestDynamicMap(t *testing.T) {
	for _, signed := range []bool{true, false} {
		m := DynamicMap(signed)
		for i := 1; i < 256; i++ {
			if !(m[i] > m[i-1]) {
				t.Fatalf("signed %v: entry %d = %g not above %g", signed, i, m[i], m[i-1])
			}
		}
		if m[255] != 1 {
			t.Errorf("signed %v: top %g, want 1", signed, m[255])
		}
		zero := -1
		for i, v := range m {
			if v == 0 {
				zero = i
			}
		}
		switch {
		case signed && zero != 127:
			t.Errorf("signed: zero at %d, want 127", zero)
		case !signed && zero != 0:
			t.Errorf("unsigned: zero at %d, want 0", zero)
		}
		if small := m[zero+1]; !(small > 1e-7 && small < 1e-6) {
			t.Errorf("signed %v: smallest positive %g, want in (1e-7, 1e-6)", signed, small)
		}
	}
	s := DynamicMap(true)
	for i := 0; i < 127; i++ {
		if s[i] != -s[254-i] {
			t.Fatalf("signed map not symmetric: %g vs %g", s[i], s[254-i])
		}
	}
	if math.Abs(float64(s[0])+0.99296875) > 1e-6 {
		t.Errorf("signed bottom %g, want -0.99296875", s[0])
	}
}

// TestQuantize8 checks the code rule against a scan of the table (nearest,
// lower on ties), that table entries encode to themselves, that signed codes
// keep the sign, and the round-trip error: at most half the local gap, and
// within the bounds the map's resolution gives per decade.
func TestQuantize8(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, signed := range []bool{true, false} {
		m := DynamicMap(signed)
		for c := range m {
			if got := Quantize8(m[c], m, signed); int(got) != c {
				t.Fatalf("signed %v: entry %d (%g) encodes to %d", signed, c, m[c], got)
			}
		}
		worst := map[int]float64{} // decade → largest relative error
		for k := 0; k < 200000; k++ {
			mag := math.Pow(10, -7*r.Float64()) // log-uniform in (1e-7, 1]
			x := float32(mag)
			if signed && k%2 == 1 {
				x = -x
			}
			if k%1000 == 0 { // midpoints between neighbours: the tie rule
				c := r.IntN(255)
				x = m[c] + (m[c+1]-m[c])/2
			}
			c := int(Quantize8(x, m, signed))
			best := 0
			for j := 1; j < 256; j++ {
				if abs(x-m[j]) < abs(x-m[best]) {
					best = j
				}
			}
			if signed && x < 0 && m[best] >= 0 {
				best--
			}
			if c != best {
				t.Fatalf("signed %v: %g encodes to %d (%g), want %d (%g)", signed, x, c, m[c], best, m[best])
			}
			if signed && (x < 0) != (m[c] < 0) && m[c] != 0 {
				t.Fatalf("%g encodes to %g of the other sign", x, m[c])
			}
			d := int(math.Floor(math.Log10(math.Abs(float64(x)))))
			worst[d] = max(worst[d], math.Abs(float64(m[c]-x))/math.Abs(float64(x)))
		}
		// Relative error bounds per decade d (values in [10^d, 10^(d+1))):
		// its entries are 2^i (signed, i = d + 7) or 2^(i+1) (unsigned)
		// midpoints of [0.1, 1]·10^(d+1), so half a gap is at most
		// 4.5/2^i (4.5/2^(i+1)) of the value.
		for d, e := range worst {
			i := d + 7
			if !signed {
				i++
			}
			bound := 4.5 / math.Pow(2, float64(i)) * 1.0001
			if d < -6 {
				continue // below the smallest entry: only absolute error is bounded
			}
			if e > bound {
				t.Errorf("signed %v: decade 1e%d: relative error %.4g > %.4g", signed, d, e, bound)
			}
			t.Logf("signed %v: decade 1e%d: worst relative error %.4g (bound %.4g)", signed, d, e, bound)
		}
		if signed && worst[-1] > 0.071 || !signed && worst[-1] > 0.036 {
			t.Errorf("signed %v: top decade relative error %.4g", signed, worst[-1])
		}
	}
}

func abs(x float32) float32 { return float32(math.Abs(float64(x))) }

// quantizerAll sweeps every float32 in TestQuantizer8 (about two minutes
// on two cores) instead of a stride of them.
var quantizerAll = flag.Bool("quantizer.all", false, "TestQuantizer8: check all 2^32 float32 inputs")

// TestQuantizer8 checks the one-lookup quantizer against Quantize8's binary
// search (the definition) and against the bucketed quantizer it replaced:
// on every bucket's first and last value and the float32 values around its
// threshold, every table entry and midpoint of neighbours with their
// float32 neighbours, ±0, ±Inf, NaNs, magnitudes of 1 and more, subnormals,
// random values of every magnitude, and a sweep of the whole float32 range
// (every 9973rd bit pattern; all of them with -quantizer.all).
func TestQuantizer8(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, signed := range []bool{true, false} {
		q, m := NewQuantizer8(signed), DynamicMap(signed)
		check := func(x float32) {
			want := Quantize8(x, m, signed)
			if got := q.Code(x); got != want {
				t.Fatalf("signed %v: code of %g (%#08x): %d, Quantize8 %d", signed, x, math.Float32bits(x), got, want)
			}
		}
		inf := float32(math.Inf(1))
		xs := []float32{0, float32(math.Copysign(0, -1)), inf, -inf, float32(math.NaN()), math.Float32frombits(0xffc00001), math.Float32frombits(0x7f800001),
			1, -1, math.Nextafter32(1, 2), math.Nextafter32(-1, -2), 1.5, -1.5, 2, -2, 3.99, -1e30, 1e30,
			math.Float32frombits(1), math.Float32frombits(1 | 1<<31), math.Float32frombits(0x007fffff), math.Float32frombits(0x807fffff)}
		for c := range m {
			xs = append(xs, m[c], math.Nextafter32(m[c], 2), math.Nextafter32(m[c], -2))
			if c < 255 {
				mid := m[c] + (m[c+1]-m[c])/2
				xs = append(xs, mid, math.Nextafter32(mid, 2), math.Nextafter32(mid, -2))
			}
		}
		for k := 0; k < 2*quantizerBinades<<quantizerBits; k++ {
			if th := q.theta[k]; th != inf {
				for d := -3; d <= 3; d++ {
					xs = append(xs, math.Float32frombits(uint32(int32(math.Float32bits(th))+int32(d))))
				}
			}
			// The bucket's first and last bit patterns.
			row := uint32(k>>quantizerBits%quantizerBinades) + quantizerMinExp
			b := uint32(k/(quantizerBinades<<quantizerBits))<<31 | row<<23 | uint32(k&(1<<quantizerBits-1))<<(23-quantizerBits)
			xs = append(xs, math.Float32frombits(b), math.Float32frombits(b|(1<<(23-quantizerBits)-1)))
		}
		for range 1 << 20 {
			x := float32(math.Pow(10, -9*r.Float64()))
			if r.IntN(2) == 0 {
				x = -x
			}
			xs = append(xs, x, math.Float32frombits(r.Uint32()))
		}
		for _, x := range xs {
			check(x)
		}
		stride := uint64(9973)
		if *quantizerAll {
			stride = 1
		}
		var wg sync.WaitGroup
		var bad atomic.Uint64
		workers := uint64(runtime.GOMAXPROCS(0))
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for u := w * stride; u < 1<<32; u += workers * stride {
					x := math.Float32frombits(uint32(u))
					if q.Code(x) != Quantize8(x, m, signed) {
						bad.CompareAndSwap(0, u|1<<32)
						return
					}
				}
			}()
		}
		wg.Wait()
		if u := bad.Load(); u != 0 {
			check(math.Float32frombits(uint32(u))) // reports it
			t.Fatalf("signed %v: sweep: %#08x differs", signed, uint32(u))
		}
	}
}

// TestQuantizer8Encode: Encode of a block is Code of each value times the
// scale.
func TestQuantizer8Encode(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	src := make([]float32, 1000)
	for i := range src {
		src[i] = float32(r.NormFloat64() * math.Pow(10, -4*r.Float64()))
	}
	src[7] = float32(math.NaN())
	for _, signed := range []bool{true, false} {
		q := NewQuantizer8(signed)
		dst := make([]byte, len(src))
		q.Encode(dst, src, 0.37)
		for i, x := range src {
			if want := q.Code(x * 0.37); dst[i] != want {
				t.Fatalf("signed %v: Encode of %g: %d, Code %d", signed, x, dst[i], want)
			}
		}
	}
}

// TestQuantizer8Layout: the layout's arithmetic bucket holds the same base
// and threshold as bucket's for every top 16 bits of a float32 (which is
// all bucket reads), so it gives Code's codes for every number.
func TestQuantizer8Layout(t *testing.T) {
	for _, signed := range []bool{true, false} {
		q := NewQuantizer8(signed)
		l := q.Layout()
		if int(2*l.SignStride)+3 > len(l.Base) {
			t.Fatalf("base table of %d entries read 4 bytes at a time up to %d", len(l.Base), 2*l.SignStride+3)
		}
		for b := uint32(0); b < 1<<16; b++ {
			x := math.Float32frombits(b << 16)
			k := int32(b>>15)*l.SignStride + min(max(int32(b&0x7fff)-l.Offset, 0), l.Top)
			want := bucket(x)
			if l.Base[k] != q.base[want] || math.Float32bits(l.Theta[k]) != math.Float32bits(q.theta[want]) {
				t.Fatalf("signed %v: top bits %#04x: layout bucket %d (%d, %g), bucket %d (%d, %g)", signed, b, k, l.Base[k], l.Theta[k], want, q.base[want], q.theta[want])
			}
		}
	}
}
