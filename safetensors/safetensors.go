// Package safetensors reads and writes the safetensors format: an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype, shape
// and byte range, then the raw little-endian data. Files are memory-mapped and
// every offset in the header is checked before use, since model folders come
// from strangers.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"gotune/safefile"
	"math"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// DType names an element type as the safetensors header spells it.
type DType string

const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	U16  DType = "U16"
	U32  DType = "U32"
	U64  DType = "U64"
	Bool DType = "BOOL"
)

// Size is the width of one element in bytes, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64, U64:
		return 8
	case F32, I32, U32:
		return 4
	case F16, BF16, I16, U16:
		return 2
	case I8, U8, Bool:
		return 1
	}
	return 0
}

// Info describes one tensor of a file.
type Info struct {
	Name  string
	DType DType
	Shape []int
	// Offset and Size locate the data relative to the start of the data section.
	Offset, Size int
}

// Elems is the number of elements (1 for a scalar).
func (i Info) Elems() int {
	n := 1
	for _, d := range i.Shape {
		n *= d
	}
	return n
}

// File is one open safetensors file.
type File struct {
	Path     string
	Metadata map[string]string
	mapped   []byte // whole file when memory-mapped; nil for Parse
	data     []byte // data section
	tensors  map[string]Info
	names    []string
}

// maxHeader bounds the JSON header; real headers are well under a few MB.
const maxHeader = 100 << 20

// Open memory-maps a safetensors file and validates its header.
func Open(path string) (*File, error) {
	if err := refusePickle(path); err != nil {
		return nil, err
	}
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
	if size < 8 {
		return nil, fmt.Errorf("%s: file is %d bytes, too short for a safetensors header", path, size)
	}
	if size > math.MaxInt {
		return nil, fmt.Errorf("%s: file too large", path)
	}
	m, err := unix.Mmap(int(fd.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	f, err := Parse(path, m)
	if err != nil {
		unix.Munmap(m)
		return nil, err
	}
	f.mapped = m
	return f, nil
}

// Parse validates a safetensors image held in memory. The File refers to b.
func Parse(path string, b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%s: %d bytes, too short for a safetensors header", path, len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > maxHeader || n > uint64(len(b)-8) {
		return nil, fmt.Errorf("%s: header length %d exceeds the file (%d bytes): truncated or not a safetensors file", path, n, len(b))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &raw); err != nil {
		return nil, fmt.Errorf("%s: header is not valid JSON: %w", path, err)
	}
	f := &File{Path: path, data: b[8+n:], tensors: make(map[string]Info, len(raw))}
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, fmt.Errorf("%s: __metadata__ must map strings to strings: %w", path, err)
			}
			continue
		}
		var h struct {
			DType   DType   `json:"dtype"`
			Shape   []int64 `json:"shape"`
			Offsets []int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(msg, &h); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: bad header entry: %w", path, name, err)
		}
		es := h.DType.Size()
		if es == 0 {
			return nil, fmt.Errorf("%s: tensor %q: unknown dtype %q", path, name, h.DType)
		}
		if len(h.Offsets) != 2 {
			return nil, fmt.Errorf("%s: tensor %q: data_offsets must hold 2 numbers, got %d", path, name, len(h.Offsets))
		}
		elems := int64(1)
		shape := make([]int, len(h.Shape))
		for i, d := range h.Shape {
			if d < 0 || (d > 0 && elems > math.MaxInt32*int64(1<<16)/d) {
				return nil, fmt.Errorf("%s: tensor %q: invalid shape %v", path, name, h.Shape)
			}
			elems *= d
			shape[i] = int(d)
		}
		start, end := h.Offsets[0], h.Offsets[1]
		if start < 0 || end < start || end > int64(len(f.data)) {
			return nil, fmt.Errorf("%s: tensor %q: data_offsets [%d, %d] outside the %d data bytes (truncated file?)", path, name, start, end, len(f.data))
		}
		if end-start != elems*int64(es) {
			return nil, fmt.Errorf("%s: tensor %q: shape %v of %s needs %d bytes, data_offsets give %d", path, name, h.Shape, h.DType, elems*int64(es), end-start)
		}
		f.tensors[name] = Info{Name: name, DType: h.DType, Shape: shape, Offset: int(start), Size: int(end - start)}
		f.names = append(f.names, name)
	}
	sort.Slice(f.names, func(i, j int) bool {
		a, b := f.tensors[f.names[i]], f.tensors[f.names[j]]
		if a.Offset != b.Offset {
			return a.Offset < b.Offset
		}
		return a.Name < b.Name
	})
	// Overlapping byte ranges would let one tensor alias another.
	for i := 1; i < len(f.names); i++ {
		prev, cur := f.tensors[f.names[i-1]], f.tensors[f.names[i]]
		if cur.Offset < prev.Offset+prev.Size {
			return nil, fmt.Errorf("%s: tensors %q and %q overlap", path, prev.Name, cur.Name)
		}
	}
	return f, nil
}

// Close unmaps the file; slices returned by Bytes become invalid.
func (f *File) Close() error {
	if f.mapped == nil {
		return nil
	}
	m := f.mapped
	f.mapped, f.data = nil, nil
	return unix.Munmap(m)
}

// Names lists the tensors in file order.
func (f *File) Names() []string { return f.names }

// Info returns a tensor's description.
func (f *File) Info(name string) (Info, bool) {
	i, ok := f.tensors[name]
	return i, ok
}

// Bytes returns a tensor's raw little-endian data (read-only, mapped).
func (f *File) Bytes(name string) ([]byte, Info, error) {
	i, ok := f.tensors[name]
	if !ok {
		return nil, Info{}, fmt.Errorf("%s: no tensor %q", f.Path, name)
	}
	return f.data[i.Offset : i.Offset+i.Size], i, nil
}

func refusePickle(path string) error {
	for _, ext := range []string{".bin", ".pt", ".pth", ".pkl", ".ckpt"} {
		if strings.HasSuffix(path, ext) {
			return fmt.Errorf("%s: pickle checkpoints are never loaded (they can run code); convert the model to safetensors", path)
		}
	}
	return nil
}
