package chat

import (
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func mustParse(t *testing.T, src string) *Template {
	t.Helper()
	tm, err := Parse("test", src)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func msgs(t *testing.T, js string) []Message {
	t.Helper()
	m, err := ParseMessages(json.RawMessage(js))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Whitespace and value formatting cases whose jinja2 output is known.
func TestJinja2Semantics(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"trim_blocks", "{% if true %}\nA\n{% endif %}\nB", "A\nB"},
		{"lstrip_blocks", "x\n    {% if true %}y{% endif %}\n", "x\ny"},
		{"lstrip only at line start", "a {% if true %}b{% endif %}", "a b"},
		{"trim_blocks not after expression", "{% if true %}{{ 'v' }}\n{% endif %}", "v\n"},
		{"dash strips before", "a  \n  {%- if true %}b{% endif %}", "ab"},
		{"dash does not reach past expression", "a {{ 'x' }}{%- if true %}b{% endif %}", "a xb"},
		{"plus disables lstrip", "x\n  {%+ if true %}y{% endif %}", "x\n  y"},
		{"trailing newline dropped", "hi\n", "hi"},
		{"comment trims", "a\n{# c #}\nb", "a\nb"},
		{"raw", "{% raw %}{{ x }}{% endraw %}", "{{ x }}"},
		{"none prints None", "{{ none }}", "None"},
		{"float repr", "{{ 1.0 }} {{ 2.5 }} {{ 1e20 }} {{ 0.00001 }}", "1.0 2.5 1e+20 1e-05"},
		{"list repr", `{{ ['a', "it's", 1, none, true] }}`, `['a', "it's", 1, None, True]`},
		{"string escapes", `{{ 'a\u00e9\x41\r' | tojson }}`, `"aéA\r"`},
		{"adjacent literals", `{{ 'a' 'b' }}`, "ab"},
		{"tojson order and unicode", `{{ {'z': 1, 'a': [1.5, 'é<>&'], 'n': none} | tojson }}`, `{"z": 1, "a": [1.5, "é<>&"], "n": null}`},
		{"tojson indent", `{{ {'a': [1, 2], 'b': {}} | tojson(indent=2) }}`, "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {}\n}"},
		{"tojson separators", `{{ {'a': 1, 'b': 2} | tojson(separators=(',', ':')) }}`, `{"a":1,"b":2}`},
		{"string filter", `{{ none | string }}|{{ [1] | string }}`, "None|[1]"},
		{"join", `{{ [1, none, 'x'] | join('-') }}`, "1-None-x"},
		{"loop vars", `{% for x in [1,2,3] %}{{ loop.index }}{{ loop.previtem }}{% if loop.last %}!{% endif %}{% endfor %}`, "12132!"},
		{"namespace", `{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}`, "3"},
		{"macro", `{% macro f(a, b='y') %}{{ a }}{{ b }}{% endmacro %}{{ f('x') }}{{ f('p', 'q') }}`, "xypq"},
		{"break continue", `{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}`, "02"},
		{"methods", `{{ ' a b '.strip() }}|{{ 'x</think>y'.split('</think>')[-1] }}|{{ 'abc'.startswith('a') }}|{{ {'k': 1}.get('k') }}`, "a b|y|True|1"},
		{"strftime", `{{ strftime_now('%d %b %Y') }}`, "26 Jul 2024"},
		{"generation renders body", `{% generation %}hi{% endgeneration %}`, "hi"},
	}
	now := func() time.Time { return time.Date(2024, 7, 26, 12, 0, 0, 0, time.UTC) }
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := mustParse(t, c.src).Render(nil, Options{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// Constructs the library would get wrong must fail with their line.
func TestUnsupportedConstructs(t *testing.T) {
	cases := []struct{ src, want string }{
		{"a\n{{ x | random }}", `line 2: unsupported filter "random"`},
		{"\n\n{% if x is escaped %}{% endif %}", `line 3: unsupported test "escaped"`},
		{"{% autoescape true %}x{% endautoescape %}", "line 1: unsupported statement {% autoescape %}"},
		{"{% set a.b, c = 1, 2 %}", "line 1: {% set %} target"},
		{"{% for x in y recursive if x %}{% endfor %}", "line 1: 'recursive' must end"},
		{"{% for x in y recursive %}{{ loop(1, 2) }}{% endfor %}", "line 1: loop() takes one"},
		{"\n{% if x %}", "line 2: {% if %} is never closed"},
		{"{% endfor %}", "line 1: {% endfor %} without an open block"},
		{"{{ x", "line 1: unclosed expression"},
		{"{{ x $ y }}", "line 1: unexpected character"},
		{"{% filter indent(2) %}x{% endfilter %}", "line 1: {% filter %} block"},
	}
	for _, c := range cases {
		_, err := Parse("t", c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want error containing %q", c.src, err, c.want)
		}
	}
}

func TestRaiseAndRuntimeErrors(t *testing.T) {
	tm := mustParse(t, "{% for m in messages %}\n{% if m.role == 'system' %}\n{{ raise_exception('System role not supported') }}\n{% endif %}{% endfor %}")
	_, err := tm.Render(msgs(t, `[{"role":"system","content":"x"}]`), Options{})
	var re *RaiseError
	if !errors.As(err, &re) || re.Message != "System role not supported" || re.Line != 3 {
		t.Fatalf("got %v", err)
	}
	// a runtime error names its line
	_, err = mustParse(t, "ok\n{{ undefined_fn() }}").Render(nil, Options{})
	var te *TemplateError
	if !errors.As(err, &te) || te.Line != 2 {
		t.Fatalf("got %v", err)
	}
}

// A recursive loop's inner levels are counted against the output bound
// once, not once per level they pass through (printed values are counted,
// literal text is not: 30 × 29 bytes here).
func TestRecursiveLoopOutputCountedOnce(t *testing.T) {
	tree := []any{}
	for range 30 {
		tree = []any{map[string]any{"s": strings.Repeat("x", 29), "kids": tree}}
	}
	src := "{% for n in tree recursive %}{{ n.s }}|{{ loop(n.kids) }}{% endfor %}"
	out, err := mustParse(t, src).Render(nil, Options{MaxOutput: 1000, Extra: map[string]any{"tree": tree}})
	if err != nil || len(out) != 900 {
		t.Fatalf("got %d bytes, %v", len(out), err)
	}
	if _, err := mustParse(t, src).Render(nil, Options{MaxOutput: 869, Extra: map[string]any{"tree": tree}}); err == nil {
		t.Fatal("870 bytes of values rendered under a bound of 869")
	}
}

func TestLimits(t *testing.T) {
	cases := []struct{ src, want string }{
		{"{% for i in range(100000) %}{% endfor %}", "range longer"},
		{"{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(10) %}{% endfor %}{% endfor %}{% endfor %}", "loop iterations"},
		{"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "nested deeper"},
		{"{% for x in [1] recursive %}{{ loop([x]) }}{% endfor %}", "nested deeper"},
		{"{{ 2**100000 }}", "integer larger than"},
		{"{% set x = 3**50000 %}", "integer larger than"},
		{"{% set x = 2**60000 %}{{ x * x }}", "integer larger than"},
		{"{{ 10**5000 }}", "Exceeds the limit (4300 digits)"},
		{"{% for i in range(60000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}{{ 'y' }}{% endfor %}", ""},
	}
	for _, c := range cases {
		_, err := mustParse(t, c.src).Render(nil, Options{MaxOutput: 1 << 10})
		if c.want == "" {
			continue // literal text is bounded by the iteration limit alone
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.40q: got %v, want %q", c.src, err, c.want)
		}
	}
	_, err := mustParse(t, "{% for i in range(100) %}{{ i }}{% endfor %}").Render(nil, Options{MaxOutput: 50})
	if err == nil || !strings.Contains(err.Error(), "exceeds 50 bytes") {
		t.Errorf("output bound: %v", err)
	}
}

// Qwen3 drops reasoning from earlier turns: the earlier assistant span must
// still be found, and the last one keeps its <think> block.
func TestSpansHistoryRewrite(t *testing.T) {
	qwen, err := Load("testdata/reference/qwen3")
	if err != nil {
		t.Fatal(err)
	}
	conv := msgs(t, `[{"role":"system","content":"S"},{"role":"user","content":"Q1"},
		{"role":"assistant","content":"<think>\nr1\n</think>\n\nA1"},{"role":"user","content":"Q2"},
		{"role":"assistant","content":"<think>\nr2\n</think>\n\nA2"}]`)
	text, spans, err := qwen.RenderSpans(conv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{
		0: "<|im_start|>system\nS<|im_end|>\n",
		1: "<|im_start|>user\nQ1<|im_end|>\n",
		2: "A1<|im_end|>\n",
		3: "<|im_start|>user\nQ2<|im_end|>\n",
		4: "<think>\nr2\n</think>\n\nA2<|im_end|>\n",
	}
	checkSpans(t, text, spans, want)

	// Mistral Nemo merges the system prompt into the last user turn, and
	// only while that turn is last (a prompt): the prefix renders differ.
	mistral, err := Load("testdata/reference/llama")
	if err != nil {
		t.Fatal(err)
	}
	conv = msgs(t, `[{"role":"system","content":"S"},{"role":"user","content":"Q1"},{"role":"assistant","content":"A1"},
		{"role":"user","content":"Q2"},{"role":"assistant","content":"A2"}]`)
	text, spans, err = mistral.RenderSpans(conv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkSpans(t, text, spans, map[int]string{0: "<s>", 1: "[INST]Q1[/INST]", 2: "A1</s>", 3: "[INST]Q2[/INST]", 4: "A2</s>"})
}

func checkSpans(t *testing.T, text string, spans []Span, want map[int]string) {
	t.Helper()
	got := map[int]string{}
	for _, s := range spans {
		got[s.Message] = text[s.Start:s.End]
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("message %d: span %q, want %q (text %q)", i, got[i], w, text)
		}
	}
}

// Built-in templates render goldens; their assistant spans come from
// {% generation %} marks and end with a stop string.
func TestBuiltins(t *testing.T) {
	conv := msgs(t, `[{"role":"system","content":"You are terse."},{"role":"user","content":"Hi"},
		{"role":"assistant","content":"Hello."},{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]`)
	if len(BuiltinNames()) != 9 {
		t.Errorf("BuiltinNames = %v", BuiltinNames())
	}
	for _, name := range BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			tm, err := Builtin(name)
			if err != nil {
				t.Fatal(err)
			}
			if tm.BOS == "" && tm.EOS == "" {
				// Templates that take the model's tokens get them from the
				// tokenizer when loaded.
				tm.BOS, tm.EOS = "<s>", "</s>"
			}
			text, spans, err := tm.RenderSpans(conv, Options{})
			if err != nil {
				t.Fatal(err)
			}
			prompt, err := tm.Render(conv[:4], Options{AddGenerationPrompt: true})
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "builtin", name+".txt")
			got := text + "\n=== prompt ===\n" + prompt
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("render differs from %s:\n%s", golden, got)
			}
			stops := tm.StopStrings()
			if len(stops) == 0 {
				t.Fatal("no stop strings")
			}
			var asst []Span
			for _, s := range spans {
				if s.Role == "assistant" {
					asst = append(asst, s)
				}
			}
			if len(asst) != 2 {
				t.Fatalf("assistant spans %+v", asst)
			}
			for k, s := range asst {
				body := text[s.Start:s.End]
				if !s.Generation || !strings.Contains(body, []string{"Hello.", "4"}[k]) {
					t.Errorf("span %+v = %q", s, body)
				}
				ok := false
				for _, st := range stops {
					ok = ok || strings.HasSuffix(strings.TrimRight(body, "\n"), st)
				}
				if !ok {
					t.Errorf("span %q does not end with a stop string %v", body, stops)
				}
			}
			// training text = prompt + last assistant span
			if !strings.HasPrefix(text, prompt) || text[len(prompt):] != text[asst[1].Start:asst[1].End] {
				t.Errorf("prompt + last span != text:\nprompt %q\nspan %q", prompt, text[asst[1].Start:asst[1].End])
			}
		})
	}
	if _, err := Builtin("nope"); err == nil {
		t.Error("unknown builtin accepted")
	}
}

func TestLoadVariantsAndTokens(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"bos_token": {"content": "<B>", "lstrip": false}, "eos_token": "<E>",
	  "chat_template": [{"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}"},
	                    {"name": "tool_use", "template": "T{{ tools | length }}"}]}`
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	tm, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tm.Render(msgs(t, `[{"role":"user","content":"x"}]`), Options{})
	if err != nil || got != "<B>x<E>" {
		t.Errorf("default: %q %v", got, err)
	}
	tu, err := LoadNamed(dir, "tool_use")
	if err != nil {
		t.Fatal(err)
	}
	got, err = tu.Render(nil, Options{Tools: []any{json.RawMessage(`{"a":1}`)}})
	if err != nil || got != "T1" {
		t.Errorf("tool_use: %q %v", got, err)
	}
	if _, err := LoadNamed(dir, "missing"); err == nil || !strings.Contains(err.Error(), "tool_use") {
		t.Errorf("missing variant: %v", err)
	}
	names, err := TemplateNames(dir)
	if err != nil || strings.Join(names, ",") != "default,tool_use" {
		t.Errorf("names %v %v", names, err)
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "built-in") {
		t.Errorf("empty dir: %v", err)
	}
	// chat_template.jinja wins over tokenizer_config.json
	os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte("J{{ eos_token }}\n"), 0o644)
	tm, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := tm.Render(nil, Options{}); got != "J<E>" {
		t.Errorf("jinja file: %q", got)
	}
	if s := tm.StopStrings(); len(s) != 1 || s[0] != "<E>" {
		t.Errorf("stops %v", s)
	}
	// A named variant still comes from tokenizer_config.json.
	if tu, err := LoadNamed(dir, "tool_use"); err != nil || !strings.HasSuffix(tu.Name, "#tool_use") {
		t.Errorf("tool_use beside chat_template.jinja: %v", err)
	}
	if _, err := TemplateNames(t.TempDir()); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "tokenizer_config.json") {
		t.Errorf("TemplateNames of an empty folder: %v", err)
	}
}

func TestMessages(t *testing.T) {
	m := msgs(t, `[{"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"name":"f","arguments":{"b":1,"a":2}}}],"zeta":true}]`)
	tm := mustParse(t, "{{ messages[0] | tojson }}")
	got, err := tm.Render(m, Options{})
	want := `{"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"b": 1, "a": 2}}}], "zeta": true}`
	if err != nil || got != want {
		t.Errorf("got %q %v", got, err)
	}
	built := NewMessage("assistant", nil).With("tool_calls", []any{ToolCall("f", Object{{"b", 1}, {"a", 2}})}).With("zeta", true)
	if got2, _ := tm.Render([]Message{built}, Options{}); got2 != want {
		t.Errorf("Go-built message: %q", got2)
	}
	for _, bad := range []string{`{}`, `[1]`, `[{"content":"x"}]`, `[{"role":3}]`, `[{"role":"user","content":5}]`, `[{"role":"user"`} {
		if _, err := ParseMessages(json.RawMessage(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if _, err := ParseMessages(json.RawMessage(`[{"role":"user"},{"role":1}]`)); err == nil || !strings.Contains(err.Error(), "messages[1]") {
		t.Errorf("error does not name the message: %v", err)
	}
}

func FuzzRender(f *testing.F) {
	f.Add("{% for m in messages %}{{ m.role }}: {{ m.content | tojson }}{% endfor %}", `[{"role":"user","content":"hi"}]`)
	f.Add("{%- if x -%}{{ x.split('a')[0] | trim }}{% elif y %}{% set ns = namespace(a=1) %}{% endif %}", `[]`)
	f.Add("{% macro m(a) %}{{ a }}{% endmacro %}{% generation %}{{ m(1) }}{% endgeneration %}", `[{"role":"assistant","content":[{"type":"text"}]}]`)
	f.Add("{{ 'a' * 3 }}{{ [1,2][::-1] }}{{ raise_exception('x') }}", `[{"role":"tool"}]`)
	f.Add("{% macro f(a) %}{{ varargs }}{{ kwargs }}{{ caller() }}{% endmacro %}{% call f(1, 2, k=3) %}x{% endcall %}", `[]`)
	f.Add("{% for n in messages recursive %}{{ loop.depth }}{{ loop(n.content) if n.content is iterable }}{% endfor %}", `[{"role":"user","content":[{"type":"text"}]}]`)
	f.Add("{{ 2**64 // 3 }}{{ 'a=b'.partition('=')[1:] }}{{ {1: 'a'}[1] }}{{ {'a': 1}.items() }}", `[]`)
	f.Fuzz(func(t *testing.T, src, js string) {
		tm, err := Parse("fuzz", src)
		if err != nil {
			return
		}
		m, err := ParseMessages(json.RawMessage(js))
		if err != nil {
			m = nil
		}
		opt := Options{MaxOutput: 1 << 16, MaxIterations: 1 << 12}
		tm.Render(m, opt)
		tm.RenderSpans(m, opt)
	})
}

func TestHostileNoPanic(t *testing.T) {
	for _, src := range []string{"{{ 'a' * -5 }}", "{{ [1][::0] }}", "{{ messages[0].content.x.y }}"} {
		tm := mustParse(t, src)
		tm.Render(nil, Options{}) // must return, error or not
	}
}
