package chat

import (
	"fmt"
	"strconv"
	"strings"
)

// The library evaluates '+', '*' and '~' and builds list and dict literals
// with no bound on the size of the result, so one expression such as
// 'x' * 10000000000 exhausts memory before the output bound ever sees it.
// rewriter parses an expression exactly as the library does (same
// precedence, same tolerance for missing commas) and re-emits it with those
// operations routed through size-checked helpers. Everything else is
// re-emitted token for token, so the library's semantics are unchanged.

// structFilters are library filters that build lists or dicts out of their
// input: their result is checked so that shared sub-values cannot be
// multiplied into a structure too large to print or compare.
var structFilters = map[string]bool{
	"map": true, "select": true, "reject": true, "selectattr": true, "rejectattr": true,
	"batch": true, "items": true, "sort": true, "unique": true, "dictsort": true,
	"reverse": true, "from_json": true, "fromjson": true,
}

// printFilters stringify their input with the library's printer, which has
// no bound: the input is checked first.
var printFilters = map[string]bool{
	"lower": true, "upper": true, "trim": true, "wordcount": true,
	// these compare items, which walks nested values
	"sort": true, "unique": true, "dictsort": true, "max": true, "min": true, "sum": true,
}

// rewriteCtx is what the rewriter needs to know about the expression's
// surroundings.
type rewriteCtx struct {
	loopID    int             // the innermost for loop's number, for loop.changed
	loopDepth string          // its loop.depth: "1", or a recursive loop's depth variable
	recLoop   string          // the macro a recursive innermost loop became, else ""
	kwMacros  map[string]bool // macros that collect surplus keywords in kwargs
}

type rewriter struct {
	rewriteCtx
	toks  []token
	parts []string // parts[i] is toks[i] as the library must see it
	pos   int
}

// rewrite parses toks (whose emitted forms are parts) and returns the
// library source of the bounded expression.
func rewrite(toks []token, parts []string, ctx rewriteCtx) (string, error) {
	p := &rewriter{rewriteCtx: ctx, toks: toks, parts: parts}
	s, err := p.expression()
	if err != nil {
		return "", err
	}
	if p.pos < len(p.toks) {
		return "", fmt.Errorf("unexpected %q after the expression", p.toks[p.pos].s)
	}
	return s, nil
}

func (p *rewriter) at(kind tokKind, s string) bool {
	return p.pos < len(p.toks) && p.toks[p.pos].is(kind, s)
}

func (p *rewriter) op(s string) bool   { return p.at(tOp, s) }
func (p *rewriter) name(s string) bool { return p.at(tName, s) }

// take consumes one token and returns its emitted form.
func (p *rewriter) take() string {
	s := p.parts[p.pos]
	p.pos++
	return s
}

func (p *rewriter) expect(op string) error {
	if !p.op(op) {
		if p.pos >= len(p.toks) {
			return fmt.Errorf("expected %q at the end of the expression", op)
		}
		return fmt.Errorf("expected %q, got %q", op, p.toks[p.pos].s)
	}
	p.pos++
	return nil
}

func (p *rewriter) expression() (string, error) {
	e, err := p.or()
	if err != nil {
		return "", err
	}
	if !p.name("if") {
		return e, nil
	}
	p.pos++
	cond, err := p.or()
	if err != nil {
		return "", err
	}
	if !p.name("else") {
		return e + " if " + cond, nil
	}
	p.pos++
	f, err := p.expression()
	if err != nil {
		return "", err
	}
	return e + " if " + cond + " else " + f, nil
}

// binary parses a left-associative chain of next separated by the
// operators ops reports, combining with join.
func (p *rewriter) chain(next func() (string, error), isOp func() (string, bool), join func(op, l, r string) string) (string, error) {
	l, err := next()
	if err != nil {
		return "", err
	}
	for {
		op, ok := isOp()
		if !ok {
			return l, nil
		}
		r, err := next()
		if err != nil {
			return "", err
		}
		l = join(op, l, r)
	}
}

func plain(op, l, r string) string { return l + " " + op + " " + r }

func (p *rewriter) or() (string, error) {
	return p.chain(p.and, func() (string, bool) {
		if p.name("or") {
			p.pos++
			return "or", true
		}
		return "", false
	}, plain)
}

func (p *rewriter) and() (string, error) {
	return p.chain(p.not, func() (string, bool) {
		if p.name("and") {
			p.pos++
			return "and", true
		}
		return "", false
	}, plain)
}

func (p *rewriter) not() (string, error) {
	if p.name("not") {
		p.pos++
		e, err := p.not()
		return "not " + e, err
	}
	return p.comparison()
}

func (p *rewriter) comparison() (string, error) {
	l, err := p.concat()
	if err != nil {
		return "", err
	}
	// a < b < c is (a < b) and (b < c), as in Python: left is the operand
	// the next comparison of a chain starts from ("" when none)
	left := ""
	link := func(cmp, r string) {
		if left == "" {
			l = cmp
		} else {
			l = "(" + l + " and " + cmp + ")"
		}
		left = r
	}
	operand := func() string {
		if left == "" {
			return l
		}
		return left
	}
	for p.pos < len(p.toks) {
		t := p.toks[p.pos]
		var op string
		switch {
		case t.kind == tOp && (t.s == "<" || t.s == ">" || t.s == "<=" || t.s == ">="):
			// ordering as Python's: strings by code point, never as
			// numbers; mixed kinds raise
			p.pos++
			r, err := p.concat()
			if err != nil {
				return "", err
			}
			link("__cmp("+operand()+", "+libString(t.s)+", "+r+")", r)
			continue
		case t.kind == tOp && (t.s == "==" || t.s == "!="):
			// equality as Python's (1 == 1.0 == True); it walks nested
			// values, so __eq checks its operands first (a list holding
			// itself would recurse until the stack is gone)
			op = t.s
			p.pos++
		case t.is(tName, "in") || t.is(tName, "not") && p.pos+1 < len(p.toks) && p.toks[p.pos+1].is(tName, "in"):
			// membership as Python's: a substring, an item or a key;
			// None and numbers raise
			neg := t.s == "not"
			p.pos++
			if neg {
				p.pos++
			}
			r, err := p.concat()
			if err != nil {
				return "", err
			}
			in := "__in(" + operand() + ", " + r + ")"
			if neg {
				in = "(not " + in + ")"
			}
			link(in, r)
			continue
		default:
			return l, nil
		}
		r, err := p.concat()
		if err != nil {
			return "", err
		}
		eq := "__eq(" + operand() + ", " + r + ")"
		if op == "!=" {
			eq = "(not " + eq + ")"
		}
		link(eq, r)
	}
	return l, nil
}

// test parses "is [not] NAME [args]" after the operand l. As in jinja2,
// a test binds like a filter, tighter than any operator: a + b is odd is
// a + (b is odd).
func (p *rewriter) test(l string) (string, error) {
	p.pos++ // "is"
	x := "__chk(" + l + ")"
	neg := false
	if p.name("not") {
		p.pos++
		neg = true
	}
	if p.pos >= len(p.toks) {
		return "", fmt.Errorf("expected a test name after 'is'")
	}
	test := p.toks[p.pos].s
	p.pos++
	var args []string
	switch {
	case p.op("("):
		p.pos++
		for !p.op(")") && p.pos < len(p.toks) {
			a, err := p.expression()
			if err != nil {
				return "", err
			}
			args = append(args, "__chk("+a+")")
			if p.op(",") {
				p.pos++
			}
		}
		if err := p.expect(")"); err != nil {
			return "", err
		}
	case p.pos < len(p.toks) && startsOperand(p.toks[p.pos]):
		// jinja2: a test takes one argument without parentheses
		a, err := p.postfixOnly()
		if err != nil {
			return "", err
		}
		args = []string{"__chk(" + a + ")"}
	}
	// every test is Python's, evaluated by __test (iterfilters.go's pyTest)
	l = "__test(" + libString(test) + ", " + x
	for _, a := range args {
		l += ", " + a
	}
	l += ")"
	if neg {
		l = "(not " + l + ")"
	}
	return l, nil
}

// concat parses what sits between comparisons. jinja2's order, loosest
// first: + and -, then ~, then * / // %, then ** (left to right, so
// 2 ** 3 ** 2 is 64), then signs: 'a' ~ 1 + 2 is ('a' ~ 1) + 2.
func (p *rewriter) concat() (string, error) { return p.addSub() }

func (p *rewriter) tilde() (string, error) {
	return p.chain(p.mulDiv, func() (string, bool) {
		if p.op("~") {
			p.pos++
			return "~", true
		}
		return "", false
	}, func(_, l, r string) string { return "__cat(" + l + ", " + r + ")" })
}

func (p *rewriter) addSub() (string, error) {
	return p.chain(p.tilde, func() (string, bool) {
		if p.op("+") || p.op("-") {
			return p.take(), true
		}
		return "", false
	}, func(op, l, r string) string {
		if op == "+" {
			return "__add(" + l + ", " + r + ")"
		}
		return "__sub(" + l + ", " + r + ")"
	})
}

func (p *rewriter) mulDiv() (string, error) {
	return p.chain(p.power, func() (string, bool) {
		if p.op("*") || p.op("/") || p.op("%") || p.op("//") {
			return p.take(), true
		}
		return "", false
	}, func(op, l, r string) string {
		switch op {
		case "*":
			return "__mul(" + l + ", " + r + ")"
		case "//":
			return "__fdiv(" + l + ", " + r + ")"
		case "/":
			return "__div(" + l + ", " + r + ")"
		case "%":
			return "__mod(" + l + ", " + r + ")"
		}
		return plain(op, l, r)
	})
}

func (p *rewriter) power() (string, error) {
	b, err := p.unary()
	if err != nil {
		return "", err
	}
	for p.op("**") {
		p.pos++
		e, err := p.unary()
		if err != nil {
			return "", err
		}
		b = "__pow(" + b + ", " + e + ")"
	}
	return b, nil
}

// unary parses a sign: as in jinja2, filters after a signed operand apply
// to the signed value (-3 | abs is 3).
func (p *rewriter) unary() (string, error) {
	if p.op("-") || p.op("+") {
		start := p.pos
		e, err := p.signed()
		if err != nil {
			return "", err
		}
		return p.postfixLoop("("+e+")", true, start)
	}
	return p.postfix()
}

func (p *rewriter) signed() (string, error) {
	if p.op("-") || p.op("+") {
		op := p.take()
		e, err := p.signed()
		if op == "-" {
			// Python's minus: exact past int64, TypeError on a string
			return "__neg(" + e + ")", err
		}
		return op + " " + e, err
	}
	return p.postfixOnly()
}

func (p *rewriter) postfix() (string, error) { return p.postfixExpr(true) }

// postfixOnly is a test's unparenthesized argument: a primary with
// attributes, subscripts and calls, no filters.
func (p *rewriter) postfixOnly() (string, error) { return p.postfixExpr(false) }

func (p *rewriter) postfixExpr(filters bool) (string, error) {
	start := p.pos
	e, err := p.atom()
	if err != nil {
		return "", err
	}
	return p.postfixLoop(e, filters, start)
}

// postfixLoop applies the attributes, subscripts, calls and (when filters)
// filters that follow the operand e, whose tokens begin at start.
func (p *rewriter) postfixLoop(e string, filters bool, start int) (string, error) {
	for p.pos < len(p.toks) {
		switch {
		case p.op("."):
			p.pos++
			if p.pos >= len(p.toks) {
				return "", fmt.Errorf("expected an attribute name after '.'")
			}
			attr := p.take()
			if e == "loop" && p.loopDepth != "" && (attr == "depth" || attr == "depth0") {
				e = "(" + p.loopDepth + ")"
				if attr == "depth0" {
					e = "(" + p.loopDepth + " - 1)"
				}
				continue
			}
			if !p.op("(") {
				// jinja2 raises on an attribute of an undefined value
				if attr == "grouper" || attr == "list" {
					// groupby's pairs answer these (iterfilters.go)
					e = "__gattr(__def(" + e + "), " + libString(attr) + ")"
					continue
				}
				e = "__def(" + e + ")." + attr
				continue
			}
			args, dyn, err := p.callArgs()
			if err != nil {
				return "", err
			}
			if dyn != "" {
				switch {
				case strMethods[attr] || attr == "index" || attr == "count" || dictMethods[attr]:
					e = applyCall("__m", []string{e, libString(attr)}, args, dyn)
				case attr == "replace":
					e = applyCall("__replace", []string{e}, args, dyn)
				default:
					return "", fmt.Errorf("*args or **kwargs in a call of .%s() is not supported", attr)
				}
				continue
			}
			switch {
			case e == "loop" && attr == "changed":
				e = "__changed(" + strconv.Itoa(p.loopID) + joinArgs(args) + ")"
				continue
			case strMethods[attr] || attr == "index" || attr == "count" || dictMethods[attr]:
				e = "__m(" + e + ", " + libString(attr) + joinArgs(args) + ")"
				continue
			case mutating[attr]:
				e = "__mut(" + e + ", " + libString(attr) + ")"
			}
			switch attr {
			case "replace":
				// str.replace can multiply a string's length.
				e = "__replace(" + e + joinArgs(args) + ")"
			case "append", "insert":
				// The item is checked; the list may still come to hold
				// itself, which every operation that walks values (print,
				// compare, the filters above) checks for before walking.
				e = e + "." + attr + "(" + chkAll(args) + ")"
			default:
				e = e + "." + attr + "(" + strings.Join(args, ", ") + ")"
			}
		case p.op("["):
			p.pos++
			s, slice, err := p.subscript()
			if err != nil {
				return "", err
			}
			if slice {
				// Python's slicing, which keeps a tuple a tuple; jinja2
				// folds a slice of literals at compile time through its
				// getitem, which gives undefined where Python fails
				folded := "false"
				if constTokens(p.toks[start:p.pos]) {
					folded = "true"
				}
				e = "__slice(" + e + ", " + s + ", " + folded + ")"
			} else {
				e = "__item(" + e + ", " + s + ")"
			}
		case p.op("("):
			args, dyn, err := p.callArgs()
			if err != nil {
				return "", err
			}
			if dyn != "" {
				if e == "loop" {
					return "", fmt.Errorf("*args or **kwargs in a call of loop() is not supported")
				}
				e = applyCall(e, nil, args, dyn)
				continue
			}
			if p.kwMacros[e] || e == "dict" || e == "namespace" {
				args = append(args, kwOrder(args))
			}
			if e == "loop" && p.recLoop != "" {
				// loop(items) renders the recursive loop's body one
				// level deeper; its text was counted against the output
				// bound as it was made, so __rl takes it off again before
				// it is printed
				if len(args) != 1 {
					return "", fmt.Errorf("loop() takes one iterable")
				}
				e = "__rl(" + p.recLoop + "(" + args[0] + ", " + p.loopDepth + " + 1))"
				continue
			}
			e = e + "(" + strings.Join(args, ", ") + ")"
		case p.name("is") && filters:
			t, err := p.test(e)
			if err != nil {
				return "", err
			}
			e = t
		case p.op("|") && filters:
			p.pos++
			if p.pos >= len(p.toks) {
				return "", fmt.Errorf("expected a filter name after '|'")
			}
			name := p.toks[p.pos].s
			f := p.take()
			call := f
			if p.op("(") {
				args, dyn, err := p.callArgs()
				if err != nil {
					return "", err
				}
				if dyn != "" {
					if !strings.HasPrefix(f, "__f_") {
						return "", fmt.Errorf("*args or **kwargs in filter %s is not supported", name)
					}
					// the filter's input is its first argument
					e = "__chk(" + applyCall(f, []string{"__chk(" + e + ")"}, args, dyn) + ")"
					continue
				}
				call += "(" + strings.Join(args, ", ") + ")"
			}
			switch {
			case printFilters[name]:
				e = "__chk(" + e + ") | " + call
			case structFilters[name]:
				// select/map compare or fetch attributes inside items
				e = "__chk(__chk(" + e + ") | " + call + ")"
			default:
				e = e + " | " + call
			}
		default:
			return e, nil
		}
	}
	return e, nil
}

// kwOrder is the hidden argument that tells a macro's wrapper the order of
// the call's keywords, which the library passes in a Go map: jinja2's
// kwargs dict keeps the call's order.
func kwOrder(args []string) string {
	var names []string
	for _, a := range args {
		if k, _, ok := strings.Cut(a, " = "); ok && isIdent(k) {
			names = append(names, k)
		}
	}
	return "__kw = " + libString(strings.Join(names, ","))
}

func isIdent(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

func chkAll(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = "__chk(" + a + ")"
	}
	return strings.Join(out, ", ")
}

func joinArgs(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return ", " + strings.Join(args, ", ")
}

// subscript parses key or start:stop:step up to and including "]": a key
// is returned as is, a slice as the arguments of __slice (start, stop,
// step, with none for those left out).
func (p *rewriter) subscript() (string, bool, error) {
	part := func() (string, error) {
		if p.op("]") || p.op(":") {
			return "none", nil
		}
		return p.expression()
	}
	first, err := part()
	if err != nil {
		return "", false, err
	}
	if !p.op(":") {
		return first, false, p.expect("]")
	}
	parts := []string{first, "none", "none"}
	for i := 1; i < 3 && p.op(":"); i++ {
		p.pos++
		if parts[i], err = part(); err != nil {
			return "", true, err
		}
	}
	return strings.Join(parts, ", "), true, p.expect("]")
}

// callArgs parses "(" [name=]expr, ... [*expr] [**expr] ")" with jinja2's
// rules: positional arguments first, then keywords; *args after the
// positional ones, **kwargs last. dyn is "" or the hidden keywords that
// hand *args and **kwargs to __apply (see applyCall).
func (p *rewriter) callArgs() (args []string, dyn string, err error) {
	p.pos++ // "("
	var star, dstar string
	kws := false
	for p.pos < len(p.toks) && !p.op(")") {
		if len(args) > 0 || star != "" || dstar != "" {
			if err := p.expect(","); err != nil {
				return nil, "", err
			}
			if p.op(")") {
				break // a trailing comma
			}
		}
		switch {
		case p.op("*"):
			if star != "" || dstar != "" {
				return nil, "", errCallSyntax
			}
			p.pos++
			if star, err = p.expression(); err != nil {
				return nil, "", err
			}
		case p.op("**"):
			if dstar != "" {
				return nil, "", errCallSyntax
			}
			p.pos++
			if dstar, err = p.expression(); err != nil {
				return nil, "", err
			}
		case p.toks[p.pos].kind == tName && p.pos+1 < len(p.toks) && p.toks[p.pos+1].is(tOp, "="):
			if dstar != "" {
				return nil, "", errCallSyntax
			}
			kw := p.take() + " = "
			p.pos++
			a, err := p.expression()
			if err != nil {
				return nil, "", err
			}
			args = append(args, kw+a)
			kws = true
		default:
			if star != "" || dstar != "" || kws {
				return nil, "", errCallSyntax
			}
			a, err := p.expression()
			if err != nil {
				return nil, "", err
			}
			args = append(args, a)
		}
	}
	var hidden []string
	if star != "" {
		hidden = append(hidden, "__star = "+star)
	}
	if dstar != "" {
		hidden = append(hidden, "__dstar = "+dstar)
	}
	return args, strings.Join(hidden, ", "), p.expect(")")
}

var errCallSyntax = fmt.Errorf("invalid syntax for function call expression")

// applyCall calls f (an expression naming a callable) with the leading
// arguments lead, the call's own args and its *args/**kwargs (dyn):
// __apply spreads them as Python does (bound.go).
func applyCall(f string, lead []string, args []string, dyn string) string {
	all := append(append(append([]string{f}, lead...), args...), kwOrder(args), dyn)
	return "__apply(" + strings.Join(all, ", ") + ")"
}

func (p *rewriter) atom() (string, error) {
	if p.pos >= len(p.toks) {
		return "", fmt.Errorf("expected a value at the end of the expression")
	}
	t := p.toks[p.pos]
	switch {
	case t.kind != tOp:
		return p.take(), nil
	case t.s == "(":
		p.pos++
		if p.op(")") {
			p.pos++
			return "__tuple()", nil
		}
		e, err := p.expression()
		if err != nil {
			return "", err
		}
		if !p.op(",") {
			return "(" + e + ")", p.expect(")")
		}
		items := []string{e}
		for p.op(",") {
			p.pos++
			if p.op(")") {
				break
			}
			it, err := p.expression()
			if err != nil {
				return "", err
			}
			items = append(items, it)
		}
		// a tuple literal: the library would build a list, which
		// prints as [a, b] where jinja2 prints (a, b)
		return "__tuple(" + strings.Join(items, ", ") + ")", p.expect(")")
	case t.s == "[":
		p.pos++
		var items []string
		for p.pos < len(p.toks) && !p.op("]") {
			it, err := p.expression()
			if err != nil {
				return "", err
			}
			items = append(items, it)
			if p.op(",") {
				p.pos++
			}
		}
		return "__chk([" + strings.Join(items, ", ") + "])", p.expect("]")
	case t.s == "{":
		p.pos++
		var pairs []string
		for p.pos < len(p.toks) && !p.op("}") {
			k, err := p.expression()
			if err != nil {
				return "", err
			}
			if err := p.expect(":"); err != nil {
				return "", err
			}
			v, err := p.expression()
			if err != nil {
				return "", err
			}
			pairs = append(pairs, k, v)
			if p.op(",") {
				p.pos++
			}
		}
		// built by __dict, which keeps keys that are not strings apart
		// from strings of the same text ({1: 'a'}[1], not ['1'])
		return "__dict(" + strings.Join(pairs, ", ") + ")", p.expect("}")
	case t.s == "-":
		p.pos++
		e, err := p.atom()
		return "__neg(" + e + ")", err
	}
	return "", fmt.Errorf("unexpected %q", t.s)
}

// dictMethods are the dict methods __m implements: Python keys (not only
// strings) and views whose items are tuples.
var dictMethods = map[string]bool{"items": true, "keys": true, "values": true, "get": true, "copy": true}

// mutating are the list and dict methods jinja2's immutable sandbox refuses
// (list.pop is allowed, dict.pop is not: __mut decides by the receiver).
var mutating = map[string]bool{
	"append": true, "insert": true, "extend": true, "remove": true, "sort": true, "reverse": true,
	"clear": true, "pop": true, "popitem": true, "setdefault": true, "update": true,
}

// constTokens says the tokens are literals only (numbers, strings, true,
// false, none, in brackets, with operators), which jinja2's optimizer
// evaluates at compile time.
func constTokens(toks []token) bool {
	for _, t := range toks {
		switch t.kind {
		case tString, tInt, tFloat:
			continue
		case tName:
			switch t.s {
			case "true", "false", "none", "True", "False", "None":
				continue
			}
			return false
		}
		switch t.s {
		case "[", "]", "(", ")", ",", ":", "+", "-", "*", "/", "//", "%", "**", "~":
			continue
		}
		return false
	}
	return true
}
