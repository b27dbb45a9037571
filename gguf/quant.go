package gguf

import (
	"encoding/binary"
	"fmt"
	"gotune/dtype"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// Block layouts (ggml):
//   Q8_0: f16 d, int8 q[32]                      x = d·q
//   Q4_0: f16 d, uint8 qs[16]                    x[j] = d·((qs[j]&15)−8), x[j+16] = d·((qs[j]>>4)−8)
//   Q4_K: f16 d, f16 dmin, uint8 scales[12], uint8 qs[128] for 256 values in
//         8 sub-blocks of 32 with 6-bit scale sc and min m:  x = d·sc·q − dmin·m
//   Q6_K: uint8 ql[128], uint8 qh[64], int8 scales[16], f16 d for 256 values:
//         x = d·scale·(q−32), q a 6-bit value split into ql (low 4) and qh (high 2)

const qk = 32
const qkK = 256

func f16bits(x float32) uint16 {
	var d [1]uint16
	s := [1]float32{x}
	dtype.F32ToF16(d[:], s[:])
	return d[0]
}

func f16val(h uint16) float32 {
	var d [1]float32
	s := [1]uint16{h}
	dtype.F16ToF32(d[:], s[:])
	return d[0]
}

// Encode converts values to the given tensor type. len(values) must be a
// multiple of the type's block size.
func Encode(values []float32, t TensorType) ([]byte, error) {
	bs := t.BlockSize()
	if bs == 0 {
		return nil, fmt.Errorf("gguf: cannot encode to unknown type %d", uint32(t))
	}
	if len(values)%bs != 0 {
		return nil, fmt.Errorf("gguf: %d values are not a whole number of %s blocks of %d", len(values), t, bs)
	}
	out := make([]byte, t.RowBytes(len(values)))
	le := binary.LittleEndian
	switch t {
	case F32:
		for i, v := range values {
			le.PutUint32(out[4*i:], math.Float32bits(v))
		}
	case F16:
		u := make([]uint16, len(values))
		dtype.F32ToF16(u, values)
		for i, h := range u {
			le.PutUint16(out[2*i:], h)
		}
	case BF16:
		u := make([]uint16, len(values))
		dtype.F32ToBF16(u, values)
		for i, h := range u {
			le.PutUint16(out[2*i:], h)
		}
	case Q8_0:
		encodeBlocks(out, values, qk, 34, quantQ8_0)
	case Q4_0:
		encodeBlocks(out, values, qk, 18, quantQ4_0)
	case Q4_K:
		encodeBlocks(out, values, qkK, 144, quantQ4_K)
	case Q6_K:
		encodeBlocks(out, values, qkK, 210, quantQ6_K)
	default:
		return nil, fmt.Errorf("gguf: encoding to %s is not supported", t)
	}
	return out, nil
}

// blocksPerTask is the least work worth a goroutine: 64 K-quant blocks
// take tens of microseconds to quantize.
const blocksPerTask = 64

// encodeBlocks quantizes values block by block with quant, spreading runs
// of blocks over GOMAXPROCS goroutines. Blocks are independent, so the
// bytes do not depend on how the work is split; K-quant encoding is slow
// enough (a scale search per sub-block) that a large tensor would
// otherwise keep an export waiting on one core.
func encodeBlocks(out []byte, values []float32, n, size int, quant func(out []byte, x []float32)) {
	blocks := len(values) / n
	workers := min(runtime.GOMAXPROCS(0), blocks/blocksPerTask)
	if workers <= 1 {
		for b := 0; b < blocks; b++ {
			quant(out[b*size:(b+1)*size], values[b*n:(b+1)*n])
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				end := int(next.Add(blocksPerTask))
				start := end - blocksPerTask
				if start >= blocks {
					return
				}
				for b := start; b < min(end, blocks); b++ {
					quant(out[b*size:(b+1)*size], values[b*n:(b+1)*n])
				}
			}
		}()
	}
	wg.Wait()
}

// Decode converts encoded data of type t into dst, whose length fixes how
// many values are decoded.
func Decode(dst []float32, b []byte, t TensorType) error {
	bs := t.BlockSize()
	if bs == 0 {
		return fmt.Errorf("unknown tensor type %d", uint32(t))
	}
	if len(dst)%bs != 0 || len(b) != t.RowBytes(len(dst)) {
		return fmt.Errorf("%d bytes of %s do not hold %d values", len(b), t, len(dst))
	}
	le := binary.LittleEndian
	switch t {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(b[8*i:])))
		}
	case F16:
		for i := range dst {
			dst[i] = f16val(le.Uint16(b[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(le.Uint16(b[2*i:])) << 16)
		}
	case Q8_0:
		for blk := 0; blk < len(dst)/qk; blk++ {
			p := b[blk*34:]
			d := f16val(le.Uint16(p))
			for j := 0; j < qk; j++ {
				dst[blk*qk+j] = d * float32(int8(p[2+j]))
			}
		}
	case Q4_0:
		for blk := 0; blk < len(dst)/qk; blk++ {
			p := b[blk*18:]
			d := f16val(le.Uint16(p))
			y := dst[blk*qk:]
			for j := 0; j < qk/2; j++ {
				y[j] = d * float32(int(p[2+j]&15)-8)
				y[j+qk/2] = d * float32(int(p[2+j]>>4)-8)
			}
		}
	case Q4_K:
		for blk := 0; blk < len(dst)/qkK; blk++ {
			dequantQ4_K(dst[blk*qkK:(blk+1)*qkK], b[blk*144:(blk+1)*144])
		}
	case Q6_K:
		for blk := 0; blk < len(dst)/qkK; blk++ {
			dequantQ6_K(dst[blk*qkK:(blk+1)*qkK], b[blk*210:(blk+1)*210])
		}
	default:
		return fmt.Errorf("decoding %s is not supported", t)
	}
	return nil
}

// quantQ8_0 follows ggml's reference rounding: d = absmax/127, q = round(x/d)
// (half away from zero) computed with the float32 d, d stored as f16.
func quantQ8_0(out []byte, x []float32) {
	var amax float32
	for _, v := range x {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	binary.LittleEndian.PutUint16(out, f16bits(d))
	for j, v := range x {
		out[2+j] = byte(int8(math.Round(float64(v * id))))
	}
}

// quantQ4_0 follows ggml's reference: the signed value of largest magnitude
// maps to −8, so d = max/−8, and q = min(15, trunc(x/d + 8.5)).
func quantQ4_0(out []byte, x []float32) {
	var amax, mx float32
	for _, v := range x {
		if a := float32(math.Abs(float64(v))); a > amax {
			amax, mx = a, v
		}
	}
	d := mx / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	binary.LittleEndian.PutUint16(out, f16bits(d))
	for j := 0; j < qk/2; j++ {
		// The conversions keep arm64 and other FMA targets from fusing the
		// multiply and add, which would round differently from ggml.
		q0 := min(15, int(float32(x[j]*id)+8.5))
		q1 := min(15, int(float32(x[j+qk/2]*id)+8.5))
		out[2+j] = byte(q0) | byte(q1)<<4
	}
}

// scaleMinK4 unpacks the 6-bit scale and min of sub-block j from Q4_K's
// 12-byte scales field: sub-blocks 0–3 use the low 6 bits of bytes j and
// j+4; sub-blocks 4–7 put their low 4 bits in byte j+4 (scale low nibble,
// min high nibble) and their top 2 bits in the spare top bits of bytes j−4
// (scale) and j (min).
func scaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&15 | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

func putScaleMinK4(q []byte, sc, m *[8]uint8) {
	for j := 0; j < 4; j++ {
		q[j] = sc[j] | (sc[j+4]>>4)<<6
		q[j+4] = m[j] | (m[j+4]>>4)<<6
		q[j+8] = sc[j+4]&15 | (m[j+4]&15)<<4
	}
}

func dequantQ4_K(y []float32, b []byte) {
	le := binary.LittleEndian
	d := f16val(le.Uint16(b))
	dmin := f16val(le.Uint16(b[2:]))
	scales := b[4:16]
	qs := b[16:]
	for c := 0; c < 4; c++ { // four chunks of 64 share 32 bytes of nibbles
		sc0, m0 := scaleMinK4(2*c, scales)
		sc1, m1 := scaleMinK4(2*c+1, scales)
		d0, mm0 := d*float32(sc0), dmin*float32(m0)
		d1, mm1 := d*float32(sc1), dmin*float32(m1)
		q := qs[32*c:]
		for l := 0; l < 32; l++ {
			y[64*c+l] = d0*float32(q[l]&15) - mm0
			y[64*c+32+l] = d1*float32(q[l]>>4) - mm1
		}
	}
}

func dequantQ6_K(y []float32, b []byte) {
	ql, qh := b[0:128], b[128:192]
	sc := b[192:208]
	d := f16val(binary.LittleEndian.Uint16(b[208:]))
	for n := 0; n < 2; n++ { // two halves of 128
		l4, h2, s8, yy := ql[64*n:], qh[32*n:], sc[8*n:], y[128*n:]
		for l := 0; l < 32; l++ {
			is := l / 16
			q1 := int(l4[l]&15|(h2[l]>>0&3)<<4) - 32
			q2 := int(l4[l+32]&15|(h2[l]>>2&3)<<4) - 32
			q3 := int(l4[l]>>4|(h2[l]>>4&3)<<4) - 32
			q4 := int(l4[l+32]>>4|(h2[l]>>6&3)<<4) - 32
			yy[l] = d * float32(int8(s8[is])) * float32(q1)
			yy[l+32] = d * float32(int8(s8[is+2])) * float32(q2)
			yy[l+64] = d * float32(int8(s8[is+4])) * float32(q3)
			yy[l+96] = d * float32(int8(s8[is+6])) * float32(q4)
		}
	}
}

// The Q4_K and Q6_K encoders below reproduce llama.cpp's reference
// quantizers (quantize_row_q4_K_ref and quantize_row_q6_K_ref in
// ggml-quants.c, which llama-quantize uses when no importance matrix is
// given), so that a gotune export holds the same blocks as a llama.cpp one.
// Both search for the scale that minimises a weighted squared error instead
// of mapping the extremes to the end codes, which is where their lower error
// comes from.
//
// Byte-identical output needs the same float32 arithmetic in the same order:
// every sum is accumulated sequentially in float32, and each product that is
// then added is wrapped in an explicit float32 conversion, because the Go
// spec lets a compiler fuse x*y+z into one FMA (it does on arm64) unless a
// conversion forces the intermediate rounding; ggml's reference code is
// built without contraction.

// groupMaxEps is the magnitude below which ggml treats a group as all zero.
const groupMaxEps = float32(1e-15)

// nearestInt rounds to the nearest integer with ties to even, the way ggml's
// nearest_int does: adding 1.5·2²³ leaves the integer in the low mantissa
// bits. Doing it the same way (rather than with math.RoundToEven) also gives
// ggml's result for the out-of-range values that a degenerate fit can feed
// it, where only bit-for-bit the same trick keeps the blocks identical.
func nearestInt(v float32) int {
	// The conversion keeps a product passed in as v from being fused with
	// the addition.
	f := float32(v) + 12582912
	return int(math.Float32bits(f)&0x007fffff) - 0x00400000
}

func abs32(v float32) float32 {
	return math.Float32frombits(math.Float32bits(v) &^ (1 << 31))
}

func sqrt32(v float32) float32 {
	// The float64 square root rounded to float32 is the correctly rounded
	// float32 square root (sqrtf), since 53 ≥ 2·24+2.
	return float32(math.Sqrt(float64(v)))
}

// fitScaleMin chooses, for one Q4_K sub-block, a scale s ≥ 0, an offset
// m ≤ 0 and codes L in [0, 15] so that s·L + m approximates x with small
// error weighted by w. It starts from the grid spanning [min(0, lo), hi]
// and then tries 21 narrower and wider grids (14 + k/10 steps across the
// range, k = 0…20); for each it rounds the codes and solves the weighted
// least-squares problem for s and m in closed form, keeping the grid with
// the smallest weighted squared error. It returns s and −m. (ggml:
// make_qkx2_quants with nmax 15, rmin −1, rdelta 0.1, nstep 20, use_mad
// false.)
func fitScaleMin(x, w *[32]float32, L *[32]uint8) (scale, negMin float32) {
	const (
		nmax   = 15
		rmin   = float32(-1)
		rdelta = float32(0.1)
		nstep  = 20
	)
	lo, hi := x[0], x[0]
	sumW := w[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < len(x); i++ {
		if x[i] < lo {
			lo = x[i]
		}
		if x[i] > hi {
			hi = x[i]
		}
		sumW += w[i]
		sumX += float32(w[i] * x[i])
	}
	// The offset is subtracted on decode as dmin·m with m ≥ 0, so it can
	// only move the grid down: a sub-block of positive values starts at 0.
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		*L = [32]uint8{}
		return 0, -lo
	}
	iscale := nmax / (hi - lo)
	scale = 1 / iscale
	var bestErr float32
	for i, v := range x {
		l := max(0, min(nmax, nearestInt(iscale*(v-lo))))
		L[i] = uint8(l)
		diff := float32(scale*float32(l)) + lo - v
		bestErr += float32(w[i] * float32(diff*diff))
	}
	// Later grids start from the best offset found so far rather than from
	// lo, so the search drifts with its own result; the reference does the
	// same, and matching it is what makes the output identical.
	m := lo
	var aux [32]uint8
	for is := 0; is <= nstep; is++ {
		iscale = (rmin + float32(rdelta*float32(is)) + nmax) / (hi - m)
		var sumL, sumL2, sumXL float32
		for i, v := range x {
			l := max(0, min(nmax, nearestInt(iscale*(v-m))))
			aux[i] = uint8(l)
			fl := float32(l)
			wl := float32(w[i] * fl)
			sumL += wl
			sumL2 += float32(wl * fl)
			sumXL += float32(wl * v)
		}
		// Weighted least squares for x ≈ s·l + m: the 2×2 normal equations'
		// determinant D, then s and m by Cramer's rule.
		det := float32(sumW*sumL2) - float32(sumL*sumL)
		if !(det > 0) { // also skips NaN, as the reference's D > 0 test does
			continue
		}
		s := (float32(sumW*sumXL) - float32(sumX*sumL)) / det
		mm := (float32(sumL2*sumX) - float32(sumL*sumXL)) / det
		if mm > 0 {
			// A positive offset is not representable: refit the scale alone.
			mm = 0
			s = sumXL / sumL2
		}
		var e float32
		for i, v := range x {
			diff := float32(s*float32(aux[i])) + mm - v
			e += float32(w[i] * float32(diff*diff))
		}
		if e < bestErr {
			*L = aux
			bestErr, scale, m = e, s, mm
		}
	}
	return scale, -m
}

// quantQ4_K encodes 256 values as one Q4_K block. Each sub-block of 32 gets
// its own scale and offset by fitScaleMin, weighting value v by rms + |v|
// (large values matter more); the eight scales and eight offsets are then
// quantized to 6 bits against their maxima, and the codes recomputed against
// the quantized scales and offsets.
func quantQ4_K(out []byte, x []float32) {
	var L [8][32]uint8
	var w [32]float32
	var scales, mins [8]float32
	var maxScale, maxMin float32
	for j := 0; j < 8; j++ {
		xs := (*[32]float32)(x[32*j : 32*j+32])
		var sumSq float32
		for _, v := range xs {
			sumSq += float32(v * v)
		}
		rms := sqrt32(sumSq / 32)
		for l, v := range xs {
			w[l] = rms + abs32(v)
		}
		scales[j], mins[j] = fitScaleMin(xs, &w, &L[j])
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	var sc, m [8]uint8
	for j := range sc {
		// The wrap to uint8 before the clamp is ggml's: it sends a tiny
		// negative scale (rounding to −1) to 63, as the reference does.
		sc[j] = min(63, uint8(nearestInt(invScale*scales[j])))
		m[j] = min(63, uint8(nearestInt(invMin*mins[j])))
	}
	le := binary.LittleEndian
	dBits, dminBits := f16bits(maxScale/63), f16bits(maxMin/63)
	le.PutUint16(out, dBits)
	le.PutUint16(out[2:], dminBits)
	putScaleMinK4(out[4:16], &sc, &m)
	d, dmin := f16val(dBits), f16val(dminBits)
	for j := 0; j < 8; j++ {
		step := d * float32(sc[j])
		if step == 0 {
			// Nothing to divide by; the decoded values are −dmin·m whatever
			// the codes, and the reference keeps the codes of the fit.
			continue
		}
		off := float32(dmin * float32(m[j]))
		for l, v := range x[32*j : 32*j+32] {
			L[j][l] = uint8(max(0, min(15, nearestInt((v+off)/step))))
		}
	}
	qs := out[16:144]
	for c := 0; c < 4; c++ { // chunk c: sub-block 2c in low nibbles, 2c+1 in high
		for l := 0; l < 32; l++ {
			qs[32*c+l] = L[2*c][l] | L[2*c+1][l]<<4
		}
	}
}

// fitSigned chooses, for one Q6_K sub-block, a signed scale s and codes
// L−nmax in [−nmax, nmax−1] so that s·(L−nmax) approximates x with squared
// error weighted by x² (large values matter most). The first grid maps the
// value of largest magnitude to −nmax, the code with no mirror image, so the
// extreme is exact; 18 slightly finer and coarser grids are then tried, each
// with its least-squares scale, and the best kept. L holds codes offset by
// nmax. (ggml: make_qx_quants with rmse_type 1 and no importance weights.)
func fitSigned(x *[16]float32, L *[16]uint8, nmax int) float32 {
	var amax, mx float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, mx = a, v
		}
	}
	if amax < groupMaxEps {
		*L = [16]uint8{}
		return 0
	}
	fmax := float32(nmax)
	// grid rounds x onto grid iscale, writing the codes (offset by nmax) to
	// codes, and returns Σw·x·l and Σw·l² with w = x².
	grid := func(iscale float32, codes *[16]uint8) (sumLX, sumL2 float32) {
		for i, v := range x {
			l := max(-nmax, min(nmax-1, nearestInt(iscale*v)))
			codes[i] = uint8(l + nmax)
			fl := float32(l)
			w := float32(v * v)
			sumLX += float32(float32(w*v) * fl)
			sumL2 += float32(float32(w*fl) * fl)
		}
		return sumLX, sumL2
	}
	sumLX, sumL2 := grid(-fmax/mx, L)
	var scale float32
	if sumL2 != 0 {
		scale = sumLX / sumL2
	}
	// With the least-squares scale the weighted error is Σw·x² − best, so
	// the grid with the largest best = (Σw·x·l)²/Σw·l² wins.
	best := scale * sumLX
	var aux [16]uint8
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale := -(fmax + float32(0.1*float32(is))) / mx
		lx, l2 := grid(iscale, &aux)
		if l2 > 0 && float32(lx*lx) > float32(best*l2) {
			*L = aux
			scale = lx / l2
			best = scale * lx
		}
	}
	return scale
}

// quantQ6_K encodes 256 values as one Q6_K block: each sub-block of 16 gets
// a signed scale from fitSigned; the sixteen scales are quantized to int8
// against the one of largest magnitude (which maps to −128), and the codes
// recomputed against the quantized scales.
func quantQ6_K(out []byte, x []float32) {
	var L [qkK]uint8
	var scales [16]float32
	var maxAbs, maxScale float32
	for s := range scales {
		scales[s] = fitSigned((*[16]float32)(x[16*s:16*s+16]), (*[16]uint8)(L[16*s:16*s+16]), 32)
		if a := abs32(scales[s]); a > maxAbs {
			maxAbs, maxScale = a, scales[s]
		}
	}
	if maxAbs < groupMaxEps {
		clear(out[:210])
		return
	}
	iscale := -128 / maxScale
	dBits := f16bits(1 / iscale)
	binary.LittleEndian.PutUint16(out[208:], dBits)
	d := f16val(dBits)
	for s := range scales {
		// Only the mirror of the largest scale can round past 127; the int8
		// conversion wraps as ggml's does for anything below −128.
		sc := int8(min(127, nearestInt(iscale*scales[s])))
		out[192+s] = byte(sc)
		step := d * float32(sc)
		if step == 0 {
			continue // keep the fit's codes, as the reference does
		}
		for i := 16 * s; i < 16*s+16; i++ {
			L[i] = uint8(max(-32, min(31, nearestInt(x[i]/step))) + 32)
		}
	}
	// Pack in the order dequantQ6_K reads: within each half of 128, values
	// l, l+32, l+64, l+96 share ql bytes l and l+32 and qh byte l.
	for n := 0; n < 2; n++ {
		ql, qh, qq := out[64*n:], out[128+32*n:], L[128*n:]
		for l := 0; l < 32; l++ {
			ql[l] = qq[l]&15 | (qq[l+64]&15)<<4
			ql[l+32] = qq[l+32]&15 | (qq[l+96]&15)<<4
			qh[l] = qq[l]>>4 | (qq[l+32]>>4)<<2 | (qq[l+64]>>4)<<4 | (qq[l+96]>>4)<<6
		}
	}
}
