package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"gotune/safefile"
	"os"
	"path/filepath"
	"sort"
)

// Tensor is one tensor to write.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// F32Tensor wraps float32 values as an F32 tensor.
func F32Tensor(name string, shape []int, v []float32) Tensor {
	return Tensor{Name: name, DType: F32, Shape: shape, Data: EncodeF32(v)}
}

// Write stores tensors (sorted by name, as the reference implementation
// does) with optional string metadata. The file is written to a temporary
// name in the same folder, synced and renamed, so a crash never leaves a
// half-written file under the final name.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	sorted := append([]Tensor(nil), tensors...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	header := make(map[string]any, len(sorted)+1)
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	off := 0
	for _, t := range sorted {
		if _, dup := header[t.Name]; dup {
			return fmt.Errorf("%s: tensor %q written twice", path, t.Name)
		}
		n := 1
		for _, d := range t.Shape {
			n *= d
		}
		if n*t.DType.Size() != len(t.Data) {
			return fmt.Errorf("%s: tensor %q: shape %v of %s needs %d bytes, got %d", path, t.Name, t.Shape, t.DType, n*t.DType.Size(), len(t.Data))
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[t.Name] = map[string]any{"dtype": t.DType, "shape": shape, "data_offsets": [2]int{off, off + len(t.Data)}}
		off += len(t.Data)
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return err
	}
	// Pad the header with spaces so the data starts 8-byte aligned.
	for len(hj)%8 != 0 {
		hj = append(hj, ' ')
	}
	return WriteAtomic(path, func(w *bufio.Writer) error {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(hj)))
		w.Write(n[:])
		w.Write(hj)
		for _, t := range sorted {
			if _, err := w.Write(t.Data); err != nil {
				return err
			}
		}
		return nil
	})
}

// WriteAtomic writes a file through a temporary name in the same folder,
// syncs it and renames it into place.
func WriteAtomic(path string, fill func(w *bufio.Writer) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(safefile.FilePerm()); err != nil { // CreateTemp made it 0600
		return fmt.Errorf("%s: %w", path, err)
	}
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err := fill(w); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
