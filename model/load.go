package model

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

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
	if err := checkWeightShapes(cfg, set); err != nil {
		return nil, err
	}
	if err := checkMemory(cfg, opt, dir); err != nil {
		return nil, err
	}
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
	store := opt.storage()
	var scratch *nn.Param // a float32 read on its way to another form
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
		var src nn.Weight
		switch {
		case info.DType == safetensors.BF16 && store.Type != quant.F32:
			src = &nn.BF16{Out: l.Out, In: l.In, Data: bf16Words(b)}
		case store.Type == quant.F32:
			p := l.F32()
			if p == nil {
				p = &nn.Param{Name: name, Shape: shape}
			}
			p.Data = make([]float32, l.Out*l.In)
			src = p
		default:
			if scratch == nil {
				scratch = &nn.Param{}
			}
			scratch.Shape, scratch.Data = shape, grow(scratch.Data, l.Out*l.In)
			src = scratch
		}
		if p, ok := src.(*nn.Param); ok {
			if err := safetensors.DecodeFloat32s(p.Data, b, info); err != nil {
				return fmt.Errorf("%s: %w", set.FileOf(name), err)
			}
		}
		l.W = src
		if err := store.StoreLinear(l); err != nil {
			return fmt.Errorf("%s: %w", set.FileOf(name), err)
		}
		if l.W == nn.Weight(scratch) { // kept as it is: the next layer reuses scratch
			return fmt.Errorf("%s: %s stored as %v kept the loader's scratch", set.Dir, name, store.Type)
		}
	}
	return nil
}

// StoreLinears converts every linear layer's weight into the form o names
// (f32, bf16 or a quantized type; quant.Options.Store).
func (m *Model) StoreLinears(o quant.Options) error {
	for _, l := range m.Linears() {
		if err := o.StoreLinear(l); err != nil {
			return err
		}
	}
	return nil
}

// storage is the form the options ask linear weights to be held in.
func (o LoadOptions) storage() quant.Options {
	switch {
	case o.Quant != nil && o.Quant.Type != 0:
		return *o.Quant
	case o.Storage == BF16:
		return quant.Options{Type: quant.BF16}
	}
	return quant.Options{Type: quant.F32}
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

// checkWeightShapes compares config.json with the weight files before the
// model is built: the embedding table, the first layer's weights (as the
// family names them) and the layer count. Building first would allocate whatever config.json
// claims (vocab_size 2^40, a billion layers) before any shape was checked.
func checkWeightShapes(cfg *Config, set *safetensors.Set) error {
	type tensor struct {
		name  string
		shape []int
		keys  string
	}
	want := []tensor{{"model.embed_tokens.weight", []int{cfg.Vocab, cfg.Hidden}, "vocab_size, hidden_size"}}
	// Every weight of the first layer, as the family names them.
	d := cfg.Dims()
	for _, t := range cfg.Family.Layer {
		if t.HF != "" && t.Has(cfg.Traits) {
			want = append(want, tensor{"model.layers.0." + t.HF, t.Shape(d), "hidden_size, num_attention_heads, num_key_value_heads, head_dim, intermediate_size"})
		}
	}
	want = append(want, tensor{fmt.Sprintf("model.layers.%d.input_layernorm.weight", cfg.Layers-1), []int{cfg.Hidden}, "num_hidden_layers, hidden_size"})
	for _, w := range want {
		info, ok := set.Info(w.name)
		if !ok {
			return fmt.Errorf("%s: config.json (%s) implies tensor %q of shape %v, which the weight files do not have", set.Dir, w.keys, w.name, w.shape)
		}
		if !slices.Equal(info.Shape, w.shape) {
			return fmt.Errorf("%s: tensor %q has shape %v, config.json (%s) implies %v", set.FileOf(w.name), w.name, info.Shape, w.keys, w.shape)
		}
	}
	extra := fmt.Sprintf("model.layers.%d.input_layernorm.weight", cfg.Layers)
	if set.Has(extra) {
		return fmt.Errorf("%s: the weight files have tensor %q but config.json says num_hidden_layers %d", set.FileOf(extra), extra, cfg.Layers)
	}
	return nil
}

// checkMemory refuses a model whose weights alone need more memory than the
// machine has, with the figures, instead of letting the allocation fail.
func checkMemory(cfg *Config, opt LoadOptions, dir string) error {
	total := physicalMemory()
	if total == 0 {
		return nil // unknown: let the allocation decide
	}
	per := int64(4)
	if opt.Storage == BF16 || opt.Quant != nil {
		per = 2 // an upper bound for the quantized case too
	}
	need := cfg.Params() * per
	if need > total {
		return fmt.Errorf("%s: the weights need %.1f GiB in memory (%d parameters), this machine has %.1f GiB",
			dir, float64(need)/(1<<30), cfg.Params(), float64(total)/(1<<30))
	}
	return nil
}

// physicalMemory is the machine's RAM in bytes (0 when unknown).
func physicalMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return kb << 10
				}
			}
		}
	}
	return 0
}
