package peft

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gotune/model"
	"gotune/nn"
	"gotune/safetensors"
)

// PEFT stores parameters under the wrapped model's module tree: this prefix,
// then the base model's module name. In memory each carries the adapter name
// ("default"); saved files drop it.
const (
	// peftFormatVersion is the PEFT release whose adapter format gotune
	// writes (and whose reference outputs its parity tests use).
	peftFormatVersion = "0.21.0"

	namePrefix  = "base_model.model."
	adapterName = "default"
)

// LoRAConfig is a LoRA adapter's configuration (PEFT's LoraConfig fields).
type LoRAConfig struct {
	R       int
	Alpha   float64
	Dropout float64
	// Targets are module names or name suffixes ("q_proj"); "all" or
	// "all-linear" selects every projection of every layer. TargetRegex,
	// when set, must fully match a module name instead.
	Targets     []string
	TargetRegex string
	RSLoRA      bool
	DoRA        bool
	// RankPattern and AlphaPattern override R and Alpha for modules whose
	// name ends with a matching pattern (PEFT's rank_pattern/alpha_pattern).
	RankPattern  map[string]int
	AlphaPattern map[string]float64
	// Layers restricts adapters to these layer indices (layers_to_transform).
	Layers []int
	// Init is "default" (A Kaiming-uniform, B zero, as PEFT), "gaussian"
	// (A normal with std 1/r) or "zero" (both zero, for loading).
	Init      string
	BaseModel string
	// TargetParameters names stacked MoE expert weights to adapt, as
	// PEFT's target_parameters ("mlp.experts.gate_up_proj").
	TargetParameters []string
	// allModules are the module names "all" stood for when attached (the
	// family's projections: q_proj… or phi3's fused qkv_proj…), written
	// out as PEFT's target_modules.
	allModules []string
}

// LoRASet is a LoRA adapter attached to every targeted layer of a model.
type LoRASet struct {
	Config  LoRAConfig
	Modules []*LoRA
	Experts []*ExpertLoRA
	layers  map[string]*nn.Linear
}

func (c *LoRAConfig) targets(name string) (bool, error) {
	if c.Layers != nil {
		var idx int
		if _, err := fmt.Sscanf(name, "model.layers.%d.", &idx); err == nil {
			found := false
			for _, l := range c.Layers {
				found = found || l == idx
			}
			if !found {
				return false, nil
			}
		}
	}
	if c.TargetRegex != "" {
		re, err := regexp.Compile("^(?:" + c.TargetRegex + ")$")
		if err != nil {
			return false, fmt.Errorf("target_modules regex %q: %w", c.TargetRegex, err)
		}
		return re.MatchString(name), nil
	}
	for _, t := range c.Targets {
		if t == "all" || t == "all-linear" {
			return true, nil
		}
		if name == t || strings.HasSuffix(name, "."+t) {
			return true, nil
		}
	}
	return false, nil
}

// patternFor finds the rank/alpha pattern key matching a module as PEFT
// does: the key must match a dotted suffix of the name.
func patternFor[V any](pat map[string]V, name string) (V, bool) {
	var zero V
	keys := make([]string, 0, len(pat))
	for k := range pat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if re, err := regexp.Compile(`^(?:.*\.)?(?:` + k + `)$`); err == nil && re.MatchString(name) {
			return pat[k], true
		}
	}
	return zero, false
}

// AttachLoRA wraps the targeted linear layers of m with fresh LoRA adapters.
func AttachLoRA(m *model.Model, cfg LoRAConfig, seed uint64) (*LoRASet, error) {
	if cfg.R <= 0 {
		return nil, fmt.Errorf("lora: rank must be positive, got %d", cfg.R)
	}
	if cfg.Dropout < 0 || cfg.Dropout >= 1 {
		return nil, fmt.Errorf("lora: dropout must be in [0, 1), got %v", cfg.Dropout)
	}
	if len(cfg.Targets) == 0 && cfg.TargetRegex == "" && len(cfg.TargetParameters) == 0 {
		cfg.Targets = []string{"all"}
	}
	if err := checkTargetsMatch(m, cfg.Targets, cfg.TargetRegex); err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	// transformers 5 holds an MoE layer's experts as stacked parameters,
	// not linear modules: PEFT adapts them through target_parameters, and
	// "all" means those too.
	experts := expertLinears(m)
	if len(experts) > 0 && len(cfg.TargetParameters) == 0 && slices.ContainsFunc(cfg.Targets, func(t string) bool { return t == "all" || t == "all-linear" }) {
		if cfg.Dropout != 0 || cfg.DoRA {
			return nil, fmt.Errorf("lora: target all on a mixture-of-experts model adapts the experts through PEFT's target_parameters, which allows neither dropout nor DoRA: set lora_dropout 0 (and use_dora false) or list the target modules")
		}
		p := m.Cfg.Family.MoE.PEFTExperts
		cfg.TargetParameters = []string{p + ".gate_up_proj", p + ".down_proj"}
	}
	set := &LoRASet{Config: cfg, layers: map[string]*nn.Linear{}}
	set.Config.allModules = moduleSuffixes(m)
	rng := rand.New(rand.NewPCG(seed, 0x6c6f7261))
	for _, lin := range m.Linears() {
		if experts[lin] {
			continue
		}
		ok, err := cfg.targets(lin.Name)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if lin.Adapter != nil {
			return nil, fmt.Errorf("lora: %s already has an adapter", lin.Name)
		}
		r := cfg.R
		if v, ok := patternFor(cfg.RankPattern, lin.Name); ok {
			r = v
		}
		alpha := cfg.Alpha
		if v, ok := patternFor(cfg.AlphaPattern, lin.Name); ok {
			alpha = v
		}
		scale := alpha / float64(r)
		if cfg.RSLoRA {
			scale = alpha / math.Sqrt(float64(r))
		}
		pre := namePrefix + lin.Name
		l := &LoRA{
			Module:  lin.Name,
			A:       nn.NewParam(pre+".lora_A."+adapterName+".weight", r, lin.In),
			B:       nn.NewParam(pre+".lora_B."+adapterName+".weight", lin.Out, r),
			Scale:   float32(scale),
			Dropout: float32(cfg.Dropout),
			Seed:    rng.Uint64(),
		}
		switch cfg.Init {
		case "", "default", "true":
			bound := 1 / math.Sqrt(float64(lin.In))
			for i := range l.A.Data {
				l.A.Data[i] = float32((rng.Float64()*2 - 1) * bound)
			}
		case "gaussian":
			for i := range l.A.Data {
				l.A.Data[i] = float32(rng.NormFloat64() / float64(r))
			}
		case "zero":
		default:
			return nil, fmt.Errorf("lora: unknown init %q (default, gaussian)", cfg.Init)
		}
		if cfg.DoRA {
			l.Magnitude = nn.NewParam(pre+".lora_magnitude_vector."+adapterName+".weight", lin.Out)
			w := lin.DenseWeight()
			for o := range l.Magnitude.Data {
				var ss float64
				for _, v := range w[o*lin.In : (o+1)*lin.In] {
					ss += float64(v) * float64(v)
				}
				l.Magnitude.Data[o] = float32(math.Sqrt(ss))
			}
		}
		for _, p := range l.Params() {
			p.SetTrainable(true)
		}
		lin.Adapter = l
		set.Modules = append(set.Modules, l)
		set.layers[lin.Name] = lin
	}
	if err := set.attachExperts(m, cfg, rng); err != nil {
		set.Detach()
		return nil, err
	}
	if len(set.Modules) == 0 && len(set.Experts) == 0 {
		return nil, fmt.Errorf("lora: target_modules %v matched no layer (layer names look like %q)", cfg.Targets, m.Linears()[0].Name)
	}
	return set, nil
}

// Params lists the trainable parameters.
func (s *LoRASet) Params() []*nn.Param {
	var ps []*nn.Param
	for _, l := range s.Modules {
		ps = append(ps, l.Params()...)
	}
	for _, e := range s.Experts {
		ps = append(ps, e.Params()...)
	}
	return ps
}

// SetStep selects the dropout masks of the next forward pass.
func (s *LoRASet) SetStep(step uint64) {
	for _, l := range s.Modules {
		l.Step = step
	}
}

// Detach removes the adapters from the model.
func (s *LoRASet) Detach() {
	for name, lin := range s.layers {
		if lin.Adapter != nil {
			lin.Adapter = nil
		}
		delete(s.layers, name)
	}
	for _, e := range s.Experts {
		e.detach()
	}
}

// Merge folds every adapter into its layer's weight and detaches it. The
// layers must hold float32 weights.
func (s *LoRASet) Merge() error {
	for _, l := range s.Modules {
		lin := s.layers[l.Module]
		if lin.F32() == nil {
			return fmt.Errorf("merge: %s is not stored in float32; load the base in f32 to merge", l.Module)
		}
		l.Merge(lin)
	}
	for _, e := range s.Experts {
		if err := e.merge(); err != nil {
			return err
		}
	}
	s.Detach()
	return nil
}

// Save writes adapter_config.json and adapter_model.safetensors into dir.
func (s *LoRASet) Save(dir string) error {
	if err := writeTensors(dir, s.Params(), SavedName); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, "adapter_config.json"), s.Config.peftJSON())
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return safetensors.WriteAtomic(path, func(w *bufio.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}

// peftJSON renders the configuration with PEFT's field names and defaults.
func (c LoRAConfig) peftJSON() map[string]any {
	var targets any = c.Targets
	if c.TargetRegex != "" {
		targets = c.TargetRegex
	} else if len(c.Targets) == 1 && (c.Targets[0] == "all" || c.Targets[0] == "all-linear") {
		targets = c.allModules
	}
	rp, ap := map[string]any{}, map[string]any{}
	for k, v := range c.RankPattern {
		rp[k] = v
	}
	for k, v := range c.AlphaPattern {
		ap[k] = v
	}
	init := any(true)
	if c.Init == "gaussian" {
		init = "gaussian"
	}
	return map[string]any{
		"alpha_pattern": ap, "auto_mapping": nil, "base_model_name_or_path": c.BaseModel, "bias": "none",
		"fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": init, "layer_replication": nil,
		"layers_pattern": nil, "layers_to_transform": nilIfEmpty(c.Layers), "loftq_config": map[string]any{}, "lora_alpha": c.Alpha,
		"lora_bias": false, "lora_dropout": c.Dropout, "megatron_config": nil, "megatron_core": "megatron.core",
		"modules_to_save": nil, "peft_type": "LORA", "r": c.R, "rank_pattern": rp, "revision": nil,
		"target_modules": targets, "task_type": "CAUSAL_LM", "use_dora": c.DoRA, "use_rslora": c.RSLoRA,
		// Fields of newer PEFT versions, at their defaults, so loaders that
		// expect them find them.
		"peft_version": peftFormatVersion, "exclude_modules": nil, "target_parameters": nilIfEmptyStrings(c.TargetParameters),
		"trainable_token_indices": nil, "ensure_weight_tying": false, "use_qalora": false, "qalora_group_size": 16,
		"use_bdlora": nil, "alora_invocation_tokens": nil, "arrow_config": nil, "corda_config": nil, "eva_config": nil,
		"kasa_config": nil, "lora_ga_config": nil, "monteclora_config": nil, "velora_config": nil,
	}
}

func nilIfEmpty(v []int) any {
	if len(v) == 0 {
		return nil
	}
	return v
}

// checkTargetsMatch fails for a target module name that matches no linear
// layer: a misspelt name ("vproj") would otherwise leave that module
// untrained without a word while the others train.
func checkTargetsMatch(m *model.Model, targets []string, regex string) error {
	if regex != "" {
		return nil
	}
	lins := m.Linears()
	var missing []string
	for _, t := range targets {
		if t == "all" || t == "all-linear" {
			continue
		}
		found := false
		for _, lin := range lins {
			if lin.Name == t || strings.HasSuffix(lin.Name, "."+t) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	names := map[string]bool{}
	var kinds []string
	for _, lin := range lins {
		short := lin.Name[strings.LastIndex(lin.Name, ".")+1:]
		if !names[short] {
			names[short] = true
			kinds = append(kinds, short)
		}
	}
	sort.Strings(kinds)
	return fmt.Errorf("target module %s matched no layer of this model (its linear layers: %s, or all)", strings.Join(missing, ", "), strings.Join(kinds, ", "))
}

// moduleSuffixes lists the distinct last parts of the model's projection
// names in the order of the first layer (q_proj, k_proj, … or qkv_proj, …).
func moduleSuffixes(m *model.Model) []string {
	var out []string
	experts := expertLinears(m)
	for _, l := range m.Linears() {
		if experts[l] {
			continue
		}
		s := l.Name[strings.LastIndex(l.Name, ".")+1:]
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func nilIfEmptyStrings(v []string) any {
	if len(v) == 0 {
		return nil
	}
	return v
}

// expertLinears are the layers that hold MoE experts' weights.
func expertLinears(m *model.Model) map[*nn.Linear]bool {
	out := map[*nn.Linear]bool{}
	for _, l := range m.Layers {
		if l.MoE != nil {
			for _, e := range l.MoE.Experts {
				out[e.Gate], out[e.Up], out[e.Down] = true, true, true
			}
		}
	}
	return out
}
