package safetensors

import (
	"encoding/binary"
	"fmt"
	"gotune/dtype"
	"math"
)

// Float32s decodes a floating-point tensor (F32, F16, BF16 or F64) to float32.
func Float32s(b []byte, info Info) ([]float32, error) {
	out := make([]float32, info.Elems())
	if err := DecodeFloat32s(out, b, info); err != nil {
		return nil, err
	}
	return out, nil
}

// DecodeFloat32s decodes into dst, which must hold info.Elems() values.
func DecodeFloat32s(dst []float32, b []byte, info Info) error {
	n := info.Elems()
	if len(dst) != n {
		return fmt.Errorf("tensor %q: destination holds %d values, tensor has %d", info.Name, len(dst), n)
	}
	switch info.DType {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
	case BF16, F16:
		u := make([]uint16, n)
		for i := range u {
			u[i] = binary.LittleEndian.Uint16(b[2*i:])
		}
		if info.DType == BF16 {
			dtype.BF16ToF32(dst, u)
		} else {
			dtype.F16ToF32(dst, u)
		}
	default:
		return fmt.Errorf("tensor %q: dtype %s is not floating point", info.Name, info.DType)
	}
	return nil
}

// Float64s decodes a floating-point tensor to float64 (F64 exactly).
func Float64s(b []byte, info Info) ([]float64, error) {
	if info.DType == F64 {
		out := make([]float64, info.Elems())
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		return out, nil
	}
	f, err := Float32s(b, info)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(f))
	for i, v := range f {
		out[i] = float64(v)
	}
	return out, nil
}

// Int64s decodes an integer tensor (I64, I32, I16, I8, U8, U16, U32, BOOL).
func Int64s(b []byte, info Info) ([]int64, error) {
	out := make([]int64, info.Elems())
	for i := range out {
		switch info.DType {
		case I64, U64:
			out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		case I32:
			out[i] = int64(int32(binary.LittleEndian.Uint32(b[4*i:])))
		case U32:
			out[i] = int64(binary.LittleEndian.Uint32(b[4*i:]))
		case I16:
			out[i] = int64(int16(binary.LittleEndian.Uint16(b[2*i:])))
		case U16:
			out[i] = int64(binary.LittleEndian.Uint16(b[2*i:]))
		case I8:
			out[i] = int64(int8(b[i]))
		case U8, Bool:
			out[i] = int64(b[i])
		default:
			return nil, fmt.Errorf("tensor %q: dtype %s is not an integer type", info.Name, info.DType)
		}
	}
	return out, nil
}

// EncodeF32 returns the little-endian bytes of v.
func EncodeF32(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// EncodeF64 returns the little-endian bytes of v.
func EncodeF64(v []float64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return b
}

// EncodeBF16 rounds v to bfloat16 (nearest even) and returns its bytes.
func EncodeBF16(v []float32) []byte {
	u := make([]uint16, len(v))
	dtype.F32ToBF16(u, v)
	return encodeU16(u)
}

// EncodeF16 rounds v to IEEE half precision and returns its bytes.
func EncodeF16(v []float32) []byte {
	u := make([]uint16, len(v))
	dtype.F32ToF16(u, v)
	return encodeU16(u)
}

func encodeU16(u []uint16) []byte {
	b := make([]byte, 2*len(u))
	for i, x := range u {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}

// EncodeI64 returns the little-endian bytes of v.
func EncodeI64(v []int64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return b
}
