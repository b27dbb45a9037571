package safetensors

import (
	"encoding/json"
	"fmt"
	"gotune/safefile"
	"path/filepath"
	"sort"
)

// Set is the union of a model folder's safetensors files: a single
// model.safetensors, shards listed by model.safetensors.index.json, or any
// *.safetensors files.
type Set struct {
	Dir   string
	files []*File
	where map[string]*File
	names []string
}

// OpenDir opens every safetensors file of a model folder.
func OpenDir(dir string) (*Set, error) {
	var paths []string
	index := filepath.Join(dir, "model.safetensors.index.json")
	if b, err := safefile.ReadFile(index); err == nil {
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, fmt.Errorf("%s: %w", index, err)
		}
		seen := map[string]bool{}
		for name, shard := range idx.WeightMap {
			if filepath.Base(shard) != shard {
				return nil, fmt.Errorf("%s: weight_map[%q] = %q leaves the model folder", index, name, shard)
			}
			if !seen[shard] {
				seen[shard] = true
				paths = append(paths, filepath.Join(dir, shard))
			}
		}
		sort.Strings(paths)
	} else {
		paths, _ = filepath.Glob(filepath.Join(dir, "*.safetensors"))
	}
	if len(paths) == 0 {
		if pk, _ := filepath.Glob(filepath.Join(dir, "*.bin")); len(pk) > 0 {
			return nil, fmt.Errorf("%s: only pickle weights (%s) found; they are never loaded because they can run code: convert the model to safetensors", dir, filepath.Base(pk[0]))
		}
		return nil, fmt.Errorf("%s: no *.safetensors files", dir)
	}
	return OpenFiles(dir, paths...)
}

// OpenFiles opens the given files as one set.
func OpenFiles(dir string, paths ...string) (*Set, error) {
	s := &Set{Dir: dir, where: map[string]*File{}}
	for _, p := range paths {
		f, err := Open(p)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.files = append(s.files, f)
		for _, n := range f.Names() {
			if prev, dup := s.where[n]; dup {
				s.Close()
				return nil, fmt.Errorf("tensor %q is in both %s and %s", n, prev.Path, f.Path)
			}
			s.where[n] = f
			s.names = append(s.names, n)
		}
	}
	return s, nil
}

// Close unmaps every file.
func (s *Set) Close() error {
	var first error
	for _, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Names lists every tensor.
func (s *Set) Names() []string { return s.names }

// Has reports whether a tensor exists.
func (s *Set) Has(name string) bool { _, ok := s.where[name]; return ok }

// Info returns a tensor's description.
func (s *Set) Info(name string) (Info, bool) {
	f, ok := s.where[name]
	if !ok {
		return Info{}, false
	}
	return f.Info(name)
}

// Bytes returns a tensor's raw data and description.
func (s *Set) Bytes(name string) ([]byte, Info, error) {
	f, ok := s.where[name]
	if !ok {
		return nil, Info{}, fmt.Errorf("%s: no tensor %q", s.Dir, name)
	}
	return f.Bytes(name)
}

// FileOf returns the path of the file holding a tensor.
func (s *Set) FileOf(name string) string {
	if f, ok := s.where[name]; ok {
		return f.Path
	}
	return s.Dir
}

// Float32s reads a floating-point tensor as float32.
func (s *Set) Float32s(name string) ([]float32, Info, error) {
	b, info, err := s.Bytes(name)
	if err != nil {
		return nil, info, err
	}
	v, err := Float32s(b, info)
	if err != nil {
		return nil, info, fmt.Errorf("%s: %w", s.FileOf(name), err)
	}
	return v, info, nil
}

// Float64s reads a floating-point tensor as float64.
func (s *Set) Float64s(name string) ([]float64, error) {
	b, info, err := s.Bytes(name)
	if err != nil {
		return nil, err
	}
	return Float64s(b, info)
}

// Int64s reads an integer tensor.
func (s *Set) Int64s(name string) ([]int64, error) {
	b, info, err := s.Bytes(name)
	if err != nil {
		return nil, err
	}
	return Int64s(b, info)
}

// OpenOne opens a single file as a Set, for reference and adapter files.
func OpenOne(path string) (*Set, error) { return OpenFiles(filepath.Dir(path), path) }
