package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"gotune/safefile"
	"math"

	"golang.org/x/sys/unix"
)

// File is an open GGUF file. Metadata is copied out at Open; tensor data
// stays in the memory map and the slices TensorData returns are valid only
// until Close.
type File struct {
	Path      string
	Version   uint32
	Alignment uint64
	// DataOffset is where the tensor data section starts in the file.
	DataOffset uint64

	kv      []KV
	kvIndex map[string]int
	tensors []TensorInfo
	tIndex  map[string]int
	data    []byte // the whole file
	mapped  bool
}

// Open memory-maps and parses a GGUF file. Every count, length and offset in
// the header is checked against the file size before it is used.
func Open(path string) (*File, error) {
	fd, err := safefile.Open(path)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < 24 {
		return nil, fmt.Errorf("%s: %d bytes is too short for a GGUF header", path, size)
	}
	if size != int64(int(size)) {
		return nil, fmt.Errorf("%s: file too large to map", path)
	}
	b, err := unix.Mmap(int(fd.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	f, err := Parse(path, b)
	if err != nil {
		unix.Munmap(b)
		return nil, err
	}
	f.mapped = true
	return f, nil
}

// Close releases the memory map.
func (f *File) Close() error {
	if f == nil || !f.mapped {
		return nil
	}
	f.mapped = false
	b := f.data
	f.data = nil
	return unix.Munmap(b)
}

// Parse reads a GGUF file held in b; path only names it in errors. The
// returned File refers to b for tensor data.
func Parse(path string, b []byte) (*File, error) {
	r := &reader{b: b, path: path}
	if len(b) < 4 || string(b[:4]) != magic {
		return nil, fmt.Errorf("%s: not a GGUF file (magic %q, want %q)", path, b[:min(4, len(b))], magic)
	}
	r.off = 4
	f := &File{Path: path, data: b, kvIndex: map[string]int{}, tIndex: map[string]int{}}
	var err error
	if f.Version, err = r.u32("version"); err != nil {
		return nil, err
	}
	if f.Version != 2 && f.Version != 3 {
		return nil, fmt.Errorf("%s: GGUF version %d not supported (want 2 or 3)", path, f.Version)
	}
	nTensors, err := r.u64("tensor count")
	if err != nil {
		return nil, err
	}
	nKV, err := r.u64("metadata count")
	if err != nil {
		return nil, err
	}
	// A key-value pair takes at least 8+4+1 bytes and a tensor description
	// 8+4+4+8, so counts beyond what the file could hold are lies.
	if nKV > uint64(r.left())/13 {
		return nil, fmt.Errorf("%s: metadata count %d exceeds what %d bytes can hold", path, nKV, len(b))
	}
	if nTensors > uint64(r.left())/24 {
		return nil, fmt.Errorf("%s: tensor count %d exceeds what %d bytes can hold", path, nTensors, len(b))
	}
	f.kv = make([]KV, 0, nKV)
	for i := uint64(0); i < nKV; i++ {
		key, err := r.str(fmt.Sprintf("metadata %d key", i))
		if err != nil {
			return nil, err
		}
		if _, dup := f.kvIndex[key]; dup {
			return nil, fmt.Errorf("%s: metadata key %q appears twice", path, key)
		}
		v, err := r.value("metadata " + key)
		if err != nil {
			return nil, err
		}
		f.kvIndex[key] = len(f.kv)
		f.kv = append(f.kv, KV{Key: key, Value: v})
	}
	f.Alignment = defaultAlignment
	if i, ok := f.kvIndex["general.alignment"]; ok {
		a, isU32 := f.kv[i].Value.(uint32)
		if !isU32 || a == 0 || a&(a-1) != 0 {
			return nil, fmt.Errorf("%s: general.alignment = %v (%T), want a power of two as uint32", path, f.kv[i].Value, f.kv[i].Value)
		}
		f.Alignment = uint64(a)
	}
	f.tensors = make([]TensorInfo, 0, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		ti, err := r.tensorInfo(i, f.Alignment)
		if err != nil {
			return nil, err
		}
		if _, dup := f.tIndex[ti.Name]; dup {
			return nil, fmt.Errorf("%s: tensor %q appears twice", path, ti.Name)
		}
		f.tIndex[ti.Name] = len(f.tensors)
		f.tensors = append(f.tensors, ti)
	}
	f.DataOffset = alignUp(uint64(r.off), f.Alignment)
	if nTensors > 0 && f.DataOffset > uint64(len(b)) {
		return nil, fmt.Errorf("%s: data section starts at %d, beyond the end of the %d-byte file", path, f.DataOffset, len(b))
	}
	avail := uint64(len(b)) - min(f.DataOffset, uint64(len(b)))
	for _, ti := range f.tensors {
		if ti.Offset > avail || ti.Size > avail-ti.Offset {
			return nil, fmt.Errorf("%s: tensor %q: data [%d, +%d) runs past the end of the file (data section holds %d bytes)", path, ti.Name, ti.Offset, ti.Size, avail)
		}
	}
	return f, nil
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

type reader struct {
	b    []byte
	off  int
	path string
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) need(n uint64, what string) error {
	if n > uint64(r.left()) {
		return fmt.Errorf("%s: %s: need %d bytes at offset %d, file has %d", r.path, what, n, r.off, len(r.b))
	}
	return nil
}

func (r *reader) bytes(n uint64, what string) ([]byte, error) {
	if err := r.need(n, what); err != nil {
		return nil, err
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s, nil
}

func (r *reader) u32(what string) (uint32, error) {
	s, err := r.bytes(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(s), nil
}

func (r *reader) u64(what string) (uint64, error) {
	s, err := r.bytes(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(s), nil
}

func (r *reader) str(what string) (string, error) {
	n, err := r.u64(what + " length")
	if err != nil {
		return "", err
	}
	s, err := r.bytes(n, what)
	if err != nil {
		return "", err
	}
	return string(s), nil
}

func (r *reader) value(what string) (any, error) {
	t, err := r.u32(what + " type")
	if err != nil {
		return nil, err
	}
	typ := ValueType(t)
	if typ == TypeArray {
		return r.array(what)
	}
	return r.scalar(typ, what)
}

func (r *reader) scalar(typ ValueType, what string) (any, error) {
	if typ == TypeString {
		return r.str(what)
	}
	n := typ.size()
	if n == 0 {
		return nil, fmt.Errorf("%s: %s: unknown value type %d", r.path, what, uint32(typ))
	}
	s, err := r.bytes(uint64(n), what)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	switch typ {
	case TypeUint8:
		return s[0], nil
	case TypeInt8:
		return int8(s[0]), nil
	case TypeUint16:
		return le.Uint16(s), nil
	case TypeInt16:
		return int16(le.Uint16(s)), nil
	case TypeUint32:
		return le.Uint32(s), nil
	case TypeInt32:
		return int32(le.Uint32(s)), nil
	case TypeFloat32:
		return math.Float32frombits(le.Uint32(s)), nil
	case TypeBool:
		if s[0] > 1 {
			return nil, fmt.Errorf("%s: %s: bool byte %d, want 0 or 1", r.path, what, s[0])
		}
		return s[0] == 1, nil
	case TypeUint64:
		return le.Uint64(s), nil
	case TypeInt64:
		return int64(le.Uint64(s)), nil
	default: // TypeFloat64
		return math.Float64frombits(le.Uint64(s)), nil
	}
}

func (r *reader) array(what string) (any, error) {
	t, err := r.u32(what + " element type")
	if err != nil {
		return nil, err
	}
	et := ValueType(t)
	n, err := r.u64(what + " array length")
	if err != nil {
		return nil, err
	}
	// Bound the length by the bytes left before allocating anything.
	per := uint64(et.size())
	switch {
	case et == TypeString:
		per = 8
	case et == TypeArray:
		return nil, fmt.Errorf("%s: %s: arrays of arrays are not supported", r.path, what)
	case per == 0:
		return nil, fmt.Errorf("%s: %s: unknown array element type %d", r.path, what, t)
	}
	if n > uint64(r.left())/per {
		return nil, fmt.Errorf("%s: %s: array of %d %s elements exceeds the %d bytes left", r.path, what, n, et, r.left())
	}
	if et == TypeString {
		out := make([]string, n)
		for i := range out {
			if out[i], err = r.str(fmt.Sprintf("%s[%d]", what, i)); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	raw, _ := r.bytes(n*per, what)
	return decodeArray(et, raw, int(n), r.path, what)
}

func decodeArray(et ValueType, raw []byte, n int, path, what string) (any, error) {
	le := binary.LittleEndian
	switch et {
	case TypeUint8:
		return append([]uint8(nil), raw...), nil
	case TypeInt8:
		out := make([]int8, n)
		for i := range out {
			out[i] = int8(raw[i])
		}
		return out, nil
	case TypeBool:
		out := make([]bool, n)
		for i := range out {
			if raw[i] > 1 {
				return nil, fmt.Errorf("%s: %s[%d]: bool byte %d, want 0 or 1", path, what, i, raw[i])
			}
			out[i] = raw[i] == 1
		}
		return out, nil
	case TypeUint16:
		out := make([]uint16, n)
		for i := range out {
			out[i] = le.Uint16(raw[2*i:])
		}
		return out, nil
	case TypeInt16:
		out := make([]int16, n)
		for i := range out {
			out[i] = int16(le.Uint16(raw[2*i:]))
		}
		return out, nil
	case TypeUint32:
		out := make([]uint32, n)
		for i := range out {
			out[i] = le.Uint32(raw[4*i:])
		}
		return out, nil
	case TypeInt32:
		out := make([]int32, n)
		for i := range out {
			out[i] = int32(le.Uint32(raw[4*i:]))
		}
		return out, nil
	case TypeFloat32:
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
		return out, nil
	case TypeUint64:
		out := make([]uint64, n)
		for i := range out {
			out[i] = le.Uint64(raw[8*i:])
		}
		return out, nil
	case TypeInt64:
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(le.Uint64(raw[8*i:]))
		}
		return out, nil
	default: // TypeFloat64
		out := make([]float64, n)
		for i := range out {
			out[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
		}
		return out, nil
	}
}

func (r *reader) tensorInfo(i uint64, align uint64) (TensorInfo, error) {
	var ti TensorInfo
	name, err := r.str(fmt.Sprintf("tensor %d name", i))
	if err != nil {
		return ti, err
	}
	ti.Name = name
	what := fmt.Sprintf("tensor %q", name)
	nd, err := r.u32(what + " dimension count")
	if err != nil {
		return ti, err
	}
	if nd == 0 || nd > maxDims {
		return ti, fmt.Errorf("%s: %s: %d dimensions, want 1..%d", r.path, what, nd, maxDims)
	}
	ti.Dims = make([]uint64, nd)
	elems := uint64(1)
	for d := range ti.Dims {
		if ti.Dims[d], err = r.u64(what + " dimension"); err != nil {
			return ti, err
		}
		// ggml keeps sizes in int64: reject anything whose product overflows it.
		if ti.Dims[d] > math.MaxInt64 || (ti.Dims[d] != 0 && elems > math.MaxInt64/ti.Dims[d]) {
			return ti, fmt.Errorf("%s: %s: dimensions %v overflow", r.path, what, ti.Dims[:d+1])
		}
		elems *= ti.Dims[d]
	}
	t, err := r.u32(what + " type")
	if err != nil {
		return ti, err
	}
	ti.Type = TensorType(t)
	tr, ok := traits[ti.Type]
	if !ok {
		return ti, fmt.Errorf("%s: %s: unknown tensor type %d", r.path, what, t)
	}
	if ti.Dims[0]%uint64(tr.block) != 0 {
		return ti, fmt.Errorf("%s: %s: row length %d is not a multiple of the %s block size %d", r.path, what, ti.Dims[0], ti.Type, tr.block)
	}
	blocks := elems / uint64(tr.block)
	if blocks > math.MaxInt64/uint64(tr.size) {
		return ti, fmt.Errorf("%s: %s: size overflows", r.path, what)
	}
	ti.Size = blocks * uint64(tr.size)
	if ti.Offset, err = r.u64(what + " offset"); err != nil {
		return ti, err
	}
	if ti.Offset%align != 0 {
		return ti, fmt.Errorf("%s: %s: offset %d is not a multiple of the alignment %d", r.path, what, ti.Offset, align)
	}
	return ti, nil
}

// KV returns the metadata in file order.
func (f *File) KV() []KV { return f.kv }

// Lookup returns the raw value of a key.
func (f *File) Lookup(key string) (any, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return nil, false
	}
	return f.kv[i].Value, true
}

// String returns a string value.
func (f *File) String(key string) (string, bool) {
	v, _ := f.Lookup(key)
	s, ok := v.(string)
	return s, ok
}

// Strings returns an array of strings.
func (f *File) Strings(key string) ([]string, bool) {
	v, _ := f.Lookup(key)
	s, ok := v.([]string)
	return s, ok
}

// HasTensor reports whether the file holds a tensor of this name.
func (f *File) HasTensor(name string) bool {
	_, ok := f.Tensor(name)
	return ok
}

// Int returns a value of any integer type as int64 (a uint64 above
// MaxInt64 is reported as absent).
func (f *File) Int(key string) (int64, bool) {
	v, ok := f.Lookup(key)
	if !ok {
		return 0, false
	}
	return toInt(v)
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	}
	return 0, false
}

// Ints returns an array of any integer type as []int64.
func (f *File) Ints(key string) ([]int64, bool) {
	v, ok := f.Lookup(key)
	if !ok {
		return nil, false
	}
	var out []int64
	conv := func(n int, at func(int) int64) []int64 {
		out = make([]int64, n)
		for i := range out {
			out[i] = at(i)
		}
		return out
	}
	switch x := v.(type) {
	case []uint8:
		return conv(len(x), func(i int) int64 { return int64(x[i]) }), true
	case []int8:
		return conv(len(x), func(i int) int64 { return int64(x[i]) }), true
	case []uint16:
		return conv(len(x), func(i int) int64 { return int64(x[i]) }), true
	case []int16:
		return conv(len(x), func(i int) int64 { return int64(x[i]) }), true
	case []uint32:
		return conv(len(x), func(i int) int64 { return int64(x[i]) }), true
	case []int32:
		return conv(len(x), func(i int) int64 { return int64(x[i]) }), true
	case []int64:
		return append([]int64(nil), x...), true
	case []uint64:
		for _, u := range x {
			if u > math.MaxInt64 {
				return nil, false
			}
		}
		return conv(len(x), func(i int) int64 { return int64(x[i]) }), true
	}
	return nil, false
}

// Float32s returns an array of float32 values (float64 arrays are narrowed).
func (f *File) Float32s(key string) ([]float32, bool) {
	v, _ := f.Lookup(key)
	switch x := v.(type) {
	case []float32:
		return x, true
	case []float64:
		out := make([]float32, len(x))
		for i, d := range x {
			out[i] = float32(d)
		}
		return out, true
	}
	return nil, false
}

// Float returns a float32 or float64 value.
func (f *File) Float(key string) (float64, bool) {
	v, _ := f.Lookup(key)
	switch x := v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// Bool returns a bool value.
func (f *File) Bool(key string) (bool, bool) {
	v, _ := f.Lookup(key)
	b, ok := v.(bool)
	return b, ok
}

// Tensors lists the tensors in file order.
func (f *File) Tensors() []TensorInfo { return f.tensors }

// Tensor returns one tensor's description.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.tIndex[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.tensors[i], true
}

// ErrClosed is returned for data access after Close.
var ErrClosed = errors.New("gguf: file is closed")

// TensorData returns a tensor's encoded bytes, a view of the file valid until
// Close.
func (f *File) TensorData(name string) ([]byte, TensorInfo, error) {
	ti, ok := f.Tensor(name)
	if !ok {
		return nil, ti, fmt.Errorf("%s: no tensor %q", f.Path, name)
	}
	if f.data == nil {
		return nil, ti, fmt.Errorf("%s: %w", f.Path, ErrClosed)
	}
	start := f.DataOffset + ti.Offset
	return f.data[start : start+ti.Size : start+ti.Size], ti, nil
}

// TensorFloat32s decodes a tensor to float32 (F32, F16, BF16, F64, Q8_0,
// Q4_0, Q4_K and Q6_K).
func (f *File) TensorFloat32s(name string) ([]float32, TensorInfo, error) {
	b, ti, err := f.TensorData(name)
	if err != nil {
		return nil, ti, err
	}
	if ti.Elems() > uint64(math.MaxInt32)*4 {
		return nil, ti, fmt.Errorf("%s: tensor %q: %d elements is too many to decode at once", f.Path, name, ti.Elems())
	}
	out := make([]float32, ti.Elems())
	if err := Decode(out, b, ti.Type); err != nil {
		return nil, ti, fmt.Errorf("%s: tensor %q: %w", f.Path, name, err)
	}
	return out, ti, nil
}
