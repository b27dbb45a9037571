package model

import (
	"encoding/binary"
	"fmt"
	"slices"

	"gotune/compute/cpu"
	"gotune/nn"
	"gotune/quant"
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
	// Quant, when set, quantizes every linear layer's weight as it is read
	// (QLoRA): one tensor at a time is expanded to float32, so the model
	// never exists in full precision in memory.
	Quant *quant.Options
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
	m := newModel(cfg, false)
	if err := m.LoadWeights(set, opt); err != nil {
		return nil, err
	}
	m.Dir = dir
	return m, nil
}

// LoadWeights fills every parameter from a safetensors set, checking each
// tensor's shape against the configuration. Linear weights are stored as
// opt asks.
func (m *Model) LoadWeights(set *safetensors.Set, opt LoadOptions) error {
	for _, p := range m.Params() {
		if p.Data == nil {
			continue // a linear weight, read below in its storage form
		}
		if err := readParam(set, p); err != nil {
			return err
		}
	}
	var scratch []float32
	for _, l := range m.Linears() {
		name := l.Name + ".weight"
		shape := []int{l.Out, l.In}
		b, info, err := set.Bytes(name)
		if err != nil {
			return fmt.Errorf("%s: missing tensor %q (shape %v expected from config.json)", set.Dir, name, shape)
		}
		if !slices.Equal(info.Shape, shape) {
			return fmt.Errorf("%s: tensor %q has shape %v, config.json implies %v", set.FileOf(name), name, info.Shape, shape)
		}
		switch {
		case opt.Quant != nil:
			if info.DType == safetensors.BF16 {
				q, err := quant.QuantizeBF16(bf16Words(b), l.Out, l.In, *opt.Quant)
				if err != nil {
					return fmt.Errorf("quantize %s: %w", name, err)
				}
				l.Q, l.W, l.WBF16 = q, nil, nil
				continue
			}
			scratch = grow(scratch, l.Out*l.In)
			if err := safetensors.DecodeFloat32s(scratch, b, info); err != nil {
				return fmt.Errorf("%s: %w", set.FileOf(name), err)
			}
			q, err := quant.Quantize(scratch, l.Out, l.In, *opt.Quant)
			if err != nil {
				return fmt.Errorf("quantize %s: %w", name, err)
			}
			l.Q, l.W, l.WBF16 = q, nil, nil
		case opt.Storage == BF16:
			if info.DType == safetensors.BF16 {
				l.WBF16 = bf16Words(b)
			} else {
				scratch = grow(scratch, l.Out*l.In)
				if err := safetensors.DecodeFloat32s(scratch, b, info); err != nil {
					return fmt.Errorf("%s: %w", set.FileOf(name), err)
				}
				l.WBF16 = make([]uint16, l.Out*l.In)
				cpu.F32ToBF16(l.WBF16, scratch)
			}
			l.W = nil
		default:
			l.W.Data = make([]float32, l.Out*l.In)
			if err := safetensors.DecodeFloat32s(l.W.Data, b, info); err != nil {
				return fmt.Errorf("%s: %w", set.FileOf(name), err)
			}
		}
	}
	return nil
}

// bf16Words copies little-endian bf16 bytes into words (the mapping is
// read-only and unaligned for uint16 access).
func bf16Words(b []byte) []uint16 {
	w := make([]uint16, len(b)/2)
	for i := range w {
		w[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return w
}

func readParam(set *safetensors.Set, p *nn.Param) error {
	b, info, err := set.Bytes(p.Name)
	if err != nil {
		return fmt.Errorf("%s: missing tensor %q (shape %v expected from config.json)", set.Dir, p.Name, p.Shape)
	}
	if !slices.Equal(info.Shape, p.Shape) {
		return fmt.Errorf("%s: tensor %q has shape %v, config.json implies %v", set.FileOf(p.Name), p.Name, info.Shape, p.Shape)
	}
	if err := safetensors.DecodeFloat32s(p.Data, b, info); err != nil {
		return fmt.Errorf("%s: %w", set.FileOf(p.Name), err)
	}
	return nil
}
