package chat

import (
	"encoding/hex"
	"strconv"
	"strings"
)

// Constructs are checked here, before the library sees them, so that a
// template using something the library would evaluate differently from
// jinja2 fails with its line instead of rendering silently wrong.

// libFilters are the library's filters that behave as jinja2's for the
// values chat templates use.
var libFilters = map[string]bool{
	"from_json": true, "fromjson": true,
	"safe": true,
}

// ownFilters replace the library's where its output differs from jinja2's
// (json.dumps formatting, Python str() of values: trim, lower and upper of
// None are "None", "none", "NONE") or where the library's
// result has no size bound (replace, indent, list).
var ownFilters = map[string]bool{
	"tojson": true, "string": true, "join": true, "capitalize": true,
	"replace": true, "indent": true, "list": true, "title": true, "round": true,
	"center": true, "slice": true, "escape": true, "e": true, "first": true, "last": true,
	"sort": true, "dictsort": true, "sum": true, "batch": true, "map": true,
	"length": true, "count": true, "max": true, "min": true,
	"trim": true, "lower": true, "upper": true,
	// Python's iteration and hashing (iterfilters.go)
	"reverse": true, "unique": true, "wordcount": true, "format": true,
	"select": true, "reject": true, "selectattr": true, "rejectattr": true, "items": true,
	// text filters (morefilters.go)
	"truncate": true, "filesizeformat": true, "striptags": true, "urlencode": true,
	"xmlattr": true, "forceescape": true, "groupby": true, "attr": true,
	"default": true, "d": true, "wordwrap": true, "pprint": true,
	// numbers past int64 (bigint.go)
	"int": true, "float": true, "abs": true,
}

var libTests = map[string]bool{
	"defined": true, "undefined": true, "none": true, "boolean": true, "integer": true,
	"float": true, "number": true, "string": true, "mapping": true, "iterable": true,
	"sequence": true, "callable": true, "true": true, "false": true, "odd": true, "even": true,
	"upper": true, "lower": true, "sameas": true, "eq": true, "equalto": true, "ne": true,
	"gt": true, "greaterthan": true, "ge": true, "lt": true, "lessthan": true, "le": true, "in": true,
	"divisibleby": true,
}

// methods the library implements on str, list and dict (and the callables it
// hands out for loop.cycle and cycler).
var libMethods = map[string]bool{
	"strip": true, "lstrip": true, "rstrip": true, "split": true, "startswith": true,
	"endswith": true, "replace": true, "upper": true, "lower": true, "count": true, "find": true,
	"append": true, "pop": true, "insert": true, "items": true, "keys": true, "values": true,
	"get": true, "update": true, "cycle": true, "next": true, "reset": true,
}

type compiler struct {
	tmp int // temporaries named so far
	seg int // the segment being compiled
	// macroUses says, by the segment index of a {% macro %} tag, which of
	// varargs, kwargs and caller its body names; kwMacros are the names of
	// macros that take surplus keyword arguments (see scanMacros)
	macroUses map[int]macroUse
	kwMacros  map[string]bool
	name      string
	out       strings.Builder
	hasGen    bool
	stack     []openBlock
	literal   []string // string literals seen, for stop-string discovery
	// jinja2 checks filter and test names when it compiles, except inside
	// an {% if %} (its conditions and body) or an inline if, where an
	// unknown one fails only if it runs: softIf marks an if's condition,
	// unknown collects the names deferred that way
	softIf  bool
	unknown []string
}

// soft says an unknown filter or test in toks fails only when it runs.
func (c *compiler) soft(toks []token) bool {
	if c.softIf {
		return true
	}
	for _, t := range toks {
		if t.is(tName, "if") {
			return true
		}
	}
	for i := len(c.stack) - 1; i >= 0; i-- {
		switch c.stack[i].kw {
		case "if":
			return true
		case "for", "macro", "call", "filter", "set", "with", "generation", "block":
			return false
		}
	}
	return false
}

type openBlock struct {
	kw   string
	line int
	// macros: the name, parameter names and special names the body uses
	macro  string
	params []string
	uses   macroUse
	// for loops: where the loop statement starts and its body begins in the
	// output, the names its body assigns, and whether {% else %} was seen
	id      int    // for loops: their number, for loop.changed's state
	rec     bool   // a recursive for loop, compiled as the macro __rloopID
	recIter string // a recursive loop's outermost iterable
	at      [2]int
	targets []string
	sets    []string
	inElse  bool
	elseSet []string // names {% else %} assigns, which do not leak either
	// set blocks with filters: what runs after {% endset %}
	after string
}

var blockEnd = map[string]string{
	"if": "endif", "for": "endfor", "macro": "endmacro", "call": "endcall",
	"filter": "endfilter", "set": "endset", "generation": "endgeneration", "with": "endwith",
	"block": "endblock",
}

func (c *compiler) errf(line int, format string, a ...any) error {
	return &TemplateError{Name: c.name, Line: line, Msg: sprintf(format, a...)}
}

// compile turns lexed segments into library source in which all text is
// already whitespace-processed and sits inside {{ '...' }} literals, every
// printed value goes through __p (Python str() and the output bound), loops
// tick __t, and __l records the current source line for runtime errors.
func (c *compiler) compile(segs []segment) (string, error) {
	c.scanMacros(segs)
	for i, s := range segs {
		c.seg = i
		switch s.kind {
		case segText:
			c.out.WriteString("{{ ")
			c.out.WriteString(libString(s.text))
			c.out.WriteString(" }}")
		case segExpr:
			if len(s.toks) == 0 {
				return "", c.errf(s.line, "empty expression {{ }}")
			}
			body, err := c.expr(s.toks, s.line)
			if err != nil {
				return "", err
			}
			c.mark(s.line)
			c.out.WriteString("{{ __p(" + body + ") }}")
		case segStmt:
			if err := c.stmt(s); err != nil {
				return "", err
			}
		}
	}
	if n := len(c.stack); n > 0 {
		b := c.stack[n-1]
		return "", c.errf(b.line, "{%% %s %%} is never closed (expected {%% %s %%})", b.kw, blockEnd[b.kw])
	}
	return c.out.String(), nil
}

func (c *compiler) mark(line int) { c.out.WriteString("{{ __l(" + strconv.Itoa(line) + ") }}") }

func (c *compiler) push(kw string, line int) {
	c.stack = append(c.stack, openBlock{kw: kw, line: line})
}

// noteSet records that the innermost for body assigns name. jinja2 scopes
// such an assignment to one iteration: each iteration starts again from the
// value outside the loop, where the library would carry it over.
func (c *compiler) noteSet(name string) {
	for i := len(c.stack) - 1; i >= 0; i-- {
		b := &c.stack[i]
		switch b.kw {
		case "macro", "call":
			return
		case "with", "block":
			if !contains(b.sets, name) {
				b.sets = append(b.sets, name)
			}
			return
		case "for":
			switch {
			case b.inElse:
				if !contains(b.elseSet, name) {
					b.elseSet = append(b.elseSet, name)
				}
			// the loop's own targets take each item anew
			case !contains(b.sets, name) && !contains(b.targets, name):
				b.sets = append(b.sets, name)
			}
			return
		}
	}
}

// closeFor inserts, for each name the loop body assigns, a copy of its
// outer value before the loop and a reset to it at the top of the body; it
// returns the resets of the names the else block assigns, for after the
// loop.
func (c *compiler) closeFor(b openBlock) string {
	if len(b.sets) == 0 && len(b.elseSet) == 0 {
		return ""
	}
	c.tmp++
	pre := "__o" + strconv.Itoa(c.tmp) + "_"
	var save, reset, after strings.Builder
	for _, n := range b.sets {
		save.WriteString("{% set " + pre + n + " = " + n + " %}")
		reset.WriteString("{% set " + n + " = " + pre + n + " %}")
	}
	for _, n := range b.elseSet {
		if !contains(b.sets, n) {
			save.WriteString("{% set " + pre + n + " = " + n + " %}")
		}
		after.WriteString("{% set " + n + " = " + pre + n + " %}")
	}
	out := c.out.String()
	c.out.Reset()
	c.out.WriteString(out[:b.at[0]])
	c.out.WriteString(save.String())
	c.out.WriteString(out[b.at[0]:b.at[1]])
	c.out.WriteString(reset.String())
	c.out.WriteString(out[b.at[1]:])
	return after.String()
}

func (c *compiler) pop(end string, line int) error {
	n := len(c.stack)
	if n == 0 || blockEnd[c.stack[n-1].kw] != end {
		if n == 0 {
			return c.errf(line, "{%% %s %%} without an open block", end)
		}
		return c.errf(line, "{%% %s %%} closes {%% %s %%} from line %d", end, c.stack[n-1].kw, c.stack[n-1].line)
	}
	c.stack = c.stack[:n-1]
	return nil
}

// loop is the innermost open for loop, nil outside loops (and in macro
// bodies, where loop is not the enclosing loop's).
func (c *compiler) loop() *openBlock {
	for i := len(c.stack) - 1; i >= 0; i-- {
		switch c.stack[i].kw {
		case "for":
			return &c.stack[i]
		case "macro", "call":
			return nil
		}
	}
	return nil
}

// loopID is the number of the innermost open for loop, 0 outside loops.
func (c *compiler) loopID() int {
	if b := c.loop(); b != nil {
		return b.id
	}
	return 0
}

func (c *compiler) top() string {
	if len(c.stack) == 0 {
		return ""
	}
	return c.stack[len(c.stack)-1].kw
}

func (c *compiler) stmt(s segment) error {
	if len(s.toks) == 0 || s.toks[0].kind != tName {
		return c.errf(s.line, "statement {%% %%} without a tag name")
	}
	kw := s.toks[0].s
	rest := s.toks[1:]
	noArgs := func() error {
		if len(rest) > 0 && !(strings.HasPrefix(kw, "end") && len(rest) == 1 && rest[0].kind == tName) {
			return c.errf(s.line, "unexpected tokens after {%% %s %%}", kw)
		}
		return nil
	}
	switch kw {
	case "if":
		c.softIf = true
		e, err := c.expr(rest, s.line)
		c.softIf = false
		if err != nil {
			return err
		}
		c.mark(s.line)
		c.out.WriteString("{% if " + e + " %}")
		c.push("if", s.line)
	case "elif":
		if c.top() != "if" {
			return c.errf(s.line, "{%% elif %%} outside {%% if %%}")
		}
		e, err := c.expr(rest, s.line)
		if err != nil {
			return err
		}
		c.out.WriteString("{% elif " + e + " %}")
	case "else":
		if t := c.top(); t != "if" && t != "for" {
			return c.errf(s.line, "{%% else %%} outside {%% if %%} or {%% for %%}")
		} else if t == "for" {
			c.stack[len(c.stack)-1].inElse = true
		}
		if err := noArgs(); err != nil {
			return err
		}
		c.out.WriteString("{% else %}")
	case "for":
		return c.forStmt(s, rest)
	case "set":
		return c.setStmt(s, rest)
	case "with":
		return c.withStmt(s, rest)
	case "include", "import", "from", "extends":
		// transformers' environment has no loader: jinja2 raises when such
		// a statement runs (an untaken branch renders)
		if len(rest) == 0 {
			return c.errf(s.line, "{%% %s %%} needs a template name", kw)
		}
		c.mark(s.line)
		c.out.WriteString("{{ __noloader() }}")
	case "block":
		// without {% extends %} a block renders in place, in its own scope
		if len(rest) == 0 || rest[0].kind != tName {
			return c.errf(s.line, "{%% block %%} needs a name")
		}
		for _, t := range rest[1:] {
			if !t.is(tName, "scoped") && !t.is(tName, "required") {
				return c.errf(s.line, "unexpected tokens after {%% block %s %%}", rest[0].s)
			}
		}
		if err := c.withStmt(s, nil); err != nil {
			return err
		}
		c.stack[len(c.stack)-1].kw = "block"
	case "macro":
		return c.macroStmt(s, rest)
	case "call":
		// {% call(a, b) macro(...) %}: the names the body's caller(...)
		// arguments bind
		params := ""
		if len(rest) > 0 && rest[0].is(tOp, "(") {
			var names []string
			i := 1
			for ; i < len(rest) && !rest[i].is(tOp, ")"); i++ {
				switch {
				case i%2 == 1 && rest[i].kind == tName:
					names = append(names, rest[i].s)
				case i%2 == 0 && rest[i].is(tOp, ","):
				default:
					return c.errf(s.line, "{%% call(args) %%}: caller arguments must be plain names")
				}
			}
			if i >= len(rest) {
				return c.errf(s.line, "{%% call(args) %%}: unclosed caller arguments")
			}
			params = "(" + strings.Join(names, ", ") + ") "
			rest = rest[i+1:]
		}
		e, err := c.expr(rest, s.line)
		if err != nil {
			return err
		}
		c.mark(s.line)
		c.out.WriteString("{% call " + params + e + " %}")
		c.push("call", s.line)
	case "filter":
		if len(rest) != 1 || rest[0].kind != tName || !map[string]bool{"upper": true, "lower": true, "trim": true}[rest[0].s] {
			return c.errf(s.line, "{%% filter %%} block: only upper, lower and trim are supported")
		}
		c.out.WriteString("{% filter " + rest[0].s + " %}")
		c.push("filter", s.line)
	case "generation":
		if err := noArgs(); err != nil {
			return err
		}
		c.hasGen = true
		c.out.WriteString("{{ __gen(1) }}")
		c.push("generation", s.line)
	case "endgeneration":
		if err := noArgs(); err != nil {
			return err
		}
		if err := c.pop(kw, s.line); err != nil {
			return err
		}
		c.out.WriteString("{{ __gen(0) }}")
	case "endmacro":
		if err := noArgs(); err != nil {
			return err
		}
		if c.top() != "macro" {
			return c.pop(kw, s.line)
		}
		b := c.stack[len(c.stack)-1]
		if err := c.pop(kw, s.line); err != nil {
			return err
		}
		// the library's macro binds its parameters and ignores surplus
		// arguments: NAME is a wrapper that hands surplus positional
		// arguments to varargs and unknown keywords to kwargs, or raises
		// as jinja2 does when the body names neither
		c.out.WriteString("{{ __leave() }}{% endmacro %}{% set " + b.macro + " = __macro(__mac_" + b.macro + ", " +
			libString(b.macro) + ", " + libString(strings.Join(b.params, ",")) + ", " + strconv.Itoa(int(b.uses)) + ") %}")
	case "endwith", "endblock":
		if err := noArgs(); err != nil {
			return err
		}
		var b openBlock
		if n := len(c.stack); n > 0 {
			b = c.stack[n-1]
		}
		if err := c.pop(kw, s.line); err != nil {
			return err
		}
		c.closeWith(b)
	case "endif", "endfor", "endcall", "endfilter", "endset":
		if err := noArgs(); err != nil {
			return err
		}
		var b openBlock
		if n := len(c.stack); n > 0 {
			b = c.stack[n-1]
		}
		if err := c.pop(kw, s.line); err != nil {
			return err
		}
		after := b.after
		if kw == "endfor" {
			after = c.closeFor(b)
			if b.rec {
				// the loop body ends the macro that a recursive loop
				// became; the outermost level runs it on the iterable
				id := strconv.Itoa(b.id)
				after += "{{ __leave() }}{% endmacro %}{{ __rloop" + id + "(" + b.recIter + ", 1) }}"
			}
		}
		c.out.WriteString("{% " + kw + " %}" + after)
	case "break", "continue":
		if err := noArgs(); err != nil {
			return err
		}
		inFor := false
		for _, b := range c.stack {
			inFor = inFor || b.kw == "for"
		}
		if !inFor {
			return c.errf(s.line, "{%% %s %%} outside a loop", kw)
		}
		c.out.WriteString("{% " + kw + " %}")
	default:
		return c.errf(s.line, "unsupported statement {%% %s %%}", kw)
	}
	return nil
}

func (c *compiler) forStmt(s segment, rest []token) error {
	in := -1
	for i, t := range rest {
		if t.is(tName, "in") {
			in = i
			break
		}
	}
	if in < 1 {
		return c.errf(s.line, "{%% for %%} needs 'NAME in ITERABLE'")
	}
	var targets []string
	for i, t := range rest[:in] {
		if i%2 == 0 && t.kind == tName {
			targets = append(targets, t.s)
		} else if i%2 == 1 && t.is(tOp, ",") {
			continue
		} else {
			return c.errf(s.line, "{%% for %%} target must be names separated by commas")
		}
	}
	if len(targets) > 2 {
		return c.errf(s.line, "{%% for %%} with more than two targets is not supported")
	}
	iter := rest[in+1:]
	rec := false
	if n := len(iter); n > 0 && iter[n-1].is(tName, "recursive") {
		rec, iter = true, iter[:n-1]
	}
	for _, t := range iter {
		if t.is(tName, "recursive") {
			return c.errf(s.line, "'recursive' must end the {%% for %%} tag")
		}
	}
	c.tmp++
	id := c.tmp
	// the iterable goes through __iter (a dict literal's number keys); a
	// filter ("seq if cond") stays the library's loop filter
	seq, cond := splitLoopFilter(iter)
	e, err := c.expr(seq, s.line)
	if err != nil {
		return err
	}
	e = "__iter(" + e + ")"
	recIter := ""
	if rec {
		// {% for x in seq [if cond] recursive %} becomes a macro
		// __rloopID(items, depth) holding the loop, which the body's
		// loop(items) calls one level deeper; the filter applies at every
		// level
		recIter = e
		e = "__iter(__rit" + strconv.Itoa(id) + ")"
		c.out.WriteString("{% macro __rloop" + strconv.Itoa(id) + "(__rit" + strconv.Itoa(id) + ", __rdepth" + strconv.Itoa(id) + ") %}{{ __enter() }}")
	}
	if len(cond) > 0 {
		f, err := c.expr(cond, s.line)
		if err != nil {
			return err
		}
		e += " if " + f
	}
	start := c.out.Len()
	c.mark(s.line)
	c.out.WriteString("{{ __run(" + strconv.Itoa(id) + ") }}{% for " + strings.Join(targets, ", ") + " in " + e + " %}{{ __t() }}")
	c.stack = append(c.stack, openBlock{kw: "for", id: id, rec: rec, recIter: recIter, line: s.line, at: [2]int{start, c.out.Len()}, targets: targets})
	return nil
}

// splitLoopFilter splits a for loop's "seq if cond" at its top-level "if"
// (jinja2 parses seq without conditional expressions, so the first such
// "if" starts the filter).
func splitLoopFilter(toks []token) (seq, cond []token) {
	depth := 0
	for i, t := range toks {
		switch {
		case t.is(tOp, "(") || t.is(tOp, "[") || t.is(tOp, "{"):
			depth++
		case t.is(tOp, ")") || t.is(tOp, "]") || t.is(tOp, "}"):
			depth--
		case depth == 0 && t.is(tName, "if"):
			return toks[:i], toks[i+1:]
		}
	}
	return toks, nil
}

func (c *compiler) setStmt(s segment, rest []token) error {
	eq := -1
	for i, t := range rest {
		if t.is(tOp, "=") {
			eq = i
			break
		}
	}
	if eq < 0 {
		if len(rest) == 0 || rest[0].kind != tName || len(rest) > 1 && !rest[1].is(tOp, "|") {
			return c.errf(s.line, "block {%% set %%} must be NAME or NAME | FILTER ...")
		}
		after := ""
		if len(rest) > 1 {
			// {% set x | f %}body{% endset %}: x is the body through f
			e, err := c.expr(rest, s.line)
			if err != nil {
				return err
			}
			after = "{% set " + rest[0].s + " = " + e + " %}"
		}
		c.noteSet(rest[0].s)
		c.out.WriteString("{% set " + rest[0].s + " %}")
		c.push("set", s.line)
		c.stack[len(c.stack)-1].after = after
		return nil
	}
	target := rest[:eq]
	var tgt string
	switch {
	case len(target) == 1 && target[0].kind == tName:
		tgt = target[0].s
		c.noteSet(tgt)
	case len(target) == 3 && target[0].kind == tName && target[1].is(tOp, ".") && target[2].kind == tName:
		tgt = target[0].s + "." + target[2].s
	default:
		return c.setTuple(s, target, rest[eq+1:])
	}
	e, err := c.expr(rest[eq+1:], s.line)
	if err != nil {
		return err
	}
	c.mark(s.line)
	c.out.WriteString("{% set " + tgt + " = " + e + " %}")
	return nil
}

// setTuple is {% set a, b = value %}: the value (a bare tuple when it has
// top-level commas) must hold exactly as many items as there are names.
func (c *compiler) setTuple(s segment, target, value []token) error {
	var names []string
	for i, t := range target {
		switch {
		case i%2 == 0 && t.kind == tName:
			names = append(names, t.s)
		case i%2 == 1 && t.is(tOp, ","):
		default:
			return c.errf(s.line, "{%% set %%} target must be NAME, NAME.ATTR or NAME, NAME, ...")
		}
	}
	if len(names) < 2 && !(len(target) == 2 && target[1].is(tOp, ",")) {
		return c.errf(s.line, "{%% set %%} target must be NAME, NAME.ATTR or NAME, NAME, ...")
	}
	depth, bare := 0, false
	for _, t := range value {
		switch {
		case t.is(tOp, "(") || t.is(tOp, "[") || t.is(tOp, "{"):
			depth++
		case t.is(tOp, ")") || t.is(tOp, "]") || t.is(tOp, "}"):
			depth--
		case t.is(tOp, ",") && depth == 0:
			bare = true
		}
	}
	if bare {
		value = append(append([]token{{kind: tOp, s: "(", line: s.line}}, value...), token{kind: tOp, s: ")", line: s.line})
	}
	e, err := c.expr(value, s.line)
	if err != nil {
		return err
	}
	c.tmp++
	tmp := "__u" + strconv.Itoa(c.tmp)
	c.mark(s.line)
	c.out.WriteString("{% set " + tmp + " = __unpack(" + e + ", " + strconv.Itoa(len(names)) + ") %}")
	for i, n := range names {
		c.noteSet(n)
		c.out.WriteString("{% set " + n + " = " + tmp + "[" + strconv.Itoa(i) + "] %}")
	}
	return nil
}

func (c *compiler) macroStmt(s segment, rest []token) error {
	bad := func() error {
		return c.errf(s.line, "{%% macro %%} must be NAME(ARG, ARG=LITERAL, ...)")
	}
	if len(rest) < 3 || rest[0].kind != tName || !rest[1].is(tOp, "(") || !rest[len(rest)-1].is(tOp, ")") {
		return bad()
	}
	var params, names []string
	// defaults other than one literal token: the library's macro gets a
	// placeholder, and the body starts by evaluating the expression when
	// the placeholder arrived (jinja2 evaluates defaults at each call, in
	// order, so a default may read an earlier parameter)
	prologue := ""
	if n := len(rest); n > 3 && rest[n-2].is(tOp, ",") {
		return bad() // jinja2 takes no trailing comma here
	}
	for _, arg := range splitTopLevel(rest[2 : len(rest)-1]) {
		if len(arg) == 0 || arg[0].kind != tName || len(arg) == 2 || len(arg) > 1 && !arg[1].is(tOp, "=") {
			return bad()
		}
		p := arg[0].s
		names = append(names, p)
		if len(arg) > 2 {
			lit := arg[2]
			switch {
			case len(arg) > 3 || lit.kind == tName && lit.s != "none" && lit.s != "true" && lit.s != "false" && lit.s != "None" && lit.s != "True" && lit.s != "False" || lit.kind == tOp || lit.kind == tInt && lit.big != "":
				e, err := c.expr(arg[2:], s.line)
				if err != nil {
					return err
				}
				p += " = __nodefault()"
				prologue += "{% if __isnodefault(" + arg[0].s + ") %}{% set " + arg[0].s + " = " + e + " %}{% endif %}"
			case lit.kind == tString && strings.ContainsAny(lit.s, ",()=\\'\""):
				// the library splits parameters at commas and '=': the
				// text travels hex-encoded
				p += " = __hex('" + hex.EncodeToString([]byte(lit.s)) + "')"
			default:
				p += " = " + emitTok(lit)
			}
		}
		params = append(params, p)
	}
	uses := c.macroUses[c.seg]
	for _, special := range []struct {
		bit  macroUse
		name string
	}{{usesVarargs, "varargs"}, {usesKwargs, "kwargs"}, {usesCaller, "caller"}} {
		if uses&special.bit != 0 && !contains(names, special.name) {
			params = append(params, special.name)
		}
	}
	c.out.WriteString("{% macro __mac_" + rest[0].s + "(" + strings.Join(params, ", ") + ") %}{{ __enter() }}" + prologue)
	c.stack = append(c.stack, openBlock{kw: "macro", line: s.line, macro: rest[0].s, params: names, uses: uses})
	return nil
}

// macroUse is a set of the special names a macro body uses.
type macroUse uint8

const (
	usesVarargs macroUse = 1 << iota
	usesKwargs
	usesCaller
)

// scanMacros notes which macros name varargs, kwargs or caller in their
// bodies: as in jinja2, only those accept surplus positional arguments,
// unknown keywords and a {% call %} block.
func (c *compiler) scanMacros(segs []segment) {
	c.macroUses = map[int]macroUse{}
	c.kwMacros = map[string]bool{}
	type open struct {
		seg  int
		name string
	}
	var stack []open
	for i, s := range segs {
		if s.kind == segText {
			continue
		}
		if s.kind == segStmt && len(s.toks) > 0 {
			switch s.toks[0].s {
			case "macro":
				name := ""
				if len(s.toks) > 1 {
					name = s.toks[1].s
				}
				stack = append(stack, open{i, name})
				continue
			case "endmacro":
				if len(stack) > 0 {
					stack = stack[:len(stack)-1]
				}
				continue
			}
		}
		if len(stack) == 0 {
			continue
		}
		top := stack[len(stack)-1]
		for j, t := range s.toks {
			if t.kind != tName || j > 0 && s.toks[j-1].is(tOp, ".") {
				continue
			}
			switch t.s {
			case "varargs":
				c.macroUses[top.seg] |= usesVarargs
			case "kwargs":
				c.macroUses[top.seg] |= usesKwargs
				c.kwMacros[top.name] = true
			case "caller":
				c.macroUses[top.seg] |= usesCaller
			}
		}
	}
}

// expr checks an expression's tokens and re-emits them for the library.
func (c *compiler) expr(toks []token, line int) (string, error) {
	if len(toks) == 0 {
		return "", c.errf(line, "expected an expression")
	}
	parts := make([]string, 0, len(toks))
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		l := t.line
		if t.kind == tString {
			c.literal = append(c.literal, t.s)
		}
		switch {
		case t.is(tOp, "|"):
			if i+1 >= len(toks) || toks[i+1].kind != tName {
				return "", c.errf(l, "expected a filter name after '|'")
			}
			f := toks[i+1].s
			switch {
			case f == "e":
				parts = append(parts, "|", "__f_escape")
			case ownFilters[f]:
				parts = append(parts, "|", "__f_"+f)
			case libFilters[f]:
				parts = append(parts, "|", f)
			case !knownFilters[f] && c.soft(toks):
				// no such filter in jinja2: an error only if it runs
				parts = append(parts, "|", "__nofilter_"+f)
				if !contains(c.unknown, f) {
					c.unknown = append(c.unknown, f)
				}
			default:
				return "", c.errf(l, "unsupported filter %q", f)
			}
			i++
			continue
		case t.is(tName, "is"):
			j := i + 1
			if j < len(toks) && toks[j].is(tName, "not") {
				j++
			}
			if j >= len(toks) || toks[j].kind != tName {
				return "", c.errf(l, "expected a test name after 'is'")
			}
			if !libTests[toks[j].s] && (knownTests[toks[j].s] || !c.soft(toks)) {
				return "", c.errf(l, "unsupported test %q", toks[j].s)
			}
		case t.is(tOp, "."):
			if i+1 >= len(toks) || (toks[i+1].kind != tName && toks[i+1].kind != tInt) {
				return "", c.errf(l, "expected an attribute name after '.'")
			}
			name := toks[i+1].s
			if i > 0 && toks[i-1].is(tName, "loop") && name == "changed" && c.loopID() == 0 {
				return "", c.errf(l, "loop.%s is not supported", name)
			}
			if i+2 < len(toks) && toks[i+2].is(tOp, "(") {
				if !libMethods[name] && !strMethods[name] && !dictMethods[name] && name != "index" && name != "changed" {
					return "", c.errf(l, "unsupported method .%s()", name)
				}
			}
		case t.is(tOp, "{"):
			// dict literal keys must be strings for the library's dicts
		}
		parts = append(parts, emitTok(t))
	}
	if len(parts) != len(toks) {
		return "", c.errf(line, "internal error: %d tokens emitted as %d", len(toks), len(parts))
	}
	ctx := rewriteCtx{kwMacros: c.kwMacros}
	if b := c.loop(); b != nil {
		ctx.loopID, ctx.loopDepth = b.id, "1"
		if b.rec {
			ctx.recLoop = "__rloop" + strconv.Itoa(b.id)
			ctx.loopDepth = "__rdepth" + strconv.Itoa(b.id)
		}
	}
	out, err := rewrite(toks, parts, ctx)
	if err != nil {
		return "", c.errf(line, "%v", err)
	}
	return out, nil
}

func startsOperand(t token) bool {
	switch t.kind {
	case tString, tInt, tFloat:
		return true
	case tName:
		switch t.s {
		case "and", "or", "if", "else", "not", "in", "is", "recursive":
			return false
		}
		return true
	}
	return t.is(tOp, "[") || t.is(tOp, "{")
}

func emitTok(t token) string {
	switch t.kind {
	case tString:
		return libString(t.s)
	case tInt:
		if t.big != "" {
			return "__bigint('" + t.big + "')"
		}
		return strconv.FormatInt(t.i, 10)
	case tFloat:
		s := strconv.FormatFloat(t.f, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	}
	return t.s
}

// libString quotes s for the library's tokenizer, which understands \\ and
// \' and takes every other byte literally.
func libString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			b.WriteString(`\\`)
		case '\'':
			b.WriteString(`\'`)
		default:
			b.WriteByte(s[i])
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// splitTopLevel splits toks at the commas outside brackets.
func splitTopLevel(toks []token) [][]token {
	var out [][]token
	depth, start := 0, 0
	for i, t := range toks {
		switch {
		case t.is(tOp, "(") || t.is(tOp, "[") || t.is(tOp, "{"):
			depth++
		case t.is(tOp, ")") || t.is(tOp, "]") || t.is(tOp, "}"):
			depth--
		case t.is(tOp, ",") && depth == 0:
			out = append(out, toks[start:i])
			start = i + 1
		}
	}
	if start < len(toks) {
		out = append(out, toks[start:])
	}
	return out
}

// withStmt is {% with a = x, b = y %}: the values are evaluated outside,
// then bound to the names for the block; the names and whatever the block
// sets get their outer values back at {% endwith %} (closeWith).
func (c *compiler) withStmt(s segment, rest []token) error {
	c.tmp++
	id := strconv.Itoa(c.tmp)
	var targets, binds []string
	var vals strings.Builder
	for i, arg := range splitTopLevel(rest) {
		if len(arg) < 3 || arg[0].kind != tName || !arg[1].is(tOp, "=") {
			return c.errf(s.line, "{%% with %%} takes NAME = EXPR, ...")
		}
		e, err := c.expr(arg[2:], s.line)
		if err != nil {
			return err
		}
		v := "__wv" + id + "_" + strconv.Itoa(i)
		vals.WriteString("{% set " + v + " = " + e + " %}")
		targets = append(targets, arg[0].s)
		binds = append(binds, "{% set "+arg[0].s+" = "+v+" %}")
	}
	c.mark(s.line)
	c.out.WriteString(vals.String())
	start := c.out.Len()
	c.out.WriteString(strings.Join(binds, ""))
	c.stack = append(c.stack, openBlock{kw: "with", id: c.tmp, line: s.line, at: [2]int{start, start}, sets: targets})
	return nil
}

// closeWith saves, where the block begins, the outer value of every name
// the block binds or sets, and restores them after it.
func (c *compiler) closeWith(b openBlock) {
	pre := "__wo" + strconv.Itoa(b.id) + "_"
	var save, restore strings.Builder
	for _, n := range b.sets {
		save.WriteString("{% set " + pre + n + " = " + n + " %}")
		restore.WriteString("{% set " + n + " = " + pre + n + " %}")
	}
	out := c.out.String()
	c.out.Reset()
	c.out.WriteString(out[:b.at[0]])
	c.out.WriteString(save.String())
	c.out.WriteString(out[b.at[0]:])
	c.out.WriteString(restore.String())
}

// knownFilters and knownTests are jinja2's own names that gotune does not
// implement: those are refused when the template is parsed, wherever they
// stand, rather than deferred like a name jinja2 does not know either.
var (
	knownFilters = map[string]bool{"random": true}
	knownTests   = map[string]bool{"escaped": true, "filter": true, "test": true}
)
