package quant

import (
	"math"
	"slices"
	"sync"
)

// nf4Values is the NormalFloat-4 code book of QLoRA (Dettmers et al., 2023)
// as bitsandbytes ships it: quantiles of N(0,1) scaled into [-1,1], with an
// exact zero and one more positive than negative level. The 4-bit code is the
// index into this table, which is sorted ascending.
var nf4Values = [16]float32{
	-1.0,
	-0.6961928009986877,
	-0.5250730514526367,
	-0.39491748809814453,
	-0.28444138169288635,
	-0.18477343022823334,
	-0.09105003625154495,
	0.0,
	0.07958029955625534,
	0.16093020141124725,
	0.24611230194568634,
	0.33791524171829224,
	0.44070982933044434,
	0.5626170039176941,
	0.7229568362236023,
	1.0,
}

// fp4Values is bitsandbytes' FP4 (1 sign, 2 exponent, 1 mantissa bit,
// exponent bias 2) indexed by bit pattern, normalised by its largest
// magnitude 12. Bit 3 is the sign, so the table is not sorted.
var fp4Values = func() [16]float32 {
	raw := [8]float32{0, 0.0625, 8, 12, 4, 6, 2, 3}
	var v [16]float32
	for i, r := range raw {
		v[i] = r / 12
		v[i+8] = -(r / 12)
	}
	return v
}()

// fp4Mags lists FP4's eight magnitudes in ascending order with their 3-bit
// patterns, for the nearest-value search on |x|.
var (
	fp4Mags = [8]float32{0, 0.0625 / 12, 2.0 / 12, 3.0 / 12, 4.0 / 12, 6.0 / 12, 8.0 / 12, 12.0 / 12}
	fp4Bits = [8]uint8{0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011}
)

// midpoints returns the decision boundaries between adjacent sorted values,
// in float64 so that the boundary itself is exact: an input is sent to the
// upper value only when it is strictly above the midpoint (ties go down, as in
// bitsandbytes' kernels).
func midpoints(sorted []float32) []float64 {
	m := make([]float64, len(sorted)-1)
	for i := range m {
		m[i] = (float64(sorted[i]) + float64(sorted[i+1])) / 2
	}
	return m
}

var (
	nf4Mids = [15]float64(midpoints(nf4Values[:]))
	fp4Mids = [7]float64(midpoints(fp4Mags[:]))
)

// nearestNF4 returns the NF4 code whose value is nearest to s.
func nearestNF4(s float32) uint8 {
	x := float64(s)
	i := 0
	if x > nf4Mids[7] {
		i = 8
	}
	if x > nf4Mids[i+3] {
		i += 4
	}
	if x > nf4Mids[i+1] {
		i += 2
	}
	if x > nf4Mids[i] {
		i++
	}
	return uint8(i)
}

// nearestFP4 returns the FP4 bit pattern nearest to s. The sign is taken from
// s first (as bitsandbytes' CUDA kernel does), so tiny negative inputs become
// negative zero; the value set is symmetric so this is still the nearest.
func nearestFP4(s float32) uint8 {
	var sign uint8
	x := float64(s)
	if x < 0 {
		sign = 0b1000
		x = -x
	}
	i := 0
	if x > fp4Mids[3] {
		i = 4
	}
	if x > fp4Mids[i+1] {
		i += 2
	}
	if x > fp4Mids[i] {
		i++
	}
	return sign | fp4Bits[i]
}

// dynamicCode is bitsandbytes' signed 8-bit "dynamic" map
// (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)), used
// for the double quantization of absmax values: for decade i = 0..6 it holds
// ±10^(i-6)·m for the 2^i midpoints m of an even split of [0.1, 1], plus 0 and
// 1, sorted. The arithmetic follows torch's float32 linspace so that the
// table matches the one bitsandbytes writes (to the last bit as far as torch's
// rounding is reproduced; files always carry their own table, which is what
// decoding uses).
var dynamicCode = sync.OnceValue(func() *[256]float32 {
	data := make([]float32, 0, 256)
	for i := range 7 {
		bounds := linspace32(0.1, 1, (1<<i)+1)
		scale := float32(math.Pow10(i - 6))
		for j := 0; j+1 < len(bounds); j++ {
			mean := (bounds[j] + bounds[j+1]) / 2
			v := float32(scale * mean)
			data = append(data, v, -v)
		}
	}
	data = append(data, 0, 1)
	slices.Sort(data)
	return (*[256]float32)(data)
})

// linspace32 reproduces torch.linspace in float32: the first half steps up
// from start, the second half steps down from end.
func linspace32(start, end float32, steps int) []float32 {
	out := make([]float32, steps)
	if steps == 1 {
		out[0] = start
		return out
	}
	step := (end - start) / float32(steps-1)
	half := steps / 2
	for i := range steps {
		if i < half {
			out[i] = start + float32(step*float32(i))
		} else {
			out[i] = end - float32(step*float32(steps-i-1))
		}
	}
	return out
}

// nearestSorted returns the index of the value of the ascending table code
// nearest to s (ties to the lower index), by binary search on midpoints
// computed on the fly in float64.
func nearestSorted(code []float32, s float32) uint8 {
	x := float64(s)
	lo, hi := 0, len(code)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if x > (float64(code[mid])+float64(code[mid+1]))/2 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return uint8(lo)
}
