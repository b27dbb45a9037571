// Package gguf reads and writes GGUF files, the single-file model format of
// llama.cpp and Ollama, converts Hugging Face model folders and PEFT LoRA
// adapters into it, checks a file against what llama.cpp's loader needs, and
// writes Ollama Modelfiles.
//
// Tensor dimensions are given as GGUF stores them: Dims[0] (ne0) is the
// fastest-varying one, so a PyTorch weight of shape [out, in] has Dims
// [in, out].
package gguf

import "fmt"

// ValueType is the type tag of a metadata value.
type ValueType uint32

// Metadata value types, numbered as the GGUF specification numbers them.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// size is the encoded width of a fixed-size scalar, 0 for strings and arrays.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// KV is one metadata entry. Value holds a Go value of the matching type:
// uint8, int8, uint16, int16, uint32, int32, float32, bool, string, uint64,
// int64, float64, or a slice of one of them for arrays ([]string, []int32,
// []float32, ...). The reader fills Value the same way.
type KV struct {
	Key   string
	Value any
}

// Type reports the GGUF type of the value and, for arrays, of its elements.
// ok is false for a Go type GGUF cannot hold.
func (kv KV) Type() (t, elem ValueType, ok bool) {
	switch kv.Value.(type) {
	case uint8:
		return TypeUint8, 0, true
	case int8:
		return TypeInt8, 0, true
	case uint16:
		return TypeUint16, 0, true
	case int16:
		return TypeInt16, 0, true
	case uint32:
		return TypeUint32, 0, true
	case int32:
		return TypeInt32, 0, true
	case float32:
		return TypeFloat32, 0, true
	case bool:
		return TypeBool, 0, true
	case string:
		return TypeString, 0, true
	case uint64:
		return TypeUint64, 0, true
	case int64:
		return TypeInt64, 0, true
	case float64:
		return TypeFloat64, 0, true
	case []uint8:
		return TypeArray, TypeUint8, true
	case []int8:
		return TypeArray, TypeInt8, true
	case []uint16:
		return TypeArray, TypeUint16, true
	case []int16:
		return TypeArray, TypeInt16, true
	case []uint32:
		return TypeArray, TypeUint32, true
	case []int32:
		return TypeArray, TypeInt32, true
	case []float32:
		return TypeArray, TypeFloat32, true
	case []bool:
		return TypeArray, TypeBool, true
	case []string:
		return TypeArray, TypeString, true
	case []uint64:
		return TypeArray, TypeUint64, true
	case []int64:
		return TypeArray, TypeInt64, true
	case []float64:
		return TypeArray, TypeFloat64, true
	}
	return 0, 0, false
}

// TensorType is a ggml tensor element type.
type TensorType uint32

// ggml tensor types (the numbering is part of the file format).
const (
	F32     TensorType = 0
	F16     TensorType = 1
	Q4_0    TensorType = 2
	Q4_1    TensorType = 3
	Q5_0    TensorType = 6
	Q5_1    TensorType = 7
	Q8_0    TensorType = 8
	Q8_1    TensorType = 9
	Q2_K    TensorType = 10
	Q3_K    TensorType = 11
	Q4_K    TensorType = 12
	Q5_K    TensorType = 13
	Q6_K    TensorType = 14
	Q8_K    TensorType = 15
	IQ2_XXS TensorType = 16
	IQ2_XS  TensorType = 17
	IQ3_XXS TensorType = 18
	IQ1_S   TensorType = 19
	IQ4_NL  TensorType = 20
	IQ3_S   TensorType = 21
	IQ2_S   TensorType = 22
	IQ4_XS  TensorType = 23
	I8      TensorType = 24
	I16     TensorType = 25
	I32     TensorType = 26
	I64     TensorType = 27
	F64     TensorType = 28
	IQ1_M   TensorType = 29
	BF16    TensorType = 30
	TQ1_0   TensorType = 34
	TQ2_0   TensorType = 35
	MXFP4   TensorType = 39
)

type typeTraits struct {
	name  string
	block int // elements per block
	size  int // bytes per block
}

// traits lists the types whose block layout is known; a file using any other
// type is refused because its tensor sizes cannot be checked.
var traits = map[TensorType]typeTraits{
	F32: {"F32", 1, 4}, F16: {"F16", 1, 2}, BF16: {"BF16", 1, 2}, F64: {"F64", 1, 8},
	I8: {"I8", 1, 1}, I16: {"I16", 1, 2}, I32: {"I32", 1, 4}, I64: {"I64", 1, 8},
	Q4_0: {"Q4_0", 32, 18}, Q4_1: {"Q4_1", 32, 20}, Q5_0: {"Q5_0", 32, 22}, Q5_1: {"Q5_1", 32, 24},
	Q8_0: {"Q8_0", 32, 34}, Q8_1: {"Q8_1", 32, 36},
	Q2_K: {"Q2_K", 256, 84}, Q3_K: {"Q3_K", 256, 110}, Q4_K: {"Q4_K", 256, 144},
	Q5_K: {"Q5_K", 256, 176}, Q6_K: {"Q6_K", 256, 210}, Q8_K: {"Q8_K", 256, 292},
	IQ2_XXS: {"IQ2_XXS", 256, 66}, IQ2_XS: {"IQ2_XS", 256, 74}, IQ3_XXS: {"IQ3_XXS", 256, 98},
	IQ1_S: {"IQ1_S", 256, 50}, IQ4_NL: {"IQ4_NL", 32, 18}, IQ3_S: {"IQ3_S", 256, 110},
	IQ2_S: {"IQ2_S", 256, 82}, IQ4_XS: {"IQ4_XS", 256, 136}, IQ1_M: {"IQ1_M", 256, 56},
	TQ1_0: {"TQ1_0", 256, 54}, TQ2_0: {"TQ2_0", 256, 66}, MXFP4: {"MXFP4", 32, 17},
}

func (t TensorType) String() string {
	if tr, ok := traits[t]; ok {
		return tr.name
	}
	return fmt.Sprintf("TensorType(%d)", uint32(t))
}

// BlockSize is the number of elements one block of this type holds (1 for
// plain types, 0 for an unknown type).
func (t TensorType) BlockSize() int { return traits[t].block }

// BlockBytes is the encoded size of one block (0 for an unknown type).
func (t TensorType) BlockBytes() int { return traits[t].size }

// RowBytes is the encoded size of n elements; n must be a multiple of the
// block size.
func (t TensorType) RowBytes(n int) int {
	tr := traits[t]
	if tr.block == 0 {
		return 0
	}
	return n / tr.block * tr.size
}

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name string
	// Dims as GGUF stores them: Dims[0] varies fastest.
	Dims []uint64
	Type TensorType
	// Offset is relative to the start of the data section.
	Offset uint64
	// Size is the encoded size in bytes.
	Size uint64
}

// Elems is the number of elements.
func (ti TensorInfo) Elems() uint64 {
	n := uint64(1)
	for _, d := range ti.Dims {
		n *= d
	}
	return n
}

// Shape returns the dimensions in row-major (PyTorch) order, slowest first.
func (ti TensorInfo) Shape() []int {
	s := make([]int, len(ti.Dims))
	for i, d := range ti.Dims {
		s[len(s)-1-i] = int(d)
	}
	return s
}

// FileType is llama.cpp's general.file_type: the dominant tensor type.
type FileType uint32

// llama.cpp file types (llama_ftype) this package writes.
const (
	FileF32  FileType = 0
	FileF16  FileType = 1
	FileQ4_0 FileType = 2
	FileQ8_0 FileType = 7
	// FileQ4_K_S is the closest llama_ftype for "Q4_K everywhere it fits".
	FileQ4_K_S FileType = 14
	FileQ4_K_M FileType = 15
	FileQ6_K   FileType = 18
	FileBF16   FileType = 32
)

const (
	magic            = "GGUF"
	defaultAlignment = 32
	// maxDims is ggml's GGML_MAX_DIMS.
	maxDims = 4
)
