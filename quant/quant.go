// Package quant keeps frozen linear-layer weights in 4 or 8 bits (QLoRA's
// NF4/FP4 with optional double quantization, and INT8 per row or per block)
// and multiplies with them directly: the kernels dequantize a small panel at
// a time into pooled scratch, so no full-precision copy of a weight matrix
// ever exists.
//
// Layout follows bitsandbytes so checkpoints interoperate: a weight W is
// rows×cols (out×in, row-major, as in nn.Linear); it is quantized as one flat
// sequence of rows·cols values cut into blocks of BlockSize (a block may span
// two rows when cols is not a multiple of BlockSize); each block stores its
// absolute maximum; 4-bit codes are packed two per byte, the first element in
// the high nibble.
//
// Quantization of a block with absmax a: s = x·float32(1/a); the code is the
// code-book value nearest to s (ties at a midpoint go to the smaller value
// for NF4 and the smaller magnitude for FP4, as in bitsandbytes' kernels; an
// all-zero block has a = 0 and decodes to zeros). Decoding is code[q]·a in
// float32. With DoubleQuant the per-block absmax values are
// themselves quantized as bitsandbytes does (compress_statistics): their mean
// (summed in float64, rounded to float32) is subtracted (the offset), the remainders are quantized in blocks of 256
// to the signed 8-bit dynamic map, each block keeping a float32 absmax; the
// decoded absmax is float32(dyn[q]·a2) + offset.
//
// INT8 follows LLM.int8()'s vector-wise scheme: q = round-half-even(
// x·float32(127/a)), decoded as q·float32(a/127), with a per output row
// (Int8Row) or per flat block (Int8Block).
package quant

import (
	"fmt"
	"gotune/dtype"
	"math"
	"sync"

	"gotune/parallel"
)

// Type names a storage format for frozen weights. F32 and BF16 are the
// unquantized formats; they exist so Footprint can compare, and Quantize
// rejects them.
type Type int

const (
	NF4 Type = iota + 1
	FP4
	Int8Row
	Int8Block
	F32
	BF16
)

var typeNames = map[Type]string{NF4: "nf4", FP4: "fp4", Int8Row: "int8-row", Int8Block: "int8-block", F32: "f32", BF16: "bf16"}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// ParseType reads a type name as written in configs: nf4, fp4, int8-row
// (also int8), int8-block, f32, bf16.
func ParseType(s string) (Type, error) {
	if s == "int8" {
		return Int8Row, nil
	}
	for t, name := range typeNames {
		if name == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("quant: unknown type %q (want nf4, fp4, int8-row, int8-block, f32 or bf16)", s)
}

func (t Type) fourBit() bool { return t == NF4 || t == FP4 }

// Options choose the format.
type Options struct {
	Type Type
	// BlockSize is the number of consecutive (flat, row-major) elements that
	// share one absmax; 0 means 64. Ignored by Int8Row. 4-bit types need an
	// even size; bitsandbytes itself accepts 32…4096 (powers of two).
	BlockSize int
	// DoubleQuant quantizes the absmax values (NF4/FP4 only), saving about
	// 0.37 bit per weight at block size 64.
	DoubleQuant bool
	// NestedBlockSize is the block size of the double quantization; 0 means
	// 256, the value bitsandbytes uses.
	NestedBlockSize int
}

const (
	defaultBlockSize  = 64
	defaultNestedSize = 256
	maxBlockSize      = 1 << 20
)

func (o Options) withDefaults() Options {
	if o.BlockSize == 0 {
		o.BlockSize = defaultBlockSize
	}
	if o.NestedBlockSize == 0 {
		o.NestedBlockSize = defaultNestedSize
	}
	return o
}

func (o Options) validate() error {
	switch o.Type {
	case NF4, FP4, Int8Row, Int8Block:
	case F32, BF16:
		return fmt.Errorf("quant: type %v is not a quantized type", o.Type)
	default:
		return fmt.Errorf("quant: unknown type %v (want nf4, fp4, int8-row or int8-block)", o.Type)
	}
	if o.BlockSize < 1 || o.BlockSize > maxBlockSize {
		return fmt.Errorf("quant: block size %d out of range [1, %d]", o.BlockSize, maxBlockSize)
	}
	if o.Type.fourBit() && o.BlockSize%2 != 0 {
		return fmt.Errorf("quant: block size %d must be even for %v (two codes share a byte)", o.BlockSize, o.Type)
	}
	if o.DoubleQuant {
		if !o.Type.fourBit() {
			return fmt.Errorf("quant: double quantization applies to nf4/fp4, not %v", o.Type)
		}
		if o.NestedBlockSize < 1 || o.NestedBlockSize > maxBlockSize {
			return fmt.Errorf("quant: nested block size %d out of range [1, %d]", o.NestedBlockSize, maxBlockSize)
		}
	}
	return nil
}

// Matrix is a quantized rows×cols weight. It is immutable after creation and
// safe for concurrent use.
type Matrix struct {
	rows, cols int
	typ        Type
	bs         int    // elements per absmax block (cols for Int8Row)
	srcDType   string // dtype of the original weight, recorded in checkpoints

	// 4-bit types
	packed []byte
	code   [16]float32
	pairs  *[256][2]float32 // decoded (high, low) nibble values of every byte

	// int8 types: two's-complement bytes
	q []byte

	// Scales: absmax per block (per row for Int8Row), or, double-quantized,
	// qabsmax per block decoded through nestedCode/nestedAbsmax plus offset.
	absmax       []float32
	qabsmax      []byte
	nestedAbsmax []float32
	nestedCode   *[256]float32
	nestedBS     int
	offset       float32
}

// Rows is the number of output features.
func (m *Matrix) Rows() int { return m.rows }

// Cols is the number of input features.
func (m *Matrix) Cols() int { return m.cols }

// Type is the storage format.
func (m *Matrix) Type() Type { return m.typ }

// BlockSize is the number of elements sharing one scale (cols for Int8Row).
func (m *Matrix) BlockSize() int { return m.bs }

// DoubleQuant reports whether the block scales are themselves quantized.
func (m *Matrix) DoubleQuant() bool { return m.qabsmax != nil }

// Bytes is the resident size: codes, scales (and their nested scales and
// code book), code books and the 2 KiB byte-decode table of 4-bit types.
func (m *Matrix) Bytes() int64 {
	b := len(m.packed) + len(m.q) + 4*len(m.absmax) + len(m.qabsmax) + 4*len(m.nestedAbsmax)
	if m.typ.fourBit() {
		b += 4*len(m.code) + 8*256
	}
	if m.nestedCode != nil {
		b += 4*len(m.nestedCode) + 4
	}
	return int64(b)
}

// Dims is [Rows, Cols], the layer's [Out, In] (nn.Weight).
func (m *Matrix) Dims() (out, in int) { return m.rows, m.cols }

// Quantize packs the row-major rows×cols float32 weight w.
func Quantize(w []float32, rows, cols int, opt Options) (*Matrix, error) {
	m, err := newMatrix(rows, cols, opt, "float32")
	if err != nil {
		return nil, err
	}
	if len(w) != rows*cols {
		return nil, fmt.Errorf("quant: weight has %d values, want rows·cols = %d·%d = %d", len(w), rows, cols, rows*cols)
	}
	unit := m.encodeUnit()
	units := (rows*cols + unit - 1) / unit
	err = parallelErr(units, 1, func(lo, hi int) error {
		e0, e1 := lo*unit, min(hi*unit, rows*cols)
		return m.encode(w[e0:e1], e0)
	})
	if err != nil {
		return nil, err
	}
	m.finish(opt)
	return m, nil
}

// QuantizeBF16 packs a row-major weight given as bfloat16 bit patterns. It
// widens a few blocks at a time into float32 scratch, never the whole matrix.
func QuantizeBF16(w []uint16, rows, cols int, opt Options) (*Matrix, error) {
	m, err := newMatrix(rows, cols, opt, "bfloat16")
	if err != nil {
		return nil, err
	}
	if len(w) != rows*cols {
		return nil, fmt.Errorf("quant: weight has %d values, want rows·cols = %d·%d = %d", len(w), rows, cols, rows*cols)
	}
	unit := m.encodeUnit()
	per := max(1, 16384/unit) // units widened per step: ~64 KiB of float32
	units := (rows*cols + unit - 1) / unit
	err = parallelErr(units, per, func(lo, hi int) error {
		buf := make([]float32, per*unit)
		for u := lo; u < hi; u += per {
			e0, e1 := u*unit, min(min(u+per, hi)*unit, rows*cols)
			f := buf[:e1-e0]
			dtype.BF16ToF32(f, w[e0:e1])
			if err := m.encode(f, e0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.finish(opt)
	return m, nil
}

func newMatrix(rows, cols int, opt Options, src string) (*Matrix, error) {
	opt = opt.withDefaults()
	if err := opt.validate(); err != nil {
		return nil, err
	}
	if rows < 1 || cols < 1 {
		return nil, fmt.Errorf("quant: shape %d×%d, want positive rows and cols", rows, cols)
	}
	if rows > math.MaxInt32 || cols > math.MaxInt32 || rows*cols/rows != cols {
		return nil, fmt.Errorf("quant: shape %d×%d is too large", rows, cols)
	}
	n := rows * cols
	m := &Matrix{rows: rows, cols: cols, typ: opt.Type, bs: opt.BlockSize, srcDType: src}
	switch opt.Type {
	case NF4, FP4:
		m.packed = make([]byte, (n+1)/2)
		m.setCode(builtinCode(opt.Type))
	case Int8Row:
		m.bs = cols
		m.q = make([]byte, n)
	case Int8Block:
		m.q = make([]byte, n)
	}
	m.absmax = make([]float32, (n+m.bs-1)/m.bs)
	return m, nil
}

func builtinCode(t Type) [16]float32 {
	if t == FP4 {
		return fp4Values
	}
	return nf4Values
}

func (m *Matrix) setCode(code [16]float32) {
	m.code = code
	m.pairs = new([256][2]float32)
	for b := range 256 {
		m.pairs[b] = [2]float32{code[b>>4], code[b&15]}
	}
}

// encodeUnit is the number of elements encoded as one independent piece: a
// whole number of scale blocks.
func (m *Matrix) encodeUnit() int {
	u := m.bs
	for u < 4096 {
		u *= 2
	}
	return u
}

// encode quantizes src, the elements starting at flat index e0 (a block
// boundary), and records their block absmax values.
func (m *Matrix) encode(src []float32, e0 int) error {
	for off := 0; off < len(src); off += m.bs {
		blk := src[off:min(off+m.bs, len(src))]
		e := e0 + off
		var amax float32
		for i, v := range blk {
			a := float32(math.Abs(float64(v)))
			if !(a <= math.MaxFloat32) {
				return fmt.Errorf("quant: weight[%d][%d] is %v, want a finite value", (e+i)/m.cols, (e+i)%m.cols, v)
			}
			amax = max(amax, a)
		}
		m.absmax[e/m.bs] = amax
		switch m.typ {
		case NF4, FP4:
			m.encode4(blk, e, amax)
		default:
			encode8(m.q[e:e+len(blk)], blk, amax)
		}
	}
	return nil
}

func (m *Matrix) encode4(blk []float32, e int, amax float32) {
	inv := float32(0)
	if amax > 0 {
		inv = 1 / amax
	}
	nearest := nearestNF4
	if m.typ == FP4 {
		nearest = nearestFP4
	}
	dst := m.packed[e/2:]
	// e is even (blocks have even size), so pairs align with bytes; an odd
	// tail (last block only) leaves the low nibble zero, as bitsandbytes pads.
	i := 0
	for ; i+1 < len(blk); i += 2 {
		dst[i/2] = nearest(blk[i]*inv)<<4 | nearest(blk[i+1]*inv)
	}
	if i < len(blk) {
		dst[i/2] = nearest(blk[i]*inv) << 4
	}
}

func encode8(dst []byte, blk []float32, amax float32) {
	if amax == 0 {
		clear(dst)
		return
	}
	f := 127 / amax
	for i, v := range blk {
		r := math.RoundToEven(float64(v * f))
		dst[i] = byte(int8(max(-127, min(127, r))))
	}
}

// finish applies double quantization, replacing absmax by its 8-bit form.
func (m *Matrix) finish(opt Options) {
	opt = opt.withDefaults()
	if !opt.DoubleQuant {
		return
	}
	var sum float64
	for _, a := range m.absmax {
		sum += float64(a)
	}
	offset := float32(sum / float64(len(m.absmax)))
	code := dynamicCode()
	nbs := opt.NestedBlockSize
	q := make([]byte, len(m.absmax))
	nested := make([]float32, (len(m.absmax)+nbs-1)/nbs)
	for b := range nested {
		part := m.absmax[b*nbs : min((b+1)*nbs, len(m.absmax))]
		var amax float32
		for _, a := range part {
			amax = max(amax, float32(math.Abs(float64(a-offset))))
		}
		nested[b] = amax
		inv := float32(0)
		if amax > 0 {
			inv = 1 / amax
		}
		for i, a := range part {
			s := max(-1, min(1, (a-offset)*inv))
			q[b*nbs+i] = nearestSorted(code[:], s)
		}
	}
	m.absmax = nil
	m.qabsmax, m.nestedAbsmax, m.nestedCode, m.nestedBS, m.offset = q, nested, code, nbs, offset
}

// scale returns the decoded absmax of block b.
func (m *Matrix) scale(b int) float32 {
	if m.qabsmax == nil {
		return m.absmax[b]
	}
	return float32(m.nestedCode[m.qabsmax[b]]*m.nestedAbsmax[b/m.nestedBS]) + m.offset
}

// parallelErr runs fn over [0,n) in parallel chunks and returns the first
// error any chunk reported.
func parallelErr(n, minChunk int, fn func(lo, hi int) error) error {
	var mu sync.Mutex
	var first error
	parallel.For(n, minChunk, func(lo, hi int) {
		if err := fn(lo, hi); err != nil {
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
		}
	})
	return first
}

// Packed4 exposes a 4-bit matrix for a device backend: the packed codes (two
// per byte, the first element in the high nibble), the decoded scale of
// every block (double quantization undone), the code book and the block
// size. ok is false for other types.
func (m *Matrix) Packed4() (packed []byte, scales []float32, code [16]float32, block int, ok bool) {
	if !m.typ.fourBit() {
		return nil, nil, code, 0, false
	}
	n := (m.rows*m.cols + m.bs - 1) / m.bs
	scales = make([]float32, n)
	for b := range scales {
		scales[b] = m.scale(b)
	}
	return m.packed, scales, m.code, m.bs, true
}

// Packed8 exposes an INT8 matrix for a device backend: the codes (one
// signed byte an element, row-major), each block's scale as the CPU applies
// it (absmax / 127) and the block size (cols for Int8Row). ok is false for
// other types.
func (m *Matrix) Packed8() (q []byte, scales []float32, block int, ok bool) {
	if m.typ != Int8Row && m.typ != Int8Block {
		return nil, nil, 0, false
	}
	scales = make([]float32, len(m.absmax))
	for b, a := range m.absmax {
		scales[b] = a / 127
	}
	return m.q, scales, m.bs, true
}
