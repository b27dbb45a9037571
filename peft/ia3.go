package peft

import (
	"fmt"
	"gotune/hfconfig"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gotune/model"
	"gotune/nn"
	"gotune/safetensors"
)

// IA3Config configures IA3 (PEFT's IA3Config).
type IA3Config struct {
	// Targets are module names or name suffixes; TargetRegex, when set, must
	// fully match a module name instead. Empty means PEFT's default for
	// Llama-family models: k_proj, v_proj, down_proj.
	Targets     []string
	TargetRegex string
	// Feedforward lists the targets whose input is scaled; the others have
	// their output scaled. They must be targets. With Targets empty both
	// take PEFT's defaults (Feedforward down_proj).
	Feedforward []string
	// NoInit leaves the vectors random (PEFT's init_ia3_weights=false)
	// instead of ones.
	NoInit    bool
	BaseModel string
}

// IA3 rescales a linear layer by a trained vector: the output (bias
// included) of an attention projection, y = l ⊙ (W·x + b), or the input of a
// feed-forward one, y = W·(l ⊙ x) + b.
type IA3 struct {
	Module      string
	L           *nn.Param // [Out, 1], or [1, In] when Feedforward
	Feedforward bool
}

// IA3 returns the vector and whether it scales the input (model.Scaler: what
// a device backend runs).
func (a *IA3) IA3() (vec *nn.Param, input bool) { return a.L, a.Feedforward }

// Params implements nn.Adapter.
func (a *IA3) Params() []*nn.Param { return []*nn.Param{a.L} }

// Merge folds the vector into the layer's float32 weight (and bias).
func (a *IA3) Merge(lin *nn.Linear) {
	l, in := a.L.Data, lin.In
	for o := 0; o < lin.Out; o++ {
		row := lin.F32().Data[o*in : (o+1)*in]
		for i := range row {
			if a.Feedforward {
				row[i] *= l[i]
			} else {
				row[i] *= l[o]
			}
		}
	}
	if lin.B != nil && !a.Feedforward {
		for o := range lin.B.Data {
			lin.B.Data[o] *= l[o]
		}
	}
}

// IA3Set is IA3 attached to every targeted layer of a model.
type IA3Set struct {
	Config  IA3Config
	Modules []*IA3
	layers  map[string]*nn.Linear
}

func (c *IA3Config) matches(name string, list []string, regex string) (bool, error) {
	if regex != "" {
		re, err := regexp.Compile("^(?:" + regex + ")$")
		if err != nil {
			return false, fmt.Errorf("ia3: target_modules regex %q: %w", regex, err)
		}
		return re.MatchString(name), nil
	}
	for _, t := range list {
		if t == "all" || t == "all-linear" || name == t || strings.HasSuffix(name, "."+t) {
			return true, nil
		}
	}
	return false, nil
}

// AttachIA3 wraps the targeted layers of m with IA3 vectors.
func AttachIA3(m *model.Model, cfg IA3Config, seed uint64) (*IA3Set, error) {
	if len(cfg.Targets) == 0 && cfg.TargetRegex == "" {
		cfg.Targets = []string{"k_proj", "v_proj", "down_proj"}
		if len(cfg.Feedforward) == 0 {
			cfg.Feedforward = []string{"down_proj"}
		}
		// PEFT has defaults only for the families it knows and asks for
		// target_modules otherwise; a model whose keys and values come out
		// of one fused projection (Phi-3's qkv_proj) has no k_proj/v_proj to
		// scale, so the Llama default would quietly tune down_proj alone.
		if err := defaultIA3Fits(m); err != nil {
			return nil, err
		}
	}
	set := &IA3Set{Config: cfg, layers: map[string]*nn.Linear{}}
	rng := rand.New(rand.NewPCG(seed, 0x69613300))
	for _, lin := range m.Linears() {
		ok, err := cfg.matches(lin.Name, cfg.Targets, cfg.TargetRegex)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if lin.Adapter != nil {
			set.Detach()
			return nil, fmt.Errorf("ia3: %s already has an adapter", lin.Name)
		}
		ff, _ := cfg.matches(lin.Name, cfg.Feedforward, "")
		name := namePrefix + lin.Name + ".ia3_l." + adapterName
		a := &IA3{Module: lin.Name, Feedforward: ff}
		if ff {
			a.L = nn.NewParam(name, 1, lin.In)
		} else {
			a.L = nn.NewParam(name, lin.Out, 1)
		}
		for i := range a.L.Data {
			if cfg.NoInit {
				a.L.Data[i] = float32(rng.NormFloat64())
			} else {
				a.L.Data[i] = 1
			}
		}
		a.L.SetTrainable(true)
		lin.Adapter = a
		set.Modules = append(set.Modules, a)
		set.layers[lin.Name] = lin
	}
	if len(set.Modules) == 0 {
		return nil, fmt.Errorf("ia3: target_modules %v matched no layer (layer names look like %q)", cfg.Targets, m.Linears()[0].Name)
	}
	for _, f := range cfg.Feedforward {
		found := false
		for _, t := range cfg.Targets {
			found = found || t == f
		}
		if !found && cfg.TargetRegex == "" {
			set.Detach()
			return nil, fmt.Errorf("ia3: feedforward_modules %q is not one of target_modules %v", f, cfg.Targets)
		}
	}
	return set, nil
}

// defaultIA3Fits reports an error when m has no separate key and value
// projections for IA3's default targets.
func defaultIA3Fits(m *model.Model) error {
	for _, lin := range m.Linears() {
		if strings.HasSuffix(lin.Name, ".k_proj") {
			return nil
		}
	}
	fused := ""
	for _, lin := range m.Linears() {
		if strings.HasSuffix(lin.Name, ".qkv_proj") {
			fused = " (its attention projections are fused as qkv_proj)"
			break
		}
	}
	return fmt.Errorf("ia3: the default targets k_proj, v_proj, down_proj do not fit this %s model%s: set ia3_target (e.g. qkv_proj, down_proj) and ia3_feedforward (e.g. down_proj)", m.Cfg.ModelType, fused)
}

// LoadIA3 attaches the IA3 adapter saved in dir.
func LoadIA3(m *model.Model, dir string) (*IA3Set, error) {
	f, err := hfconfig.ReadAdapterConfig(dir)
	if err != nil {
		return nil, err
	}
	path := f.Path
	if f.PeftType != "IA3" {
		return nil, fmt.Errorf("%s: peft_type %q, want IA3", path, f.PeftType)
	}
	if f.FanInFanOut {
		return nil, fmt.Errorf("%s: fan_in_fan_out=true is for GPT-2 style Conv1D layers, which Llama-family models do not have", path)
	}
	if len(f.ModulesToSave) > 0 {
		return nil, fmt.Errorf("%s: modules_to_save %v is not supported yet", path, f.ModulesToSave)
	}
	if ex := f.ExcludeModules; ex.Set {
		return nil, fmt.Errorf("%s: exclude_modules %s is not supported yet", path, modulesString(ex))
	}
	cfg := IA3Config{BaseModel: f.BaseModel, Targets: f.TargetModules.Names, TargetRegex: f.TargetModules.Regex,
		Feedforward: f.FeedforwardModules.Names}
	if f.FeedforwardModules.IsRegex {
		return nil, fmt.Errorf("%s: feedforward_modules as a regex (%q) is not supported yet; list the names", path, f.FeedforwardModules.Regex)
	}
	if len(cfg.Targets) == 0 && cfg.TargetRegex == "" {
		return nil, fmt.Errorf("%s: target_modules is empty", path)
	}
	set, err := AttachIA3(m, cfg, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	wpath := filepath.Join(dir, "adapter_model.safetensors")
	st, err := safetensors.OpenOne(wpath)
	if err == nil {
		err = set.load(st, wpath)
		st.Close()
	}
	if err != nil {
		set.Detach()
		return nil, err
	}
	return set, nil
}

func (s *IA3Set) load(st *safetensors.Set, path string) error {
	used := map[string]bool{}
	for _, p := range s.Params() {
		key := ia3SavedName(p.Name)
		if !st.Has(key) {
			key = p.Name
		}
		b, info, err := st.Bytes(key)
		if err != nil {
			return fmt.Errorf("%s: missing tensor %q", path, ia3SavedName(p.Name))
		}
		if !slices.Equal(info.Shape, p.Shape) {
			return fmt.Errorf("%s: tensor %q has shape %v, the model and adapter_config.json imply %v", path, key, info.Shape, p.Shape)
		}
		if err := safetensors.DecodeFloat32s(p.Data, b, info); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		used[key] = true
	}
	for _, n := range st.Names() {
		if !used[n] {
			return fmt.Errorf("%s: tensor %q matches no adapted layer of this model (is it the right base model?)", path, n)
		}
	}
	return nil
}

// ia3SavedName drops the trailing adapter name, as PEFT's saved keys do.
func ia3SavedName(name string) string { return strings.TrimSuffix(name, "."+adapterName) }

// Type implements Method.
func (s *IA3Set) Type() string { return "IA3" }

// Params implements Method.
func (s *IA3Set) Params() []*nn.Param {
	var ps []*nn.Param
	for _, a := range s.Modules {
		ps = append(ps, a.L)
	}
	return ps
}

// SavedTensors implements SavedTensorer.
func (s *IA3Set) SavedTensors() map[string][]float32 {
	out := map[string][]float32{}
	for _, p := range s.Params() {
		out[ia3SavedName(p.Name)] = p.Data
	}
	return out
}

// Detach implements Method.
func (s *IA3Set) Detach() {
	for name, lin := range s.layers {
		lin.Adapter = nil
		delete(s.layers, name)
	}
}

// Merge folds every vector into its layer's weight and detaches IA3.
func (s *IA3Set) Merge() error {
	for _, a := range s.Modules {
		lin := s.layers[a.Module]
		if lin == nil {
			return fmt.Errorf("merge: ia3 is detached")
		}
		if lin.F32() == nil {
			return fmt.Errorf("merge: %s is not stored in float32; load the base in f32 to merge", a.Module)
		}
	}
	for _, a := range s.Modules {
		a.Merge(s.layers[a.Module])
	}
	s.Detach()
	return nil
}

// Save implements Method.
func (s *IA3Set) Save(dir string) error {
	if err := writeTensors(dir, s.Params(), ia3SavedName); err != nil {
		return err
	}
	c := s.Config
	var targets any = sortedCopy(c.Targets)
	if c.TargetRegex != "" {
		targets = c.TargetRegex
	}
	ff := sortedCopy(c.Feedforward)
	if ff == nil {
		ff = []string{}
	}
	return writeJSON(filepath.Join(dir, "adapter_config.json"), map[string]any{
		"auto_mapping": nil, "base_model_name_or_path": c.BaseModel, "exclude_modules": nil, "fan_in_fan_out": false,
		"feedforward_modules": ff, "inference_mode": true, "init_ia3_weights": !c.NoInit, "modules_to_save": nil,
		"peft_type": "IA3", "revision": nil, "target_modules": targets, "task_type": "CAUSAL_LM",
	})
}

func sortedCopy(s []string) []string {
	if s == nil {
		return nil
	}
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// modulesString shows a module selection as the file wrote it.
func modulesString(m hfconfig.Modules) string {
	if m.IsRegex {
		return strconv.Quote(m.Regex)
	}
	return fmt.Sprintf("%q", m.Names)
}
