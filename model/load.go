package model

import (
	"fmt"
	"path/filepath"

	"gotune/compute/cpu"
	"gotune/nn"
	"gotune/safetensors"
)

// DType selects how frozen weights are stored in memory.
type DType string

const (
	F32  DType = "f32"
	BF16 DType = "bf16"
)

// LoadOptions tune how a model is loaded.
type LoadOptions struct {
	// Storage keeps linear-layer weights in this precision (compute is f32).
	Storage DType
}

// Load reads config.json and the safetensors weights of a model folder.
func Load(dir string, opt LoadOptions) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	m := New(cfg)
	if err := m.LoadWeights(set, opt); err != nil {
		return nil, err
	}
	m.Dir = dir
	return m, nil
}

// LoadWeights fills every parameter from a safetensors set, checking each
// tensor's shape against the configuration.
func (m *Model) LoadWeights(set *safetensors.Set, opt LoadOptions) error {
	for _, p := range m.Params() {
		if err := readParam(set, p); err != nil {
			return err
		}
	}
	if opt.Storage == BF16 {
		for _, l := range m.Linears() {
			l.WBF16 = make([]uint16, len(l.W.Data))
			cpu.F32ToBF16(l.WBF16, l.W.Data)
			l.W = nil
		}
	}
	return nil
}

func readParam(set *safetensors.Set, p *nn.Param) error {
	b, info, err := set.Bytes(p.Name)
	if err != nil {
		return fmt.Errorf("%s: missing tensor %q (shape %v expected from config.json)", set.Dir, p.Name, p.Shape)
	}
	if !sameShape(info.Shape, p.Shape) {
		return fmt.Errorf("%s: tensor %q has shape %v, config.json implies %v", filepath.Base(set.FileOf(p.Name)), p.Name, info.Shape, p.Shape)
	}
	if err := safetensors.DecodeFloat32s(p.Data, b, info); err != nil {
		return fmt.Errorf("%s: %w", set.FileOf(p.Name), err)
	}
	return nil
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
