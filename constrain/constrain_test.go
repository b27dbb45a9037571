package constrain

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func mustSchema(t *testing.T, s string) *Node {
	t.Helper()
	n, err := CompileSchema(json.RawMessage(s))
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return n
}

// prefix: every byte keeps the state alive; complete: it may end there.
func check(g *Grammar, text string) (prefix, complete bool) {
	s := g.Start()
	for i := 0; i < len(text); i++ {
		if s = s.Step(text[i]); s.Dead() {
			return false, false
		}
	}
	return true, s.Complete()
}

func TestRecogniser(t *testing.T) {
	person := `{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
		"tags":{"type":"array","items":{"enum":["a","b"]}},"ok":{"type":"boolean"},"x":{"type":["number","null"]}},
		"required":["name","age"],"additionalProperties":false}`
	pydantic := `{"$defs":{"Node":{"type":"object","title":"Node","properties":{"name":{"type":"string","title":"Name"},
		"kids":{"type":"array","items":{"$ref":"#/$defs/Node"}}},"required":["name","kids"],"additionalProperties":false},
		"Pet":{"properties":{"kind":{"enum":["cat","dog"],"type":"string"}},"required":["kind"],"type":"object"}},
		"type":"object","properties":{"name":{"type":"string"},"kids":{"type":"array","items":{"$ref":"#/$defs/Node"}},
		"pet":{"anyOf":[{"$ref":"#/$defs/Pet"},{"type":"null"}],"default":null}},"required":["name","kids"],"additionalProperties":false}`
	tests := []struct {
		schema string // "" any JSON object (json_object)
		text   string
		prefix bool
		done   bool
	}{
		{"", `{}`, true, true},
		{"", ` {"a": [1, -2.5e3, true, null, "x\u00e9\n"], "b": {"c": {}}}`, true, true},
		{"", `{"a": 1`, true, false},
		{"", `{"a" 1}`, false, false},
		{"", `[1]`, false, false}, // json_object: an object
		{"", `{"a": 01}`, false, false},
		{"", `{"a": 1.}`, false, false},
		{"", `{"a": tru`, true, false},
		{"", `{"a": True}`, false, false},
		{"", `{"a": "` + "\x01" + `"}`, false, false},
		{"", `{"a": "\q"}`, false, false},
		{"", `{"a": "\u12g4"}`, false, false},
		{"", "{\"a\": \"\xc3\xa9\"}", true, true},
		{"", "{\"a\": \"\xc3(\"}", false, false},
		{"", "{\"a\": \"\xed\xa0\x80\"}", false, false}, // a surrogate in UTF-8
		{"", `{} `, false, false},                       // nothing after the value
		{"", `{"a": 1234567890123456}`, false, false},   // 16 digits
		{"", `{"a": 123456789012345}`, true, true},
		{person, `{"name": "Ann", "age": 3}`, true, true},
		{person, `{"age": 3, "name": "Ann", "ok": false, "tags": ["a", "b"], "x": null}`, true, true},
		{person, `{"name": "Ann"}`, false, false}, // age is required
		{person, `{"name": "Ann", "age": 3.5}`, false, false},
		{person, `{"name": "Ann", "age": 3, "extra": 1}`, false, false},
		{person, `{"name": "Ann", "name": "Bob"}`, false, false},
		{person, `{"name": "Ann", "age": 3, "tags": ["c"]}`, false, false},
		{person, `{"name": 5}`, false, false},
		{person, `{"nam`, true, false},
		{person, `{"na"`, false, false},
		{person, `{"x": 1e5, "name": "", "age": -0}`, true, true},
		{`{"type":"object","properties":{"a":{"type":"integer"}}}`, `{"b": "free", "a": 1}`, true, true},
		{`{"type":"object","properties":{"a":{"type":"integer"}}}`, `{"a": 1, "a": 2}`, false, false},
		{`{"type":"object","properties":{"a":{"type":"integer"}}}`, `{"a": "x"}`, false, false},
		{`{"enum":[1,12,"x"]}`, `12`, true, true},
		{`{"enum":[1,12,"x"]}`, `1`, true, true},
		{`{"enum":[1,12,"x"]}`, `13`, false, false},
		{`{"const":{"k":[1,2]}}`, `{"k":[1,2]}`, true, true},
		{`{"anyOf":[{"type":"string"},{"type":"array","items":{"type":"integer"}}]}`, `[1, 2]`, true, true},
		{`{"anyOf":[{"type":"string"},{"type":"array","items":{"type":"integer"}}]}`, `["a"]`, false, false},
		{`{"oneOf":[{"type":"object","properties":{"a":{"const":1}},"required":["a"],"additionalProperties":false},
			{"type":"object","properties":{"b":{"const":2}},"required":["b"],"additionalProperties":false}]}`, `{"b": 2}`, true, true},
		{`{"oneOf":[{"type":"object","properties":{"a":{"const":1}},"required":["a"],"additionalProperties":false},
			{"type":"object","properties":{"b":{"const":2}},"required":["b"],"additionalProperties":false}]}`, `{"b": 1}`, false, false},
		{`{"type":"number"}`, `-0.5E+10`, true, true},
		{`{"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":2}`, `[]`, false, false},
		{`{"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":2}`, `[1, 2]`, true, true},
		{`{"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":2}`, `[1, 2,`, false, false},
		{`{"type":"array","minItems":2}`, `[1, "a"]`, true, true},
		{`{"type":"array","minItems":2}`, `[1]`, false, false},
		// As pydantic writes nested and recursive models: $defs and $ref.
		{pydantic, `{"name": "root", "kids": [{"name": "a", "kids": []}], "pet": {"kind": "cat"}}`, true, true},
		{pydantic, `{"name": "root", "kids": [{"name": "a", "kids": [{"kids": []}]}], "pet": null}`, false, false},
		{pydantic, `{"name": "root", "kids": [], "pet": {"kind": "cow"}}`, false, false},
		{`{"type":"string","enum":["a",1]}`, `1`, false, false},
	}
	for _, tc := range tests {
		n := AnyObject()
		if tc.schema != "" {
			n = mustSchema(t, tc.schema)
		}
		prefix, done := check(Value(n), tc.text)
		if prefix != tc.prefix || done != tc.done {
			t.Errorf("schema %.40s text %q: prefix %v complete %v, want %v %v", tc.schema, tc.text, prefix, done, tc.prefix, tc.done)
		}
	}
}

func TestSchemaRefused(t *testing.T) {
	tests := map[string]string{
		`{"type":"string","pattern":"^a"}`:                                       "pattern",
		`{"type":"object","properties":{"a":{"type":"string","format":"date"}}}`: "format",
		`{"$ref":"#/$defs/x"}`:                                                   "$ref",
		`{"type":"array","items":{"type":"integer","minimum":1}}`:                "minimum",
		`{"type":"frog"}`:                                                        "type",
		`{"allOf":[]}`:                                                           "allOf",
	}
	for s, kw := range tests {
		_, err := CompileSchema(json.RawMessage(s))
		var se *SchemaError
		if !errors.As(err, &se) || se.Keyword != kw {
			t.Errorf("%s: %v, want an error naming %q", s, err, kw)
		}
	}
	if _, err := CompileSchema(json.RawMessage(`{"type":"object","title":"t","description":"d","properties":{}}`)); err != nil {
		t.Errorf("annotations refused: %v", err)
	}
}

func TestToolGrammar(t *testing.T) {
	call := &Node{kind: kAnyOf, alts: []*Node{
		callNode("get_weather", mustSchema(t, `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`), "arguments"),
		callNode("noop", nil, "arguments"),
	}}
	g := NewGrammar([]Item{WS(), Lit("<tool_call>"), WS(), Val(call), WS(), Lit("</tool_call>")},
		[]Item{WS(), Lit("<tool_call>"), WS(), Val(call), WS(), Lit("</tool_call>")})
	ok := "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
	for _, tc := range []struct {
		text         string
		prefix, done bool
	}{
		{ok, true, true},
		{ok + "\n", true, true},
		{ok + "\n<tool_call>\n{\"name\": \"noop\", \"arguments\": {}}\n</tool_call>", true, true},
		{ok + "\n<tool_call>", true, false},
		{"<tool_call>\n{\"name\": \"get_time\"", false, false},
		{"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}", false, false}, // city required
		{"Sure! <tool_call>", false, false},
		{"", true, false},
	} {
		prefix, done := check(g, tc.text)
		if prefix != tc.prefix || done != tc.done {
			t.Errorf("%q: prefix %v complete %v, want %v %v", tc.text, prefix, done, tc.prefix, tc.done)
		}
	}
}

func callNode(name string, params *Node, argKey string) *Node {
	return ToolCall(name, params, argKey)
}

// A tiny vocabulary: greedy decoding under the mask, with logits that
// prefer tokens the grammar forbids, still gives a valid value.
func TestMaskTinyVocab(t *testing.T) {
	toks := []string{"<eos>", "{", "}", "\"", "a", "\"a\"", ":", " ", "1", "x", "{\"", "\":", ",", "]", "true"}
	v := NewVocab(len(toks), func(id int) ([]byte, bool) {
		if id == 0 {
			return nil, false // special: stops are handled apart
		}
		return []byte(toks[id]), true
	})
	n := mustSchema(t, `{"type":"object","properties":{"a":{"type":"boolean"}},"required":["a"],"additionalProperties":false}`)
	m := NewMatcher(Value(n), v, []int32{0})
	var out strings.Builder
	for step := 0; step < 60; step++ {
		if m.Final() {
			break
		}
		logits := make([]float32, len(toks)+3) // a padded model vocabulary
		for i := range logits {
			logits[i] = float32(i % 7)
		}
		logits[9], logits[0], logits[len(toks)+1] = 100, 90, 200 // "x", <eos>, a padding id
		if err := m.Mask(logits); err != nil {
			t.Fatal(err)
		}
		best := 0
		for i, l := range logits {
			if l > logits[best] {
				best = i
			}
		}
		if math.IsInf(float64(logits[best]), -1) {
			t.Fatal("every token masked")
		}
		if best == 0 {
			break
		}
		if err := m.Accept(int32(best)); err != nil {
			t.Fatal(err)
		}
		out.WriteString(toks[best])
	}
	var v2 map[string]bool
	if err := json.Unmarshal([]byte(out.String()), &v2); err != nil || len(v2) != 1 {
		t.Fatalf("output %q: %v", out.String(), err)
	}
	// Allowed at the start: "{", "{\"" and " " only.
	m = NewMatcher(Value(n), v, []int32{0})
	a := m.Allowed()
	var got []string
	for id := range toks {
		if a[id/64]&(1<<(id%64)) != 0 {
			got = append(got, toks[id])
		}
	}
	if strings.Join(got, "|") != `{| |{"` {
		t.Errorf("allowed at the start: %q", got)
	}
}
