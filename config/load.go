package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"gotune/safefile"
)

// fieldIndex maps YAML keys to struct field index paths; built once,
// read-only. The keys of an embedded struct (a stage's own settings, kept in
// its own file) are keys of the configuration itself.
var fieldIndex = sync.OnceValue(func() map[string][]int {
	m := map[string][]int{}
	var walk func(t reflect.Type, path []int)
	walk = func(t reflect.Type, path []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			p := append(append([]int(nil), path...), i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type, p)
				continue
			}
			if tag := f.Tag.Get("yaml"); tag != "" && tag != "-" {
				m[tag] = p
			}
		}
	}
	walk(reflect.TypeFor[Config](), nil)
	return m
})

// Keys lists every key the configuration understands, sorted.
func Keys() []string {
	var keys []string
	for k := range fieldIndex() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// AllowExtraEnv names the environment variable that, set to 1 or true,
// turns unknown keys from an error into a warning: LLaMA-Factory's own
// switch for the same check.
const AllowExtraEnv = "ALLOW_EXTRA_ARGS"

// Open is how every command that takes a configuration file reads it (train,
// data, eval, export), so all handle a bad file alike: the YAML file at path
// with the command-line overrides in flags applied; unknown keys are an
// error naming each with its line and the closest known key (a misspelt key
// would otherwise fall back to its default silently), unless
// ALLOW_EXTRA_ARGS is set; then they, and keys gotune accepts without
// effect, are written to notes.
func Open(path string, flags []string, notes io.Writer) (*Config, error) {
	c, err := Load(path)
	if err != nil {
		return nil, err
	}
	if len(c.src.unknown) > 0 {
		switch strings.ToLower(os.Getenv(AllowExtraEnv)) {
		case "1", "true", "yes":
		default:
			return nil, fmt.Errorf("%s: unknown keys: %s (set %s=1 to ignore unknown keys, as in LLaMA-Factory)", path, strings.Join(c.src.unknown, ", "), AllowExtraEnv)
		}
	}
	if err := c.ApplyFlags(flags); err != nil {
		return nil, err
	}
	if notes != nil {
		for _, w := range c.Warnings {
			fmt.Fprintln(notes, "warning:", w)
		}
	}
	return c, nil
}

// Load reads the YAML file at path over the defaults. Unknown keys are
// only Warnings here; commands read files with Open.
func Load(path string) (*Config, error) {
	b, err := safefile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(b, path)
}

// Parse reads YAML over the defaults; name (the file name) is used in
// messages. Unknown keys become Warnings; a value of the wrong type is an
// error naming the file, line and key.
func Parse(data []byte, name string) (*Config, error) {
	c := Default()
	c.src.file = name
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return c, nil // empty file: defaults
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: expected a mapping of key: value lines at the top level, got %s", name, root.Line, kindName(root))
	}
	first := map[string]int{}
	var unknown, ignored []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := k.Value
		if line, dup := first[key]; dup {
			return nil, fmt.Errorf("%s:%d: key %q appears again (first at line %d)", name, k.Line, key, line)
		}
		first[key] = k.Line
		if _, ok := fieldIndex()[key]; !ok {
			if slices.Contains(ignoredKeys, key) {
				ignored = append(ignored, key)
			} else {
				unknown = append(unknown, fmt.Sprintf("%s (line %d%s)", key, k.Line, suggest(key)))
			}
			continue
		}
		if err := c.set(key, v); err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", name, v.Line, key, err)
		}
		c.src.line[key] = k.Line
	}
	c.src.unknown = unknown
	if len(unknown) > 0 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s: ignoring unknown keys: %s", name, strings.Join(unknown, ", ")))
	}
	if len(ignored) > 0 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s: keys with no effect in gotune: %s", name, strings.Join(ignored, ", ")))
	}
	return c, nil
}

// ApplyFlags overrides keys from command-line arguments: "--key value",
// "--key=value" or "key=value" (LLaMA-Factory's CLI style); dashes in keys
// may stand for underscores. A boolean flag without a value means true.
// Unknown keys are errors here: a typo on the command line is never
// intended.
func (c *Config) ApplyFlags(args []string) error {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		var key, val string
		hasVal := false
		switch {
		case strings.HasPrefix(arg, "--"):
			key, val, hasVal = strings.Cut(arg[2:], "=")
		case strings.Contains(arg, "=") && !strings.HasPrefix(arg, "-"):
			key, val, hasVal = strings.Cut(arg, "=")
		default:
			return fmt.Errorf("command line: unexpected argument %q; want --key value, --key=value or key=value", arg)
		}
		key = strings.ReplaceAll(key, "-", "_")
		idx, ok := fieldIndex()[key]
		if !ok {
			return fmt.Errorf("command line: unknown option --%s%s", key, suggest(key))
		}
		if !hasVal {
			ft := reflect.TypeFor[Config]().FieldByIndex(idx).Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			isBool := ft.Kind() == reflect.Bool
			next := i+1 < len(args) && !strings.HasPrefix(args[i+1], "--")
			switch {
			case isBool && (!next || !isBoolWord(args[i+1])):
				val = "true"
			case next:
				i++
				val = args[i]
			default:
				return fmt.Errorf("command line: --%s needs a value", key)
			}
		}
		if err := c.Set(key, val); err != nil {
			return err
		}
	}
	return nil
}

func isBoolWord(s string) bool {
	_, err := parseBool(s)
	return err == nil
}

// Set assigns one key from its text form, as a command-line flag does.
// "none" or "null" clears an optional setting.
func (c *Config) Set(key, value string) error {
	if _, ok := fieldIndex()[key]; !ok {
		return fmt.Errorf("command line: unknown option --%s%s", key, suggest(key))
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}
	// "none" clears optional settings, but is an ordinary word for string
	// keys (progress: none).
	ft := reflect.TypeFor[Config]().FieldByIndex(fieldIndex()[key]).Type
	if v := strings.ToLower(value); (v == "none" || v == "null" || v == "~") && ft.Kind() != reflect.String {
		n.Tag = "!!null"
	}
	if err := c.set(key, n); err != nil {
		return fmt.Errorf("command line: --%s %s: %w", key, value, err)
	}
	if c.src.flags == nil {
		c.src.flags = map[string]bool{}
	}
	c.src.flags[key] = true
	return nil
}

// set decodes node into the field for key.
func (c *Config) set(key string, n *yaml.Node) error {
	if c.src.line == nil {
		c.src.line = map[string]int{}
	}
	f := reflect.ValueOf(c).Elem().FieldByIndex(fieldIndex()[key])
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	isNull := n.Kind == yaml.ScalarNode && n.Tag == "!!null"
	switch f.Kind() {
	case reflect.Pointer:
		if isNull {
			f.SetZero()
			return nil
		}
		v := reflect.New(f.Type().Elem())
		if err := setValue(v.Elem(), n); err != nil {
			return err
		}
		f.Set(v)
		return nil
	case reflect.Slice, reflect.Map, reflect.String:
		if isNull {
			f.SetZero()
			return nil
		}
	}
	if isNull {
		return fmt.Errorf("expected %s, got null", typeName(f.Type()))
	}
	return setValue(f, n)
}

func setValue(f reflect.Value, n *yaml.Node) error {
	// A structured value (reward_funcs) reads itself.
	if f.CanAddr() {
		if u, ok := f.Addr().Interface().(yaml.Unmarshaler); ok {
			return u.UnmarshalYAML(n)
		}
	}
	switch f.Kind() {
	case reflect.Slice:
		return setList(f, n)
	case reflect.Map:
		return setMap(f, n)
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected %s, got %s", typeName(f.Type()), kindName(n))
	}
	return setScalar(f, n)
}

// setScalar converts a scalar leniently where LLaMA-Factory users rely on it:
// numbers may be quoted ("1e-4"), integers may be written as 1000.0 or 1e3.
func setScalar(f reflect.Value, n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	wrong := func() error {
		return fmt.Errorf("expected %s, got %s %q", typeName(f.Type()), kindName(n), n.Value)
	}
	switch f.Kind() {
	case reflect.String:
		if n.Tag == "!!map" || n.Tag == "!!seq" {
			return wrong()
		}
		f.SetString(n.Value)
	case reflect.Bool:
		b, err := parseBool(s)
		if err != nil || n.Tag == "!!int" || n.Tag == "!!float" {
			return wrong()
		}
		f.SetBool(b)
	case reflect.Int:
		if n.Tag == "!!bool" {
			return wrong()
		}
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			f.SetInt(i)
			return nil
		}
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || x != math.Trunc(x) || math.Abs(x) > 1<<53 {
			return wrong()
		}
		f.SetInt(int64(x))
	case reflect.Float64:
		if n.Tag == "!!bool" {
			return wrong()
		}
		x, err := parseFloat(s)
		if err != nil {
			return wrong()
		}
		f.SetFloat(x)
	default:
		return fmt.Errorf("unsupported field type %s", f.Type())
	}
	return nil
}

func parseFloat(s string) (float64, error) {
	switch strings.ToLower(s) {
	case ".nan":
		return math.NaN(), nil
	case ".inf", "+.inf":
		return math.Inf(1), nil
	case "-.inf":
		return math.Inf(-1), nil
	}
	return strconv.ParseFloat(s, 64)
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, errors.New("not a boolean")
}

// setList accepts a YAML sequence or LLaMA-Factory's comma-separated string.
func setList(f reflect.Value, n *yaml.Node) error {
	var items []*yaml.Node
	switch n.Kind {
	case yaml.SequenceNode:
		items = n.Content
	case yaml.ScalarNode:
		for part := range strings.SplitSeq(n.Value, ",") {
			if part = strings.TrimSpace(part); part != "" {
				items = append(items, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: part, Line: n.Line})
			}
		}
	default:
		return fmt.Errorf("expected %s, got %s", typeName(f.Type()), kindName(n))
	}
	out := reflect.MakeSlice(f.Type(), len(items), len(items))
	for i, it := range items {
		if it.Kind != yaml.ScalarNode {
			return fmt.Errorf("item %d: expected %s, got %s", i+1, typeName(f.Type().Elem()), kindName(it))
		}
		if err := setScalar(out.Index(i), it); err != nil {
			return fmt.Errorf("item %d: %w", i+1, err)
		}
	}
	f.Set(out)
	return nil
}

// setMap accepts a YAML mapping or a JSON object in a string (as the
// Hugging Face CLI takes lr_scheduler_kwargs).
func setMap(f reflect.Value, n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var inner yaml.Node
		if err := yaml.Unmarshal([]byte(n.Value), &inner); err != nil || len(inner.Content) == 0 {
			return fmt.Errorf("expected a mapping, got %q", n.Value)
		}
		n = inner.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("expected a mapping, got %s", kindName(n))
	}
	m := reflect.MakeMap(f.Type())
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		val := reflect.New(f.Type().Elem()).Elem()
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: expected %s, got %s", k.Value, typeName(val.Type()), kindName(v))
		}
		if err := setScalar(val, v); err != nil {
			return fmt.Errorf("%s: %w", k.Value, err)
		}
		m.SetMapIndex(reflect.ValueOf(k.Value), val)
	}
	f.Set(m)
	return nil
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a list or comma-separated string of " + strings.TrimPrefix(strings.TrimPrefix(typeName(t.Elem()), "a "), "an ") + "s"
	case reflect.Map:
		return "a mapping"
	}
	return t.String()
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!str":
		return "string"
	case "!!int":
		return "integer"
	case "!!float":
		return "number"
	case "!!bool":
		return "boolean"
	case "!!null":
		return "null"
	}
	return "value"
}

// suggest offers the closest known key for a likely typo.
func suggest(key string) string {
	best, bestD := "", 3
	for k := range fieldIndex() {
		if d := editDistance(key, k); d < bestD || (d == bestD && best != "" && k < best) {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %s?", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Where names the origin of key for messages: "file:line: key", or
// "--key" when it came from the command line, or just the key (a default).
func (c *Config) Where(key string) string {
	if c.src.flags[key] {
		return "command line: --" + key
	}
	if line, ok := c.src.line[key]; ok && c.src.file != "" {
		return fmt.Sprintf("%s:%d: %s", c.src.file, line, key)
	}
	if c.src.file != "" {
		return fmt.Sprintf("%s: %s", c.src.file, key)
	}
	return key
}
