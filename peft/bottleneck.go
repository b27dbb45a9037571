package peft

import (
	"fmt"
	"gotune/hfconfig"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"

	"gotune/compute"
	"gotune/model"
	"gotune/nn"
	"gotune/safetensors"
)

// Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020) add a
// small residual MLP after a sub-layer: y ← y + s·(act(y·Dᵀ + d)·Uᵀ + u),
// with D [Size, Hidden] projecting down and U [Hidden, Size] back up. U and u
// start at zero, so an attached adapter leaves the model unchanged.
//
// PEFT has no bottleneck adapter, so gotune saves them in its own format,
// in PEFT's layout so the same tools list and copy them:
//
//	adapter_config.json
//	  "peft_type": "BOTTLENECK"        (gotune's own type)
//	  "task_type": "CAUSAL_LM"
//	  "base_model_name_or_path": …
//	  "bottleneck_size": 16            (Size)
//	  "non_linearity": "relu"          (relu, gelu, gelu_new, silu, tanh)
//	  "adapter_placement": "houlsby"   (houlsby: after attention and after
//	                                    the MLP; pfeiffer: after the MLP;
//	                                    attention: after attention only)
//	  "scaling": 1.0                   (s)
//	  "init_weights": "bert"           (bert, kaiming)
//	  "layers_to_transform": null      (or a list of layer indices)
//	  "inference_mode": true
//	adapter_model.safetensors, float32, for each adapted layer i:
//	  base_model.model.model.layers.i.self_attn.o_proj.bottleneck_down.weight [Size, Hidden]
//	  base_model.model.model.layers.i.self_attn.o_proj.bottleneck_down.bias   [Size]
//	  base_model.model.model.layers.i.self_attn.o_proj.bottleneck_up.weight   [Hidden, Size]
//	  base_model.model.model.layers.i.self_attn.o_proj.bottleneck_up.bias     [Hidden]
//	  (after attention: named after o_proj, whose output it transforms) and
//	  the same four under mlp.down_proj for the adapter after the MLP.
//
// In memory the names carry the adapter name as PEFT's do
// (…bottleneck_down.default.weight); SavedName drops it.
type BottleneckConfig struct {
	Size       int
	Activation string  // non_linearity; "" means relu
	Placement  string  // houlsby (default), pfeiffer or attention
	Scaling    float64 // 0 means 1
	// Init is "bert" (default: D normal with std 0.02, as BERT-style adapter
	// libraries), "kaiming" (D as torch's nn.Linear) or "zero" (for
	// loading); biases and U always start at zero.
	Init      string
	Layers    []int
	BaseModel string
}

// Bottleneck is one adapter after one sub-layer of one block.
type Bottleneck struct {
	Module         string // the projection whose output it transforms
	Down, DownBias *nn.Param
	Up, UpBias     *nn.Param
	Scale          float32
	act            compute.Activation
}

// Params lists the adapter's weights.
func (b *Bottleneck) Params() []*nn.Param {
	return []*nn.Param{b.Down, b.DownBias, b.Up, b.UpBias}
}

// activationByName reads adapter-transformers' non_linearity names (the
// device block computes the function: compute.Activation).
func activationByName(name string) (compute.Activation, error) {
	switch strings.ToLower(name) {
	case "", "relu":
		return compute.ReLU, nil
	case "tanh":
		return compute.Tanh, nil
	case "silu", "swish":
		return compute.SiLU, nil
	case "gelu":
		return compute.GELU, nil
	case "gelu_new", "gelu_pytorch_tanh", "gelu_tanh":
		return compute.GELUTanh, nil
	}
	return 0, fmt.Errorf("bottleneck: non_linearity %q (relu, gelu, gelu_new, silu, tanh)", name)
}

// BottleneckSet is bottleneck adapters attached to a model.
type BottleneckSet struct {
	Config  BottleneckConfig
	Modules []*Bottleneck
	m       *model.Model
}

// AttachBottleneck adds fresh bottleneck adapters to m.
func AttachBottleneck(m *model.Model, cfg BottleneckConfig, seed uint64) (*BottleneckSet, error) {
	if cfg.Size <= 0 {
		return nil, fmt.Errorf("bottleneck: bottleneck_size must be positive, got %d", cfg.Size)
	}
	act, err := activationByName(cfg.Activation)
	if err != nil {
		return nil, err
	}
	if cfg.Activation == "" {
		cfg.Activation = "relu"
	}
	if cfg.Scaling == 0 {
		cfg.Scaling = 1
	}
	cfg.Placement = strings.ToLower(cfg.Placement)
	var attn, mlp bool
	switch cfg.Placement {
	case "", "houlsby":
		cfg.Placement, attn, mlp = "houlsby", true, true
	case "pfeiffer":
		mlp = true
	case "attention":
		attn = true
	default:
		return nil, fmt.Errorf("bottleneck: adapter_placement %q (houlsby, pfeiffer, attention)", cfg.Placement)
	}
	switch cfg.Init {
	case "":
		cfg.Init = "bert"
	case "bert", "kaiming", "zero":
	default:
		return nil, fmt.Errorf("bottleneck: init_weights %q (bert, kaiming)", cfg.Init)
	}
	for _, li := range cfg.Layers {
		if li < 0 || li >= len(m.Layers) {
			return nil, fmt.Errorf("bottleneck: layers_to_transform has %d, the model has layers 0…%d", li, len(m.Layers)-1)
		}
	}
	set := &BottleneckSet{Config: cfg, m: m}
	rng := rand.New(rand.NewPCG(seed, 0x626f7474))
	h := m.Cfg.Hidden
	for _, l := range m.Layers {
		if cfg.Layers != nil && !containsInt(cfg.Layers, l.Index) {
			continue
		}
		if (attn && l.AttnOut != nil) || (mlp && l.MLPOut != nil) {
			set.Detach()
			return nil, fmt.Errorf("bottleneck: layer %d already has a sub-layer adapter", l.Index)
		}
		mk := func(module string) *Bottleneck {
			pre := namePrefix + module + "."
			b := &Bottleneck{
				Module:   module,
				Down:     nn.NewParam(pre+"bottleneck_down."+adapterName+".weight", cfg.Size, h),
				DownBias: nn.NewParam(pre+"bottleneck_down."+adapterName+".bias", cfg.Size),
				Up:       nn.NewParam(pre+"bottleneck_up."+adapterName+".weight", h, cfg.Size),
				UpBias:   nn.NewParam(pre+"bottleneck_up."+adapterName+".bias", h),
				Scale:    float32(cfg.Scaling),
				act:      act,
			}
			for i := range b.Down.Data {
				switch cfg.Init {
				case "bert":
					b.Down.Data[i] = float32(rng.NormFloat64() * 0.02)
				case "kaiming":
					b.Down.Data[i] = float32((rng.Float64()*2 - 1) / math.Sqrt(float64(h)))
				}
			}
			for _, p := range b.Params() {
				p.SetTrainable(true)
			}
			set.Modules = append(set.Modules, b)
			return b
		}
		if attn {
			l.AttnOut = mk(l.O.Name)
		}
		if mlp {
			name := fmt.Sprintf("model.layers.%d.mlp", l.Index) // an MoE block has no single down_proj
			if l.Down != nil {
				name = l.Down.Name
			}
			l.MLPOut = mk(name)
		}
	}
	if len(set.Modules) == 0 {
		return nil, fmt.Errorf("bottleneck: layers_to_transform %v selects no layer", cfg.Layers)
	}
	return set, nil
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// LoadBottleneck attaches the bottleneck adapter saved in dir.
func LoadBottleneck(m *model.Model, dir string) (*BottleneckSet, error) {
	f, err := hfconfig.ReadAdapterConfig(dir)
	if err != nil {
		return nil, err
	}
	path := f.Path
	if f.PeftType != "BOTTLENECK" {
		return nil, fmt.Errorf("%s: peft_type %q, want BOTTLENECK", path, f.PeftType)
	}
	if f.TaskType != "" && f.TaskType != "CAUSAL_LM" {
		return nil, fmt.Errorf("%s: task_type %q: only CAUSAL_LM is supported", path, f.TaskType)
	}
	if f.BottleneckSize <= 0 {
		return nil, fmt.Errorf("%s: bottleneck_size must be a positive integer, got %d", path, f.BottleneckSize)
	}
	cfg := BottleneckConfig{Size: f.BottleneckSize, Activation: f.NonLinearity, Placement: f.AdapterPlacement, Scaling: 1,
		Init: "zero", BaseModel: f.BaseModel, Layers: f.LayersToTransform.Indices}
	if f.Scaling != nil {
		cfg.Scaling = *f.Scaling
		if cfg.Scaling == 0 {
			return nil, fmt.Errorf("%s: scaling 0 would disable the adapter", path)
		}
	}
	if f.LayersToTransform.Single {
		return nil, fmt.Errorf("%s: layers_to_transform must be a list of layer indices, not one", path)
	}
	set, err := AttachBottleneck(m, cfg, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	set.Config.Init = f.InitWeights
	wpath := filepath.Join(dir, "adapter_model.safetensors")
	st, err := safetensors.OpenOne(wpath)
	if err == nil {
		err = loadParams(st, wpath, set.Params())
		st.Close()
	}
	if err != nil {
		set.Detach()
		return nil, err
	}
	return set, nil
}

// Type implements Method.
func (s *BottleneckSet) Type() string { return "BOTTLENECK" }

// Params implements Method.
func (s *BottleneckSet) Params() []*nn.Param {
	var ps []*nn.Param
	for _, b := range s.Modules {
		ps = append(ps, b.Params()...)
	}
	return ps
}

// Detach implements Method.
func (s *BottleneckSet) Detach() {
	for _, l := range s.m.Layers {
		for _, b := range s.Modules {
			if l.AttnOut == model.SublayerHook(b) {
				l.AttnOut = nil
			}
			if l.MLPOut == model.SublayerHook(b) {
				l.MLPOut = nil
			}
		}
	}
}

// Save implements Method.
func (s *BottleneckSet) Save(dir string) error {
	if err := writeTensors(dir, s.Params(), SavedName); err != nil {
		return err
	}
	c := s.Config
	init := c.Init
	if init == "zero" || init == "" {
		init = "bert"
	}
	return writeJSON(filepath.Join(dir, "adapter_config.json"), map[string]any{
		"adapter_placement": c.Placement, "base_model_name_or_path": c.BaseModel, "bottleneck_size": c.Size,
		"inference_mode": true, "init_weights": init, "layers_to_transform": nilIfEmpty(c.Layers),
		"non_linearity": strings.ToLower(c.Activation), "peft_type": "BOTTLENECK", "scaling": c.Scaling, "task_type": "CAUSAL_LM",
	})
}
