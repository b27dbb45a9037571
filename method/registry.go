// Package method is the registry of fine-tuning methods: for each
// finetuning_type, the configuration keys it checks, how it attaches to a
// model, what it can be combined with, and how a saved adapter folder of its
// kind loads. Validation, the trainer and every loader of adapter folders
// look a method up here instead of switching on its name, and the planner
// (gotune plan) counts each method through the rows it lists in Plan, so a
// new method is its implementation (in peft/) plus one file here and one
// line in registry.
package method

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"gotune/config"
	"gotune/model"
	"gotune/nn"
	"gotune/peft"
	"gotune/plan"
)

// Method is one finetuning_type.
type Method struct {
	// Name is the finetuning_type value; Aliases are other spellings
	// LLaMA-Factory accepts for the same method.
	Name    string
	Aliases []string
	// PeftType is the peft_type of the adapter folder it saves, "" when it
	// trains the model's own weights (full, freeze).
	PeftType string
	// Check reports problems with the method's own keys.
	Check func(c *config.Config, bad Report)
	// Exclusive lists the keys the user turned on that mean something only
	// for this method, so choosing another one with them set is an error.
	Exclusive func(c *config.Config) []string
	// Attach readies m for training: it attaches the method (or loads the
	// adapter in adapter_name_or_path) and marks what trains. Method is nil
	// for methods that train the model's own weights.
	Attach func(s Setup) (peft.Method, []*nn.Param, error)
	// Load attaches a saved adapter folder of this method's PeftType.
	Load func(m *model.Model, dir string) (peft.Method, error)
	// Packing: rows packed with several samples can train it. Virtual
	// tokens and prefixes belong to one sequence, which a packed row is not.
	Packing bool
	// QuantizedBase: it trains over a 4- or 8-bit base (QLoRA).
	QuantizedBase bool
	// BF16Base: with bf16: true its frozen base weights may be held in
	// bfloat16 (the trainable ones stay float32).
	BF16Base bool
	// GRPO: stage grpo trains it (its sampling sessions, reference policy
	// and checkpointed state are those of full, freeze and LoRA tuning).
	GRPO bool
	// Plan is the method's rows in gotune plan: what it holds and computes
	// for a model shape (one row, or one per variant the planner lists).
	Plan []plan.Row
}

// Report records a problem with a configuration key.
type Report func(key, format string, args ...any)

// Setup is what Attach works with.
type Setup struct {
	Cfg      *config.Config
	Model    *model.Model
	ModelDir string
}

// Resumes reports whether the run continues an adapter saved before
// (adapter_name_or_path), and which folder.
func (s Setup) Resumes() (string, bool) {
	if len(s.Cfg.AdapterNameOrPath) == 0 {
		return "", false
	}
	return s.Cfg.AdapterNameOrPath[0], true
}

// Seed is the seed adapters initialise from.
func (s Setup) Seed() uint64 { return uint64(s.Cfg.Seed) }

// registry lists every method, in the order users read them.
var registry = []*Method{
	&full,
	&freeze,
	&lora,
	&promptTuning,
	&pTuning,
	&prefixTuning,
	&ia3,
	&bottleneck,
}

// Names lists every finetuning_type with its aliases.
func Names() []string {
	var out []string
	for _, m := range registry {
		out = append(out, m.Name)
		out = append(out, m.Aliases...)
	}
	return out
}

// GRPONames lists the methods stage grpo trains.
func GRPONames() []string {
	var out []string
	for _, m := range registry {
		if m.GRPO {
			out = append(out, m.Name)
		}
	}
	return out
}

// PlanRows lists the planner's rows of every method, in the order the
// table lists them.
func PlanRows() []plan.Row {
	var out []plan.Row
	for _, m := range registry {
		out = append(out, m.Plan...)
	}
	return out
}

// PlanRow finds a planner row by the name the table gives it (qlora also
// names qlora-nf4).
func PlanRow(name string) (plan.Row, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "qlora" {
		name = string(plan.QLoRA)
	}
	var names []string
	for _, r := range PlanRows() {
		if string(r.Method) == name {
			return r, nil
		}
		names = append(names, string(r.Method))
	}
	return plan.Row{}, fmt.Errorf("unknown method %q (known: %s)", name, strings.Join(names, ", "))
}

// Lookup finds the method a finetuning_type names.
func Lookup(name string) (*Method, error) {
	for _, m := range registry {
		if m.Name == name || slices.Contains(m.Aliases, name) {
			return m, nil
		}
	}
	return nil, fmt.Errorf("finetuning_type %q is unknown; want one of %s", name, strings.Join(Names(), ", "))
}

// Of is the method c trains with.
func Of(c *config.Config) (*Method, error) { return Lookup(c.FinetuningType) }

// Validate checks a training configuration completely: the keys every run
// shares (config.Validate) and those of its method, reporting every problem,
// each naming where the key was set.
func Validate(c *config.Config) error {
	var errs []error
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", c.Where(key), fmt.Sprintf(format, args...)))
	}
	m, err := Of(c)
	if err != nil {
		bad("finetuning_type", "%q is not one of %s", c.FinetuningType, strings.Join(Names(), ", "))
		return errors.Join(errs...)
	}
	if m.Check != nil {
		m.Check(c, bad)
	}
	for _, o := range registry {
		if o == m || o.Exclusive == nil {
			continue
		}
		for _, k := range o.Exclusive(c) {
			bad(k, "only applies to finetuning_type %s, got %s", o.Name, c.FinetuningType)
		}
	}
	if c.QuantizationBit != nil && !m.QuantizedBase {
		bad("quantization_bit", "quantized training needs a method that keeps the base frozen over it (finetuning_type lora: QLoRA), got %s", c.FinetuningType)
	}
	if p := c.PrecomputeRefLogProbs; p != nil && !*p && m.Load == nil {
		// Without an adapter to switch off, the reference is the initial
		// weights: scored once, not kept as a second copy of the model.
		bad("precompute_ref_log_probs", "false needs a PEFT method: with finetuning_type %s the reference is the initial weights, "+
			"which gotune scores once before training instead of keeping a second copy of the model", c.FinetuningType)
	}
	if !m.Packing && c.PackingEnabled() {
		bad("packing", "finetuning_type %s cannot be combined with packing (its virtual tokens belong to one sequence, and a packed row holds several): set packing: false", c.FinetuningType)
	}
	return errors.Join(errs...)
}

// Load attaches the adapter saved in dir, whatever its method.
func Load(m *model.Model, dir string) (peft.Method, error) {
	t, err := peft.PeftType(dir)
	if err != nil {
		return nil, err
	}
	for _, me := range registry {
		if me.PeftType == t && me.Load != nil {
			return me.Load(m, dir)
		}
	}
	return nil, fmt.Errorf("%s: peft_type %q is not supported yet", dir, t)
}

// attachOrLoad is the Attach of the adapter methods: load the adapter being
// continued, or attach a fresh one.
func attachOrLoad(s Setup, load func(*model.Model, string) (peft.Method, error), fresh func() (peft.Method, error)) (peft.Method, []*nn.Param, error) {
	var meth peft.Method
	var err error
	if dir, ok := s.Resumes(); ok {
		meth, err = load(s.Model, dir)
	} else {
		meth, err = fresh()
	}
	if err != nil {
		return nil, nil, err
	}
	return meth, meth.Params(), nil
}

// oneOf reports val when it is not among choices.
func oneOf(bad Report, key, val string, choices ...string) {
	if !slices.Contains(choices, val) {
		bad(key, "%q is not one of %s", val, strings.Join(choices, ", "))
	}
}
