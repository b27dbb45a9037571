// Package chat renders Hugging Face chat templates exactly as transformers
// does (jinja2 with trim_blocks, lstrip_blocks, loop controls and its tojson,
// raise_exception and strftime_now) and reports which byte spans of the
// rendered text came from which message, for loss masking.
package chat

import (
	"errors"
	"fmt"
	"gotune/hfconfig"
	"io/fs"
	"strings"
	"time"

	"github.com/ardanlabs/jinja"
)

// Default bounds for untrusted templates.
const (
	DefaultMaxOutput     = 16 << 20 // bytes of rendered text
	DefaultMaxIterations = 1 << 20  // loop iterations and macro calls, summed
	maxMacroDepth        = 64
	maxRange             = 1 << 16
)

// Template is a compiled chat template.
type Template struct {
	Name   string
	Source string
	// BOS and EOS are the tokenizer's bos_token/eos_token strings, passed to
	// the template as bos_token and eos_token (empty means undefined).
	BOS, EOS string

	lib    *jinja.Template
	hasGen bool
	stops  []string
	// unknown are filter names jinja2 does not have, used where jinja2
	// fails only when they run (see compiler.soft)
	unknown []string
}

// Options are the variables of one render.
type Options struct {
	AddGenerationPrompt bool
	// Tools are tool definitions: json.RawMessage, Object, map[string]any or
	// []any values. Documents likewise.
	Tools     []any
	Documents []any
	// Extra holds further template variables (enable_thinking, date_string,
	// ...). Use Object or json.RawMessage values where key order matters.
	Extra map[string]any
	// Now is the clock behind strftime_now; time.Now when nil.
	Now func() time.Time
	// BOS and EOS override the template's tokens when non-empty.
	BOS, EOS string
	// Bounds; zero means the defaults above.
	MaxOutput, MaxIterations int
}

// RaiseError is a template's raise_exception(message).
type RaiseError struct {
	Message string
	Line    int
}

func (e *RaiseError) Error() string {
	return fmt.Sprintf("template raised an exception (line %d): %s", e.Line, e.Message)
}

// Parse compiles a template source.
func Parse(name, source string) (*Template, error) {
	segs, err := lex(name, source)
	if err != nil {
		return nil, err
	}
	c := &compiler{name: name}
	libSrc, err := c.compile(segs)
	if err != nil {
		return nil, err
	}
	lib, err := jinja.Compile(libSrc)
	if err != nil {
		return nil, &TemplateError{Name: name, Msg: "unsupported construct: " + err.Error()}
	}
	t := &Template{Name: name, Source: source, lib: lib, hasGen: c.hasGen, unknown: c.unknown}
	t.stops = discoverStops(c.literal)
	return t, nil
}

// knownEndOfTurn are end-of-turn markers of common chat formats.
var knownEndOfTurn = []string{
	"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>",
	"<｜end▁of▁sentence｜>", "<|endoftext|>", "</s>",
}

func discoverStops(literals []string) []string {
	var out []string
	for _, s := range knownEndOfTurn {
		for _, l := range literals {
			if strings.Contains(l, s) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// StopStrings returns the strings that end an assistant turn: the
// template's end-of-turn markers and the EOS token.
func (t *Template) StopStrings() []string {
	out := append([]string(nil), t.stops...)
	if t.EOS != "" && !contains(out, t.EOS) {
		out = append(out, t.EOS)
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// HasGenerationMarks reports whether the template marks assistant text with
// {% generation %} blocks.
func (t *Template) HasGenerationMarks() bool { return t.hasGen }

// ErrNoTemplate is wrapped by Load's error when a folder has no chat
// template at all, as opposed to one that fails to parse: callers may fall
// back only on this one.
var ErrNoTemplate = errors.New("no chat template")

// Load reads a model folder's chat template: chat_template.jinja when
// present, else tokenizer_config.json's chat_template (its "default"
// variant when it is a list), with bos_token and eos_token.
func Load(dir string) (*Template, error) { return LoadNamed(dir, "") }

// LoadNamed loads one named variant of tokenizer_config.json's chat_template
// list ("" picks chat_template.jinja or the default).
func LoadNamed(dir, name string) (*Template, error) {
	cfg, err := hfconfig.ReadTokenizerConfig(dir)
	if err != nil {
		return nil, err
	}
	var src, srcName string
	if cfg.HasJinja && name == "" {
		src, srcName = cfg.Jinja, cfg.JinjaPath
	} else {
		if cfg.TemplateForm == hfconfig.NoTemplate {
			return nil, fmt.Errorf("%s: %w: no chat_template.jinja and no chat_template in tokenizer_config.json (use a built-in template: %s)", dir, ErrNoTemplate, strings.Join(BuiltinNames(), ", "))
		}
		src, err = pickVariant(cfg, name)
		if err != nil {
			return nil, fmt.Errorf("%s: field chat_template: %w", cfg.Path, err)
		}
		srcName = cfg.Path
		if name != "" {
			srcName += "#" + name
		}
	}
	t, err := Parse(srcName, src)
	if err != nil {
		return nil, err
	}
	t.BOS, t.EOS = cfg.BOS, cfg.EOS
	return t, nil
}

// pickVariant picks the named template ("" is "default"); a single string
// is the default and has no other names.
func pickVariant(cfg *hfconfig.TokenizerConfig, name string) (string, error) {
	if cfg.TemplateForm == hfconfig.SingleTemplate {
		if name != "" && name != "default" {
			return "", fmt.Errorf("template %q requested but chat_template is a single string", name)
		}
		return cfg.ChatTemplate, nil
	}
	if name == "" {
		name = "default"
	}
	var names []string
	for _, v := range cfg.ChatTemplates {
		if v.Name == name {
			return v.Template, nil
		}
		names = append(names, v.Name)
	}
	return "", fmt.Errorf("no template named %q (have %s)", name, strings.Join(names, ", "))
}

// TemplateNames lists the named variants in a folder's tokenizer_config.json
// (none when chat_template is a single string); the file must exist.
func TemplateNames(dir string) ([]string, error) {
	cfg, err := hfconfig.ReadTokenizerConfig(dir)
	if err != nil {
		return nil, err
	}
	if !cfg.Found {
		return nil, fmt.Errorf("%s: %w", cfg.Path, fs.ErrNotExist)
	}
	return cfg.Names(), nil
}

// Render renders the conversation.
func (t *Template) Render(msgs []Message, opt Options) (string, error) {
	out, _, err := t.render(msgs, opt, false)
	return out, err
}

// genMark delimits {% generation %} output during a span render; inputs
// containing it are refused so the marks cannot be forged.
const (
	genOpen  = "\x00\x1egotune-gen-open\x1e\x00"
	genClose = "\x00\x1egotune-gen-close\x1e\x00"
	genProbe = "\x00\x1egotune-gen-"
)

type genRange struct{ start, end int }

// renderState is the per-render state behind the helper callables.
type renderState struct {
	line     int
	out      int
	ticks    int
	depth    int
	maxOut   int
	maxTicks int
	marks    bool
	raiseErr *RaiseError
	limitErr error
	work     int // values walked by the bound checks (see maxWork)
}

func (t *Template) render(msgs []Message, opt Options, marks bool) (string, []genRange, error) {
	st := &renderState{maxOut: opt.MaxOutput, maxTicks: opt.MaxIterations, marks: marks}
	if st.maxOut <= 0 {
		st.maxOut = DefaultMaxOutput
	}
	if st.maxTicks <= 0 {
		st.maxTicks = DefaultMaxIterations
	}
	vars, err := t.variables(msgs, opt, st)
	if err != nil {
		return "", nil, err
	}
	out, err := t.renderLib(vars)
	if err != nil {
		switch {
		case st.raiseErr != nil:
			return "", nil, st.raiseErr
		case st.limitErr != nil:
			return "", nil, &TemplateError{Name: t.Name, Line: st.line, Msg: st.limitErr.Error()}
		}
		return "", nil, &TemplateError{Name: t.Name, Line: st.line, Msg: pyErrorText(err.Error())}
	}
	if !marks {
		return out, nil, nil
	}
	return extractMarks(t.Name, out)
}

// renderLib runs the library, turning its panics on hostile input (e.g. a
// negative string repeat count) into errors.
func (t *Template) renderLib(vars map[string]jinja.Value) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("template evaluation failed: %v", r)
		}
	}()
	return t.lib.RenderValues(vars)
}

func extractMarks(name, s string) (string, []genRange, error) {
	var b strings.Builder
	var gens []genRange
	open := -1
	for {
		i := strings.Index(s, genProbe)
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		switch {
		case strings.HasPrefix(s[i:], genOpen):
			if open >= 0 {
				return "", nil, &TemplateError{Name: name, Msg: "nested {% generation %} blocks"}
			}
			open = b.Len()
			s = s[i+len(genOpen):]
		case strings.HasPrefix(s[i:], genClose):
			if open < 0 {
				return "", nil, &TemplateError{Name: name, Msg: "unbalanced {% endgeneration %}"}
			}
			gens = append(gens, genRange{open, b.Len()})
			open = -1
			s = s[i+len(genClose):]
		default:
			return "", nil, &TemplateError{Name: name, Msg: "generation marks were altered by a filter"}
		}
	}
	if open >= 0 {
		return "", nil, &TemplateError{Name: name, Msg: "unbalanced {% generation %}"}
	}
	return b.String(), gens, nil
}

func (t *Template) variables(msgs []Message, opt Options, st *renderState) (map[string]jinja.Value, error) {
	vars := map[string]jinja.Value{}
	ml := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		v, err := toValue(m.Fields)
		if err != nil {
			return nil, fmt.Errorf("messages[%d]: %w", i, err)
		}
		ml[i] = v
	}
	vars["messages"] = jinja.NewList(ml)
	list := func(name string, xs []any) error {
		if xs == nil {
			vars[name] = jinja.None()
			return nil
		}
		v, err := toValue(xs)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		vars[name] = v
		return nil
	}
	if err := list("tools", opt.Tools); err != nil {
		return nil, err
	}
	if err := list("documents", opt.Documents); err != nil {
		return nil, err
	}
	vars["add_generation_prompt"] = jinja.NewBool(opt.AddGenerationPrompt)
	bos, eos := t.BOS, t.EOS
	if opt.BOS != "" {
		bos = opt.BOS
	}
	if opt.EOS != "" {
		eos = opt.EOS
	}
	if bos != "" {
		vars["bos_token"] = jinja.NewString(bos)
	}
	if eos != "" {
		vars["eos_token"] = jinja.NewString(eos)
	}
	for _, k := range sortedKeys(opt.Extra) {
		v, err := toValue(opt.Extra[k])
		if err != nil {
			return nil, fmt.Errorf("extra variable %s: %w", k, err)
		}
		vars[k] = v
	}
	if st.marks {
		for k, v := range vars {
			if containsProbe(v) {
				return nil, fmt.Errorf("variable %s contains a reserved control sequence", k)
			}
		}
	}
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	installHelpers(vars, st, now)
	for _, name := range t.unknown {
		msg := fmt.Sprintf("TemplateRuntimeError: No filter named %s found.", pyRepr(jinja.NewString(name)))
		vars["__nofilter_"+name] = jinja.NewCallable(name, func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
			return jinja.Value{}, errors.New(msg)
		})
	}
	return vars, nil
}

func containsProbe(v jinja.Value) bool {
	switch {
	case v.IsString():
		return strings.Contains(v.AsString(), genProbe)
	case v.IsList():
		for _, it := range v.AsList().Items {
			if containsProbe(it) {
				return true
			}
		}
	case v.IsDict():
		d := v.AsDict()
		for _, k := range d.Keys {
			if strings.Contains(k, genProbe) || containsProbe(d.Data[k]) {
				return true
			}
		}
	}
	return false
}

// NamesIdentifier reports whether name occurs in a template's source as a
// whole identifier: a variable the template never names (a misspelled
// enable_thinking) cannot change its output.
func NamesIdentifier(src, name string) bool {
	isWord := func(b byte) bool {
		return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
	}
	for i := 0; name != ""; {
		j := strings.Index(src[i:], name)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(name)
		if (start == 0 || !isWord(src[start-1])) && (end == len(src) || !isWord(src[end])) {
			return true
		}
		i = start + 1
	}
	return false
}

// pyErrorText names the Python exception jinja2 raises for the library's
// own errors that have no class in their text.
func pyErrorText(msg string) string {
	switch {
	case strings.HasSuffix(msg, " is not callable: Undefined"):
		// calling an undefined name
		return "UndefinedError: " + msg
	case strings.Contains(msg, " is not callable: "), msg == "call: expression is not callable",
		msg == "Can only get item pairs from a mapping.":
		return "TypeError: " + msg
	case msg == "pop from empty list", msg == "pop index out of range":
		return "IndexError: " + msg
	}
	return msg
}
