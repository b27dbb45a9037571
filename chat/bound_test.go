package chat

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Each template builds a value far past any bound; rendering must stop with
// a TemplateError naming the bomb's line (3) instead of exhausting memory.
func TestTemplateValueBombs(t *testing.T) {
	const ns = "{% set ns = namespace(s='x', l=[1], d={'a': 1}) %}\n"
	bombs := map[string]string{
		"repeat":           "{{ 'x' * 10000000000 }}",
		"repeat via int":   "{{ 'x' * (10 ** 10) | int }}",
		"string doubling":  "{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
		"tilde doubling":   "{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
		"list doubling":    "{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
		"nested doubling":  "{% for i in range(64) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
		"tuple doubling":   "{% for i in range(64) %}{% set ns.l = (ns.l, ns.l) %}{% endfor %}{{ ns.l }}",
		"dict doubling":    "{% for i in range(64) %}{% set ns.d = {'a': ns.d, 'b': ns.d} %}{% endfor %}{{ ns.d | tojson }}",
		"namespace nest":   "{% for i in range(64) %}{% set ns.d = namespace(a=ns.d, b=ns.d) %}{% endfor %}",
		"join":             "{% for i in range(64) %}{% set ns.s = (ns.s ~ ns.s) | join(ns.s) %}{% endfor %}",
		"indent":           "{{ ('a\\n' * 1000000) | indent(1000000) }}",
		"replace filter":   "{% for i in range(64) %}{% set ns.s = ns.s | replace('x', 'xxx') %}{% endfor %}",
		"replace method":   "{% for i in range(64) %}{% set ns.s = ns.s.replace('x', 'xxx') %}{% endfor %}",
		"replace empty":    "{{ ('x' * 5000000).replace('', 'yyyy') }}",
		"strftime":         "{{ strftime_now('%B' * 8000000) }}",
		"tojson indent":    "{% for i in range(16) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ [[[[ns.l]]]] | tojson(indent='x' * 1000000) }}",
		"self append":      "{% set l = [] %}{% set _ = l.append(l) %}{{ l }}",
		"self insert":      "{% set l = [1] %}{% set _ = l.insert(0, l) %}{{ l == l }}",
		"append doubling":  "{% for i in range(64) %}{% set _ = ns.l.append(ns.l[:]) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}",
		"list of string":   "{{ ('x' * 8000000) | list | length }}",
		"split":            "{{ (',' * 8000000).split(',') | length }}",
		"namespace cycle":  "{% set ns.me = ns %}{{ ns == ns }}",
		"update cycle":     "{% set _ = ns.d.update({'me': ns.d}) %}{{ [ns.d] | tojson }}",
		"cycle in sort":    "{% set ns.l = [ns] %}{{ ns.l | sort }}",
		"cycle in select":  "{% set ns.l = [ns] %}{{ ns.l | selectattr('l', 'equalto', ns.l) | list }}",
		"cycle in test":    "{% set ns.me = ns %}{{ ns is sameas(ns) }}",
		"cycle in count":   "{% set ns.l = [ns] %}{{ ns.l.count(ns) }}",
		"work":             "{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
		"compare work":     "{% set x = namespace(v=[0]) %}{% for i in range(19) %}{% set x.v = x.v + x.v %}{% endfor %}{% for i in range(60000) %}{% for j in range(16) %}{% if x.v == x.v %}{% endif %}{% endfor %}{% endfor %}",
		"lower of list":    "{% for i in range(64) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}",
		"upper nested":     "{% for i in range(30) %}{% set ns.l = ns.l | map('string') | list %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | upper }}",
		"string filter":    "{% for i in range(64) %}{% set ns.s = (ns.s, ns.s) | string %}{% endfor %}",
		"float powers":     "{% for i in range(65536) %}{% for j in range(16) %}{% set x = 1.0000001 ** 1000000.5 %}{% endfor %}{% endfor %}",
		"printf width":     "{{ '%*d' % (10 ** 9, 1) }}",
		"printf precision": "{{ '%.*f' % (10 ** 9, 1.5) }}",
		"format width":     "{{ '{:{}}'.format('a', 10 ** 9) }}",
		"format zero pad":  "{% for i in range(64) %}{% set ns.s = '{:0999999,d}'.format(5) ~ ns.s %}{% endfor %}",
		"print":            "{% set x = namespace(v=[0]) %}{% for i in range(20) %}{% set x.v = x.v + x.v %}{% endfor %}{% for i in range(64) %}{{ x.v }}{% endfor %}",
	}
	var slowest time.Duration
	var most uint64
	var slowestName, mostName string
	defer func() {
		t.Logf("%d template bombs: slowest %v (%s), most allocated %d MB (%s)", len(bombs), slowest.Round(time.Millisecond), slowestName, most>>20, mostName)
	}()
	for name, body := range bombs {
		t.Run(name, func(t *testing.T) {
			src := ns + "\n" + body
			tm, err := Parse("bomb", src)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err = tm.Render(nil, Options{})
			if d := time.Since(start); d > slowest {
				slowest, slowestName = d, name
			}
			runtime.ReadMemStats(&after)
			if a := after.TotalAlloc - before.TotalAlloc; a > most {
				most, mostName = a, name
			}
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("got %v, want a TemplateError", err)
			}
			if te.Line != 3 {
				t.Errorf("error names line %d, want 3: %v", te.Line, err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<30 {
				t.Errorf("allocated %d MB before failing", alloc>>20)
			}
		})
	}
}

// The size-checked operators keep the library's results for ordinary values.
func TestBoundedOperatorsSemantics(t *testing.T) {
	cases := []struct{ src, want string }{
		{"{{ 'ab' * 3 }}|{{ 'a' * 0 }}|{{ 'a' * -2 }}|{{ 2 * 3 }}|{{ 2 * 1.5 }}", "ababab|||6|3.0"},
		{"{{ 'a' + 'b' }}|{{ 1 + 2 }}|{{ 1 + 0.5 }}|{{ [1] + [2, 3] }}|{{ 'n' ~ 1 ~ none }}", "ab|3|1.5|[1, 2, 3]|n1None"},
		{"{{ 'aXbX'.replace('X', '-') }}|{{ 'aXbX' | replace('X', '-', 1) }}|{{ 'a\nb' | indent(2) }}", "a-b-|a-bX|a\n  b"},
		{"{{ 'ab' | list }}|{{ ['x', 'y'] | join(', ') }}|{{ 'ab' | join('-') }}", "['a', 'b']|x, y|a-b"},
		{"{{ 'a,b'.split(',') }}|{{ ' a  b '.split() }}|{{ 'abca'.count('a') }}", "['a', 'b']|['a', 'b']|2"},
		{"{% set l = [1] + [2] %}{{ l }}|{{ (1, 2) }}|{{ {'k': [1, 2]} | tojson }}", "[1, 2]|(1, 2)|{\"k\": [1, 2]}"},
		{"{{ 3 - 1 - 1 }}|{{ 2 + 3 * 4 }}|{{ (2 + 3) * 4 }}|{{ -2 ** 2 }}|{{ 'x' if 1 + 1 == 2 else 'y' }}", "1|14|20|4|x"},
		{"{% for x in [1, 2, 3] if x + 1 > 2 %}{{ x }}{% endfor %}|{{ [1, 2][0:1] + [3] }}", "23|[1, 3]"},
	}
	for _, c := range cases {
		got, err := mustParse(t, c.src).Render(nil, Options{})
		if err != nil {
			t.Errorf("%q: %v", c.src, err)
			continue
		}
		if got != c.want {
			t.Errorf("%q: got %q, want %q", c.src, got, c.want)
		}
	}
	if _, err := Parse("bad", "{{ (1 + }}"); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("unparseable expression: %v", err)
	}
}

// DecodeJSON walks tokens recursively; its nesting bound keeps a few
// megabytes of '[' in a tool call's arguments from overflowing the stack.
func TestDecodeJSONDepth(t *testing.T) {
	ok := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	if _, err := DecodeJSON([]byte(ok)); err != nil {
		t.Errorf("depth 100: %v", err)
	}
	for _, n := range []int{300, 1 << 20} {
		deep := strings.Repeat("[", n) + strings.Repeat("]", n)
		if _, err := DecodeJSON([]byte(deep)); err == nil || !strings.Contains(err.Error(), "nested deeper than") {
			t.Errorf("depth %d: got %v", n, err)
		}
	}
}
