package quant

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// NamedTensor is one tensor of a checkpoint, in safetensors terms.
type NamedTensor struct {
	Name  string
	DType string // safetensors dtype: "U8", "I8", "F32"
	Shape []int
	Data  []byte // little-endian; may alias the matrix's storage: do not modify
}

// Tensors returns the matrix as the tensors bitsandbytes writes for the
// module called name (e.g. "model.layers.0.mlp.up_proj"):
//
// 4-bit (Linear4bit): name.weight (U8 [(n+1)/2, 1], packed codes),
// name.weight.absmax (F32 [blocks], or U8 when double-quantized),
// name.weight.quant_map (F32 [16]), with double quantization
// name.weight.nested_absmax (F32) and name.weight.nested_quant_map (F32 [256]),
// and name.weight.quant_state.bitsandbytes__nf4 (or __fp4): U8 bytes of a JSON
// object with quant_type, blocksize, dtype, shape and the nested_blocksize,
// nested_dtype, nested_offset of double quantization.
//
// Int8Row (Linear8bitLt): name.weight (I8 [rows, cols]), name.SCB (F32
// [rows], the row absmax) and name.weight_format (U8 scalar 0, "row").
//
// Int8Block has no bitsandbytes counterpart; it is written in the 4-bit
// style: name.weight (I8 [rows, cols]), name.weight.absmax (F32 [blocks]) and
// name.weight.quant_state.gotune__int8 (JSON: quant_type "int8", blocksize,
// dtype, shape).
func (m *Matrix) Tensors(name string) []NamedTensor {
	w := name + ".weight"
	switch m.typ {
	case Int8Row:
		return []NamedTensor{
			{w, "I8", []int{m.rows, m.cols}, m.q},
			{name + ".SCB", "F32", []int{m.rows}, f32Bytes(m.absmax)},
			{name + ".weight_format", "U8", []int{}, []byte{0}},
		}
	case Int8Block:
		state := int8JSON(m)
		return []NamedTensor{
			{w, "I8", []int{m.rows, m.cols}, m.q},
			{w + ".absmax", "F32", []int{len(m.absmax)}, f32Bytes(m.absmax)},
			{w + ".quant_state.gotune__int8", "U8", []int{len(state)}, state},
		}
	}
	out := []NamedTensor{{w, "U8", []int{len(m.packed), 1}, m.packed}}
	if m.qabsmax != nil {
		out = append(out,
			NamedTensor{w + ".absmax", "U8", []int{len(m.qabsmax)}, m.qabsmax},
			NamedTensor{w + ".nested_absmax", "F32", []int{len(m.nestedAbsmax)}, f32Bytes(m.nestedAbsmax)},
			NamedTensor{w + ".nested_quant_map", "F32", []int{len(m.nestedCode)}, f32Bytes(m.nestedCode[:])},
		)
	} else {
		out = append(out, NamedTensor{w + ".absmax", "F32", []int{len(m.absmax)}, f32Bytes(m.absmax)})
	}
	out = append(out, NamedTensor{w + ".quant_map", "F32", []int{16}, f32Bytes(m.code[:])})
	state := m.stateJSON()
	out = append(out, NamedTensor{w + ".quant_state.bitsandbytes__" + m.typ.String(), "U8", []int{len(state)}, state})
	return out
}

// stateJSON renders the non-tensor quantization state the way
// bitsandbytes' json.dumps does (key order, ", " and ": " separators,
// Python float repr), so our files are byte-identical where possible.
func (m *Matrix) stateJSON() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"quant_type": %q, "blocksize": %d, "dtype": %q, "shape": [%d, %d]`, m.typ.String(), m.bs, m.srcDType, m.rows, m.cols)
	if m.qabsmax != nil {
		fmt.Fprintf(&b, `, "nested_blocksize": %d, "nested_dtype": "float32", "nested_offset": %s`, m.nestedBS, pyFloat(float64(m.offset)))
	}
	b.WriteString("}")
	return []byte(b.String())
}

func int8JSON(m *Matrix) []byte {
	return fmt.Appendf(nil, `{"quant_type": "int8", "blocksize": %d, "dtype": %q, "shape": [%d, %d]}`, m.bs, m.srcDType, m.rows, m.cols)
}

// pyFloat formats like Python's repr(float): shortest round-trip digits,
// scientific notation below 1e-4 or from 1e16, and always a '.' or exponent.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	a := math.Abs(f)
	if a != 0 && (a < 1e-4 || a >= 1e16) {
		s := strconv.FormatFloat(f, 'e', -1, 64)
		// Python writes 1e-05 (two-digit exponent at least), as Go does.
		return s
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// quantState is the JSON side of a bitsandbytes quant_state.
type quantState struct {
	QuantType       string   `json:"quant_type"`
	BlockSize       int      `json:"blocksize"`
	DType           string   `json:"dtype"`
	Shape           []int    `json:"shape"`
	NestedBlockSize int      `json:"nested_blocksize"`
	NestedDType     string   `json:"nested_dtype"`
	NestedOffset    *float64 `json:"nested_offset"`
}

// FromTensors rebuilds the matrix of module name from a checkpoint, with get
// looking tensors up by full name. It recognises the layouts Tensors writes
// (bitsandbytes 4-bit and 8-bit, and gotune's int8-block) and checks every
// size against the recorded shape. The code books are taken from the file.
func FromTensors(name string, get func(name string) (dtype string, shape []int, data []byte, ok bool)) (*Matrix, error) {
	w := name + ".weight"
	for _, t := range []Type{NF4, FP4} {
		key := w + ".quant_state.bitsandbytes__" + t.String()
		if _, _, data, ok := get(key); ok {
			m, err := from4bit(w, key, t, data, get)
			if err != nil {
				return nil, fmt.Errorf("quant: %s: %w", name, err)
			}
			return m, nil
		}
	}
	if _, _, _, ok := get(name + ".SCB"); ok {
		m, err := fromInt8Row(name, get)
		if err != nil {
			return nil, fmt.Errorf("quant: %s: %w", name, err)
		}
		return m, nil
	}
	if _, _, data, ok := get(w + ".quant_state.gotune__int8"); ok {
		m, err := fromInt8Block(w, data, get)
		if err != nil {
			return nil, fmt.Errorf("quant: %s: %w", name, err)
		}
		return m, nil
	}
	return nil, fmt.Errorf("quant: %s: no quantization state found (want %s.quant_state.bitsandbytes__nf4/__fp4, %s.SCB or %s.quant_state.gotune__int8)", name, w, name, w)
}

func parseState(key string, data []byte) (quantState, error) {
	var st quantState
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&st); err != nil {
		return st, fmt.Errorf("tensor %s: quant_state JSON: %w", key, err)
	}
	if len(st.Shape) != 2 || st.Shape[0] < 1 || st.Shape[1] < 1 {
		return st, fmt.Errorf("tensor %s: field shape is %v, want [rows, cols] with positive sizes", key, st.Shape)
	}
	if st.BlockSize < 1 || st.BlockSize > maxBlockSize {
		return st, fmt.Errorf("tensor %s: field blocksize is %d, want 1…%d", key, st.BlockSize, maxBlockSize)
	}
	switch st.DType {
	case "float32", "bfloat16", "float16":
	default:
		return st, fmt.Errorf("tensor %s: field dtype is %q, want float32, bfloat16 or float16", key, st.DType)
	}
	return st, nil
}

// fetch gets a tensor and checks its dtype and element count.
func fetch(get func(string) (string, []int, []byte, bool), key, dtype string, count int) ([]byte, error) {
	dt, shape, data, ok := get(key)
	if !ok {
		return nil, fmt.Errorf("tensor %s is missing", key)
	}
	if dt != dtype {
		return nil, fmt.Errorf("tensor %s has dtype %s, want %s", key, dt, dtype)
	}
	size := 1
	for _, d := range shape {
		size *= d
	}
	width := map[string]int{"U8": 1, "I8": 1, "F32": 4}[dtype]
	if size != count || len(data) != count*width {
		return nil, fmt.Errorf("tensor %s has shape %v (%d bytes), want %d elements of %s", key, shape, len(data), count, dtype)
	}
	return data, nil
}

func from4bit(w, key string, t Type, stateData []byte, get func(string) (string, []int, []byte, bool)) (*Matrix, error) {
	st, err := parseState(key, stateData)
	if err != nil {
		return nil, err
	}
	if st.QuantType != t.String() {
		return nil, fmt.Errorf("tensor %s: field quant_type is %q, want %q", key, st.QuantType, t.String())
	}
	if st.BlockSize%2 != 0 {
		return nil, fmt.Errorf("tensor %s: field blocksize is %d, want an even size", key, st.BlockSize)
	}
	m, err := newMatrix(st.Shape[0], st.Shape[1], Options{Type: t, BlockSize: st.BlockSize}, st.DType)
	if err != nil {
		return nil, fmt.Errorf("tensor %s: %w", key, err)
	}
	n := m.rows * m.cols
	blocks := len(m.absmax)
	packed, err := fetch(get, w, "U8", (n+1)/2)
	if err != nil {
		return nil, err
	}
	copy(m.packed, packed)
	qm, err := fetch(get, w+".quant_map", "F32", 16)
	if err != nil {
		return nil, err
	}
	var code [16]float32
	readF32(code[:], qm)
	m.setCode(code)
	if st.NestedOffset == nil {
		am, err := fetch(get, w+".absmax", "F32", blocks)
		if err != nil {
			return nil, err
		}
		readF32(m.absmax, am)
		return m, checkScales(w+".absmax", m.absmax)
	}
	if st.NestedBlockSize < 1 || st.NestedBlockSize > maxBlockSize {
		return nil, fmt.Errorf("tensor %s: field nested_blocksize is %d, want 1…%d", key, st.NestedBlockSize, maxBlockSize)
	}
	if st.NestedDType != "float32" {
		return nil, fmt.Errorf("tensor %s: field nested_dtype is %q, want \"float32\"", key, st.NestedDType)
	}
	qa, err := fetch(get, w+".absmax", "U8", blocks)
	if err != nil {
		return nil, err
	}
	nbs := st.NestedBlockSize
	na, err := fetch(get, w+".nested_absmax", "F32", (blocks+nbs-1)/nbs)
	if err != nil {
		return nil, err
	}
	nqm, err := fetch(get, w+".nested_quant_map", "F32", 256)
	if err != nil {
		return nil, err
	}
	m.absmax = nil
	m.qabsmax = append([]byte(nil), qa...)
	m.nestedAbsmax = make([]float32, len(na)/4)
	readF32(m.nestedAbsmax, na)
	m.nestedCode = new([256]float32)
	readF32(m.nestedCode[:], nqm)
	m.nestedBS = nbs
	m.offset = float32(*st.NestedOffset)
	if err := checkScales(w+".nested_absmax", m.nestedAbsmax); err != nil {
		return nil, err
	}
	return m, checkScales(w+".nested_quant_map", m.nestedCode[:])
}

func fromInt8Row(name string, get func(string) (string, []int, []byte, bool)) (*Matrix, error) {
	w := name + ".weight"
	_, shape, _, ok := get(w)
	if !ok {
		return nil, fmt.Errorf("tensor %s is missing", w)
	}
	if len(shape) != 2 || shape[0] < 1 || shape[1] < 1 {
		return nil, fmt.Errorf("tensor %s has shape %v, want [rows, cols]", w, shape)
	}
	if dt, _, data, ok := get(name + ".weight_format"); ok && (dt != "U8" || len(data) != 1 || data[0] != 0) {
		return nil, fmt.Errorf("tensor %s.weight_format is not 0 (row-major); only the row format is supported", name)
	}
	m, err := newMatrix(shape[0], shape[1], Options{Type: Int8Row}, "float32")
	if err != nil {
		return nil, fmt.Errorf("tensor %s: %w", w, err)
	}
	q, err := fetch(get, w, "I8", m.rows*m.cols)
	if err != nil {
		return nil, err
	}
	copy(m.q, q)
	scb, err := fetch(get, name+".SCB", "F32", m.rows)
	if err != nil {
		return nil, err
	}
	readF32(m.absmax, scb)
	return m, checkScales(name+".SCB", m.absmax)
}

func fromInt8Block(w string, stateData []byte, get func(string) (string, []int, []byte, bool)) (*Matrix, error) {
	key := w + ".quant_state.gotune__int8"
	st, err := parseState(key, stateData)
	if err != nil {
		return nil, err
	}
	if st.QuantType != "int8" {
		return nil, fmt.Errorf("tensor %s: field quant_type is %q, want \"int8\"", key, st.QuantType)
	}
	m, err := newMatrix(st.Shape[0], st.Shape[1], Options{Type: Int8Block, BlockSize: st.BlockSize}, st.DType)
	if err != nil {
		return nil, fmt.Errorf("tensor %s: %w", key, err)
	}
	q, err := fetch(get, w, "I8", m.rows*m.cols)
	if err != nil {
		return nil, err
	}
	copy(m.q, q)
	am, err := fetch(get, w+".absmax", "F32", len(m.absmax))
	if err != nil {
		return nil, err
	}
	readF32(m.absmax, am)
	return m, checkScales(w+".absmax", m.absmax)
}

// checkScales rejects non-finite scales, which would poison every product.
func checkScales(key string, v []float32) error {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("tensor %s: element %d is %v, want a finite value", key, i, x)
		}
	}
	return nil
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func readF32(dst []float32, b []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}
