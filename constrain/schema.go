// Package constrain is constrained decoding: a byte-level recogniser for
// JSON, JSON that matches a JSON schema, and tool calls written in a model's
// format, and a token mask built from it, so that a sampler can only pick
// tokens that keep the output inside the grammar.
//
// The recogniser is a pushdown automaton over bytes whose stack frames are
// immutable and shared: stepping a byte makes a new top frame (or reuses
// the same one when nothing changes) and never copies the stack. That lets
// the mask walk every token of a vocabulary from the same state cheaply,
// and lets a state serve as a cache key for the set of tokens it allows.
package constrain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

type kind uint8

const (
	kAny     kind = iota // any JSON value
	kObject              // props, required, additional
	kArray               // items (nil: any value), minItems
	kString              // any string
	kNumber              // any number
	kInteger             // a number without fraction or exponent
	kLiteral             // one of lits (enum, const, true/false/null)
	kAnyOf               // one of alts
)

// Node is a compiled schema: the set of JSON values the recogniser accepts
// at one place.
type Node struct {
	kind kind
	id   int32 // unique within a grammar: part of the cache key

	props      []prop
	required   uint64 // bit i: props[i] is required
	additional *Node  // value schema of undeclared keys; nil: none allowed
	items      *Node
	minItems   int
	maxItems   int      // 0: no bound
	lits       []string // canonical compact JSON texts
	alts       []*Node
}

type prop struct {
	key  string // the name as it appears between the quotes (JSON-escaped)
	node *Node
}

// maxProps bounds the declared properties of one object and the values of
// one enum: their sets are tracked as 64-bit masks.
const maxProps = 64

// SchemaError is a schema the recogniser cannot enforce, with the place
// (a JSON pointer into the schema) and the keyword.
type SchemaError struct {
	Path    string
	Keyword string
	Msg     string
}

func (e *SchemaError) Error() string {
	p := e.Path
	if p == "" {
		p = "/"
	}
	if e.Keyword != "" {
		return fmt.Sprintf("schema %s: keyword %q: %s", p, e.Keyword, e.Msg)
	}
	return fmt.Sprintf("schema %s: %s", p, e.Msg)
}

// annotations are keywords that describe a value without constraining it:
// ignoring them changes nothing about which outputs are valid.
var annotations = map[string]bool{
	"title": true, "description": true, "$comment": true, "examples": true,
	"default": true, "$schema": true, "$id": true, "deprecated": true,
	"readOnly": true, "writeOnly": true,
}

// AnyJSON returns the node for any JSON value.
func AnyJSON() *Node { return &Node{kind: kAny} }

// AnyObject returns the node for any JSON object (OpenAI's json_object).
func AnyObject() *Node { return &Node{kind: kObject, additional: AnyJSON()} }

// CompileSchema compiles a JSON schema. Every keyword it does not enforce is
// an error naming it, rather than a constraint silently dropped.
func CompileSchema(raw json.RawMessage) (*Node, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, &SchemaError{Msg: fmt.Sprintf("not valid JSON: %v", err)}
	}
	c := &compiler{root: v, refs: map[string]*Node{}}
	return c.compile(v, "")
}

// compiler holds the schema's root, for local references (#/$defs/...),
// and the nodes made for references so far: a recursive schema (a tree)
// becomes a node graph with a cycle, which the recogniser follows lazily.
type compiler struct {
	root any
	refs map[string]*Node
}

// ref compiles a local reference: "#", "#/$defs/Name", "#/definitions/Name"
// or any JSON pointer into the schema.
func (c *compiler) ref(ref any, s map[string]any, path string) (*Node, error) {
	r, ok := ref.(string)
	if !ok || !strings.HasPrefix(r, "#") {
		return nil, &SchemaError{Path: path, Keyword: "$ref", Msg: "only local references (\"#/$defs/Name\") are supported"}
	}
	for k := range s {
		if k != "$ref" && !annotations[k] {
			return nil, &SchemaError{Path: path, Keyword: k, Msg: "keywords beside $ref are not supported; wrap them in anyOf"}
		}
	}
	if n, ok := c.refs[r]; ok {
		return n, nil
	}
	target := c.root
	for _, tok := range strings.Split(strings.TrimPrefix(r, "#"), "/")[1:] {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := target.(map[string]any)
		if !ok {
			return nil, &SchemaError{Path: path, Keyword: "$ref", Msg: fmt.Sprintf("%q does not point into the schema", r)}
		}
		if target, ok = m[tok]; !ok {
			return nil, &SchemaError{Path: path, Keyword: "$ref", Msg: fmt.Sprintf("%q does not point into the schema", r)}
		}
	}
	// The node exists before its definition is compiled, so a definition
	// that refers to itself gets this node.
	n := &Node{kind: kAnyOf} // no alternatives: matches nothing until defined
	c.refs[r] = n
	def, err := c.compile(target, strings.TrimPrefix(r, "#"))
	if err != nil {
		return nil, err
	}
	if def.kind == kAnyOf && def.alts == nil {
		return nil, &SchemaError{Path: path, Keyword: "$ref", Msg: fmt.Sprintf("%q refers to itself without a value in between", r)}
	}
	*n = *def
	return n, nil
}

func (c *compiler) compile(v any, path string) (*Node, error) {
	switch s := v.(type) {
	case bool:
		if s {
			return AnyJSON(), nil
		}
		return nil, &SchemaError{Path: path, Msg: "the schema false accepts no value"}
	case map[string]any:
		return c.compileObject(s, path)
	}
	return nil, &SchemaError{Path: path, Msg: "a schema must be an object or a boolean"}
}

func (c *compiler) compileObject(s map[string]any, path string) (*Node, error) {
	if r, ok := s["$ref"]; ok {
		return c.ref(r, s, path)
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first unsupported keyword named is stable
	// $defs/definitions only hold schemas for $ref: compiled when referred to.
	known := map[string]bool{"type": true, "properties": true, "required": true,
		"additionalProperties": true, "items": true, "enum": true, "const": true,
		"anyOf": true, "oneOf": true, "$defs": true, "definitions": true,
		"minItems": true, "maxItems": true}
	for _, k := range keys {
		if !known[k] && !annotations[k] {
			return nil, &SchemaError{Path: path, Keyword: k, Msg: "not supported by constrained decoding"}
		}
	}
	// Each keyword narrows the set of values; several keywords at once are
	// combined by building the node for each and intersecting where that is
	// simple. The combinations that are not simple are refused.
	var parts []*Node
	if e, ok := s["enum"]; ok {
		list, ok := e.([]any)
		if !ok || len(list) == 0 {
			return nil, &SchemaError{Path: path, Keyword: "enum", Msg: "must be a non-empty array"}
		}
		n, err := literals(list, path, "enum")
		if err != nil {
			return nil, err
		}
		parts = append(parts, n)
	}
	if c, ok := s["const"]; ok {
		n, err := literals([]any{c}, path, "const")
		if err != nil {
			return nil, err
		}
		parts = append(parts, n)
	}
	typed, err := c.compileTyped(s, path)
	if err != nil {
		return nil, err
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		a, ok := s[kw]
		if !ok {
			continue
		}
		list, ok := a.([]any)
		if !ok || len(list) == 0 {
			return nil, &SchemaError{Path: path, Keyword: kw, Msg: "must be a non-empty array of schemas"}
		}
		alt := &Node{kind: kAnyOf}
		for i, sub := range list {
			n, err := c.compile(sub, fmt.Sprintf("%s/%s/%d", path, kw, i))
			if err != nil {
				return nil, err
			}
			alt.alts = append(alt.alts, n)
		}
		parts = append(parts, alt)
	}
	if typed != nil {
		parts = append(parts, typed)
	}
	switch len(parts) {
	case 0:
		return AnyJSON(), nil
	case 1:
		return parts[0], nil
	}
	// enum/const next to type: the literals already say everything, as
	// long as each of them has the type; keep those that do.
	if parts[0].kind == kLiteral && len(parts) == 2 && parts[1] == typed {
		return filterLiterals(parts[0], typed, path)
	}
	return nil, &SchemaError{Path: path, Keyword: keys[0],
		Msg: "combining enum/const, anyOf/oneOf and other keywords in one schema is not supported; nest them in anyOf"}
}

// compileTyped handles type and the keywords that depend on it; nil when
// the schema has none of them.
func (c *compiler) compileTyped(s map[string]any, path string) (*Node, error) {
	t, hasType := s["type"]
	var types []string
	switch tv := t.(type) {
	case nil:
		if hasType {
			return nil, &SchemaError{Path: path, Keyword: "type", Msg: "must be a string or an array of strings"}
		}
	case string:
		types = []string{tv}
	case []any:
		for _, x := range tv {
			str, ok := x.(string)
			if !ok {
				return nil, &SchemaError{Path: path, Keyword: "type", Msg: "must be a string or an array of strings"}
			}
			types = append(types, str)
		}
		if len(types) == 0 {
			return nil, &SchemaError{Path: path, Keyword: "type", Msg: "an empty list of types accepts no value"}
		}
	default:
		return nil, &SchemaError{Path: path, Keyword: "type", Msg: "must be a string or an array of strings"}
	}
	_, hasProps := s["properties"]
	_, hasReq := s["required"]
	_, hasAdd := s["additionalProperties"]
	hasItems, arrayKW := false, ""
	for _, kw := range []string{"items", "maxItems", "minItems"} {
		if _, ok := s[kw]; ok && !hasItems {
			hasItems, arrayKW = true, kw
		}
	}
	objectish := hasProps || hasReq || hasAdd
	if !hasType {
		// Without type, properties/items still say what an object or array
		// must hold; we only produce objects (arrays) then, a subset of
		// what the schema allows.
		switch {
		case objectish && hasItems:
			return nil, &SchemaError{Path: path, Keyword: arrayKW, Msg: "array and object keywords without \"type\" are not supported"}
		case objectish:
			types = []string{"object"}
		case hasItems:
			types = []string{"array"}
		default:
			return nil, nil
		}
	}
	var alts []*Node
	for _, ty := range types {
		var n *Node
		var err error
		switch ty {
		case "object":
			n, err = c.compileProps(s, path)
		case "array":
			n = &Node{kind: kArray}
			if it, ok := s["items"]; ok {
				if n.items, err = c.compile(it, path+"/items"); err != nil {
					return nil, err
				}
			}
			if n.minItems, err = count(s, "minItems", path); err != nil {
				return nil, err
			}
			if n.maxItems, err = count(s, "maxItems", path); err != nil {
				return nil, err
			}
			if _, ok := s["maxItems"]; ok && n.maxItems < max(n.minItems, 1) {
				return nil, &SchemaError{Path: path, Keyword: "maxItems", Msg: "must be at least 1 and at least minItems"}
			}
		case "string":
			n = &Node{kind: kString}
		case "number":
			n = &Node{kind: kNumber}
		case "integer":
			n = &Node{kind: kInteger}
		case "boolean":
			n = &Node{kind: kLiteral, lits: []string{"true", "false"}}
		case "null":
			n = &Node{kind: kLiteral, lits: []string{"null"}}
		default:
			return nil, &SchemaError{Path: path, Keyword: "type", Msg: fmt.Sprintf("unknown type %q", ty)}
		}
		if err != nil {
			return nil, err
		}
		alts = append(alts, n)
	}
	if objectish && !contains(types, "object") {
		return nil, &SchemaError{Path: path, Keyword: "properties", Msg: "object keywords on a schema whose type is not object"}
	}
	if hasItems && !contains(types, "array") {
		return nil, &SchemaError{Path: path, Keyword: arrayKW, Msg: "an array keyword on a schema whose type is not array"}
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return &Node{kind: kAnyOf, alts: alts}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (c *compiler) compileProps(s map[string]any, path string) (*Node, error) {
	n := &Node{kind: kObject, additional: AnyJSON()}
	if p, ok := s["properties"]; ok {
		m, ok := p.(map[string]any)
		if !ok {
			return nil, &SchemaError{Path: path, Keyword: "properties", Msg: "must be an object"}
		}
		if len(m) > maxProps {
			return nil, &SchemaError{Path: path, Keyword: "properties", Msg: fmt.Sprintf("at most %d properties are supported, got %d", maxProps, len(m))}
		}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			sub, err := c.compile(m[k], path+"/properties/"+pointerEscape(k))
			if err != nil {
				return nil, err
			}
			n.props = append(n.props, prop{key: escapeKey(k), node: sub})
		}
	}
	if a, ok := s["additionalProperties"]; ok {
		switch av := a.(type) {
		case bool:
			if !av {
				n.additional = nil
			}
		case map[string]any:
			sub, err := c.compile(av, path+"/additionalProperties")
			if err != nil {
				return nil, err
			}
			n.additional = sub
		default:
			return nil, &SchemaError{Path: path, Keyword: "additionalProperties", Msg: "must be a boolean or a schema"}
		}
	}
	if r, ok := s["required"]; ok {
		list, ok := r.([]any)
		if !ok {
			return nil, &SchemaError{Path: path, Keyword: "required", Msg: "must be an array of strings"}
		}
		for _, x := range list {
			name, ok := x.(string)
			if !ok {
				return nil, &SchemaError{Path: path, Keyword: "required", Msg: "must be an array of strings"}
			}
			i := n.propIndex(escapeKey(name))
			if i < 0 {
				// A required key without a declared schema: declare it with
				// the schema undeclared keys get, so the recogniser can
				// insist on it.
				if n.additional == nil || len(n.props) >= maxProps {
					return nil, &SchemaError{Path: path, Keyword: "required", Msg: fmt.Sprintf("%q is required but not among the properties", name)}
				}
				n.props = append(n.props, prop{key: escapeKey(name), node: n.additional})
				i = len(n.props) - 1
			}
			n.required |= 1 << i
		}
	}
	return n, nil
}

func (n *Node) propIndex(key string) int {
	for i, p := range n.props {
		if p.key == key {
			return i
		}
	}
	return -1
}

func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// escapeKey is a property name as the recogniser expects it between the
// quotes: the canonical JSON escape of the string.
func escapeKey(k string) string {
	b := canonical(k)
	return b[1 : len(b)-1]
}

// canonical is v as compact JSON without HTML escaping: the one spelling of
// an enum or const value the recogniser lets the model write.
func canonical(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func literals(list []any, path, kw string) (*Node, error) {
	if len(list) > maxProps {
		return nil, &SchemaError{Path: path, Keyword: kw, Msg: fmt.Sprintf("at most %d values are supported, got %d", maxProps, len(list))}
	}
	n := &Node{kind: kLiteral}
	seen := map[string]bool{}
	for _, x := range list {
		c := canonical(x)
		if c == "" {
			return nil, &SchemaError{Path: path, Keyword: kw, Msg: "value cannot be written as JSON"}
		}
		if !seen[c] {
			seen[c] = true
			n.lits = append(n.lits, c)
		}
	}
	return n, nil
}

// filterLiterals keeps the enum/const values that the type next to them
// also accepts.
func filterLiterals(lit, typed *Node, path string) (*Node, error) {
	out := &Node{kind: kLiteral}
	for _, l := range lit.lits {
		if Accepts(typed, l) {
			out.lits = append(out.lits, l)
		}
	}
	if len(out.lits) == 0 {
		return nil, &SchemaError{Path: path, Keyword: "enum", Msg: "no value of enum/const has the schema's type"}
	}
	return out, nil
}

// Accepts reports whether text is a complete JSON value that n accepts.
func Accepts(n *Node, text string) bool {
	g := Value(n)
	s := g.Start()
	for i := 0; i < len(text); i++ {
		if s = s.Step(text[i]); s.Dead() {
			return false
		}
	}
	return s.Complete()
}

// ToolCall is the node of one call of the tool name in a model's format:
// {"name": "<name>", "<argKey>": <arguments matching params>}, both keys
// required and no other; params nil accepts any object.
func ToolCall(name string, params *Node, argKey string) *Node {
	if params == nil {
		params = AnyObject()
	}
	return &Node{kind: kObject, required: 3, props: []prop{
		{key: "name", node: &Node{kind: kLiteral, lits: []string{canonical(name)}}},
		{key: escapeKey(argKey), node: params},
	}}
}

// AnyOf is a node accepting what any of nodes accepts.
func AnyOf(nodes ...*Node) *Node {
	if len(nodes) == 1 {
		return nodes[0]
	}
	return &Node{kind: kAnyOf, alts: nodes}
}

// ArrayOf is an array of minItems to maxItems values of items (maxItems
// 0: no upper bound).
func ArrayOf(items *Node, minItems, maxItems int) *Node {
	return &Node{kind: kArray, items: items, minItems: minItems, maxItems: maxItems}
}

// maxCount bounds minItems and maxItems: the recogniser counts items.
const maxCount = 1 << 16

// count reads a non-negative integer keyword; 0 when absent.
func count(s map[string]any, kw, path string) (int, error) {
	v, ok := s[kw]
	if !ok {
		return 0, nil
	}
	num, ok := v.(json.Number)
	if !ok {
		return 0, &SchemaError{Path: path, Keyword: kw, Msg: "must be a non-negative integer"}
	}
	i, err := num.Int64()
	if err != nil || i < 0 || i > maxCount {
		return 0, &SchemaError{Path: path, Keyword: kw, Msg: fmt.Sprintf("must be an integer from 0 to %d", maxCount)}
	}
	return int(i), nil
}
