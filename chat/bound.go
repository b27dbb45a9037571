package chat

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ardanlabs/jinja"
)

// Bounds on the values a render builds. The output bound alone is not
// enough: 'x' * 10**10, a string doubled forty times or a list holding
// itself exhaust memory (or the stack) long before anything is printed.
// Every value the size-checked helpers build is held to the render's output
// bound in bytes, maxValueNodes values counted with multiplicity (so shared
// sub-lists count every time they would be printed), and maxValueDepth
// levels of nesting (which also catches a list that contains itself).
//
// The checks themselves walk values, and so do the library's comparisons
// ('==', 'in'), whose operands are checked too: all of that walking draws on
// one budget of maxWork values per render, so a loop cannot turn bounded
// values into unbounded time.
const (
	maxValueNodes = 1 << 20
	maxValueDepth = 512
	maxWork       = 1 << 29
)

// fail records a bound error so that the render reports it with the
// template line.
func (st *renderState) fail(format string, a ...any) error {
	st.limitErr = fmt.Errorf(format, a...)
	return st.limitErr
}

// measure walks v, returning how many values it holds and how many bytes of
// strings and keys, counting shared sub-values each time they occur; it
// stops with an error as soon as a bound is passed, so it never walks more
// than the bounds allow.
func (st *renderState) measure(v jinja.Value) (nodes, bytes int, err error) {
	var walk func(v jinja.Value, depth int) error
	walk = func(v jinja.Value, depth int) error {
		nodes++
		st.work++
		if st.work > maxWork {
			return st.fail("the template does more than %d steps of work on values", maxWork)
		}
		if nodes > maxValueNodes {
			return st.fail("value holds more than %d items", maxValueNodes)
		}
		if depth > maxValueDepth {
			return st.fail("value nested deeper than %d levels (a list or dict that contains itself?)", maxValueDepth)
		}
		switch {
		case v.IsString():
			bytes += len(v.AsString())
		case v.IsList():
			for _, it := range v.AsList().Items {
				if err := walk(it, depth+1); err != nil {
					return err
				}
			}
		case v.IsDict():
			d := v.AsDict()
			for _, k := range d.Keys {
				bytes += len(k)
				if err := walk(d.Data[k], depth+1); err != nil {
					return err
				}
			}
		}
		if bytes > st.maxOut {
			return st.fail("value larger than %d bytes", st.maxOut)
		}
		return nil
	}
	err = walk(v, 0)
	return nodes, bytes, err
}

// check fails when v is over the value bounds.
func (st *renderState) check(v jinja.Value) error {
	_, _, err := st.measure(v)
	return err
}

// room fails when a string of n bytes would pass the bound.
func (st *renderState) room(n int, what string) error {
	if n < 0 || n > st.maxOut {
		return st.fail("%s would be larger than %d bytes", what, st.maxOut)
	}
	return nil
}

// libPrint is the library's own conversion of a value to text (used by its
// '+', '~' and string filters), after checking that the text is bounded.
func (st *renderState) libPrint(v jinja.Value) (string, error) {
	switch {
	case isBig(v):
		return bigText(v)
	case v.IsUndefined(), v.IsNone(), v.IsCallable():
		return "", nil
	case v.IsBool():
		if v.AsBool() {
			return "True", nil
		}
		return "False", nil
	case v.IsInt():
		return strconv.FormatInt(v.AsInt(), 10), nil
	case v.IsFloat():
		return fmt.Sprintf("%g", v.AsFloat()), nil
	case v.IsString():
		return v.AsString(), nil
	}
	if err := st.check(v); err != nil {
		return "", err
	}
	return v.String(), nil
}

// libInt and libFloat are the library's numeric coercions for the operand
// types that reach arithmetic (strings take the text paths first).
func libInt(v jinja.Value) int64 {
	switch {
	case v.IsInt():
		return v.AsInt()
	case isBig(v):
		// saturated: a count or width past int64 fails the bounds
		if toBig(v).Sign() < 0 {
			return math.MinInt64
		}
		return math.MaxInt64
	case v.IsFloat():
		return int64(v.AsFloat())
	case v.IsBool() && v.AsBool():
		return 1
	}
	return 0
}

func libFloat(v jinja.Value) float64 {
	switch {
	case v.IsFloat():
		return v.AsFloat()
	case v.IsInt():
		return float64(v.AsInt())
	case v.IsBool() && v.AsBool():
		return 1
	}
	return 0
}

func (st *renderState) add(a, b jinja.Value) (jinja.Value, error) {
	switch {
	case a.IsString() && b.IsString():
		sa, sb := a.AsString(), b.AsString()
		if err := st.room(len(sa)+len(sb), "string concatenation"); err != nil {
			return jinja.Value{}, err
		}
		return jinja.NewString(sa + sb), nil
	case a.IsList() && b.IsList():
		na, ba, err := st.measure(a)
		if err != nil {
			return jinja.Value{}, err
		}
		nb, bb, err := st.measure(b)
		if err != nil {
			return jinja.Value{}, err
		}
		if na+nb > maxValueNodes || ba+bb > st.maxOut {
			return jinja.Value{}, st.fail("list concatenation would hold more than %d items or %d bytes", maxValueNodes, st.maxOut)
		}
		if isTuple(a) != isTuple(b) {
			return jinja.Value{}, fmt.Errorf("TypeError: can only concatenate %s (not \"%s\") to %s", pyTypeName(a), pyTypeName(b), pyTypeName(a))
		}
		la, lb := a.AsList().Items, b.AsList().Items
		items := make([]jinja.Value, 0, len(la)+len(lb))
		items = append(append(items, la...), lb...)
		if isTuple(a) {
			return newTuple(items), nil
		}
		return jinja.NewList(items), nil
	case a.IsString() && !b.IsUndefined():
		// Python refuses str + non-str (jinja2 raises TypeError)
		return jinja.Value{}, fmt.Errorf("TypeError: can only concatenate str (not \"%s\") to str", pyTypeName(b))
	}
	if err := numOperands("+", a, b); err != nil {
		return jinja.Value{}, err
	}
	if bothInt(a, b) {
		return st.intArith("+", a, b)
	}
	x, y, err := floatOperands(a, b)
	if err != nil {
		return jinja.Value{}, err
	}
	return jinja.NewFloat(x + y), nil
}

func (st *renderState) mul(a, b jinja.Value) (jinja.Value, error) {
	if isBig(a) && (b.IsString() || b.IsList()) || isBig(b) && (a.IsString() || a.IsList()) {
		// a repeat count must fit a machine word in Python
		return jinja.Value{}, fmt.Errorf("OverflowError: cannot fit 'int' into an index-sized integer")
	}
	if (a.IsInt() || a.IsBool()) && (b.IsString() || b.IsList()) {
		a, b = b, a
	}
	switch {
	case a.IsString() && (b.IsInt() || b.IsBool()):
		s, n := a.AsString(), libInt(b)
		if n <= 0 || s == "" {
			return jinja.NewString(""), nil // Python: a non-positive count gives ''
		}
		if n > int64(st.maxOut/len(s)) {
			return jinja.Value{}, st.fail("string repeated %d times would be larger than %d bytes", n, st.maxOut)
		}
		return jinja.NewString(strings.Repeat(s, int(n))), nil
	case a.IsList() && (b.IsInt() || b.IsBool()):
		n := libInt(b)
		if n <= 0 {
			if isTuple(a) {
				return newTuple(nil), nil
			}
			return jinja.NewList(nil), nil
		}
		nodes, bytes, err := st.measure(a)
		if err != nil {
			return jinja.Value{}, err
		}
		if n > int64(maxValueNodes/max(1, nodes)) || int64(bytes)*n > int64(st.maxOut) {
			return jinja.Value{}, st.fail("list repeated %d times would hold more than %d items or %d bytes", n, maxValueNodes, st.maxOut)
		}
		var items []jinja.Value
		for i := int64(0); i < n; i++ {
			items = append(items, a.AsList().Items...)
		}
		if isTuple(a) {
			return newTuple(items), nil
		}
		return jinja.NewList(items), nil
	}
	if err := numOperands("*", a, b); err != nil {
		return jinja.Value{}, err
	}
	if bothInt(a, b) {
		return st.intArith("*", a, b)
	}
	x, y, err := floatOperands(a, b)
	if err != nil {
		return jinja.Value{}, err
	}
	return jinja.NewFloat(x * y), nil
}

// cat is jinja2's ~: both operands as str() (None prints as None, an
// undefined value as nothing).
func (st *renderState) cat(a, b jinja.Value) (jinja.Value, error) {
	sa, err := st.str(a)
	if err != nil {
		return jinja.Value{}, err
	}
	sb, err := st.str(b)
	if err != nil {
		return jinja.Value{}, err
	}
	if err := st.room(len(sa)+len(sb), "string concatenation"); err != nil {
		return jinja.Value{}, err
	}
	return jinja.NewString(sa + sb), nil
}

// replace is str.replace with the result's length computed before it is
// built.
func (st *renderState) replace(s, old, repl string, count int) (jinja.Value, error) {
	n := strings.Count(s, old) // for old == "" this is runes+1, as Replace inserts
	if count >= 0 && count < n {
		n = count
	}
	if n > 0 && len(repl) > len(old) {
		grow := len(repl) - len(old)
		if n > (st.maxOut-len(s))/grow {
			return jinja.Value{}, st.fail("replace would build a string larger than %d bytes", st.maxOut)
		}
	}
	return jinja.NewString(strings.Replace(s, old, repl, count)), nil
}

// installBounded binds the size-checked operators and filters the compiled
// template calls in place of the library's.
func installBounded(vars map[string]jinja.Value, st *renderState, def func(string, fn)) {
	two := func(name string, f func(a, b jinja.Value) (jinja.Value, error)) {
		def(name, func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			if len(args) != 2 {
				return jinja.Value{}, fmt.Errorf("%s: expected 2 operands", name)
			}
			return f(args[0], args[1])
		})
	}
	two("__add", st.add)
	two("__sub", st.sub)
	def("__neg", st.negate)
	def("__bigint", st.bigLiteral)
	two("__mul", st.mul)
	two("__cat", st.cat)
	two("__fdiv", st.floorDiv)
	two("__mod", st.modulo)
	two("__pow", st.power)
	two("__div", st.trueDiv)
	two("__in", st.contains)
	two("__eq", st.equal)
	def("__cmp", st.compare)
	def("__m", st.method)
	def("__def", defined)
	two("__item", item)
	def("__mut", mutable)
	def("__unpack", unpack)
	def("__hex", unhex)
	def("__dict", st.newDict)
	def("__macro", st.makeMacro)
	def("__slice", st.slice)
	def("__iter", iter)
	def("__apply", apply)
	def("__nodefault", noDefault)
	def("__isnodefault", isNoDefault)
	def("__tuple", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		v := newTuple(append([]jinja.Value(nil), args...))
		return v, st.check(v)
	})
	// loop.changed: __run starts a loop's run afresh, __changed compares
	// with the value the run last passed
	changed := map[int64]jinja.Value{}
	def("__run", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		delete(changed, args[0].AsInt())
		return jinja.NewString(""), nil
	})
	def("__changed", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		id := args[0].AsInt()
		v := jinja.NewList(append([]jinja.Value(nil), args[1:]...))
		if err := st.check(v); err != nil {
			return jinja.Value{}, err
		}
		last, seen := changed[id]
		changed[id] = v
		return jinja.NewBool(!seen || !pyEqual(last, v)), nil
	})
	installFilters(vars, st, def)
	installIterFilters(st, def)
	installMoreFilters(st, def)
	installWordwrap(st, def)
	installPprint(st, def)
	def("__chk", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) != 1 {
			return jinja.Value{}, fmt.Errorf("__chk: expected 1 value")
		}
		return args[0], st.check(args[0])
	})
	def("__replace", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.Value{}, fmt.Errorf("__replace: expected a receiver")
		}
		if !args[0].IsString() {
			if args[0].IsUndefined() {
				return jinja.Value{}, fmt.Errorf("UndefinedError: undefined value has no attribute 'replace'")
			}
			return jinja.Value{}, noAttribute(args[0], "replace")
		}
		s := args[0].AsString()
		if len(args) < 3 {
			return jinja.NewString(s), nil
		}
		old, err := st.libPrint(args[1])
		if err != nil {
			return jinja.Value{}, err
		}
		repl, err := st.libPrint(args[2])
		if err != nil {
			return jinja.Value{}, err
		}
		count := -1
		if len(args) > 3 {
			count = int(libInt(args[3]))
		}
		return st.replace(s, old, repl, count)
	})
	def("__f_replace", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) < 3 {
			return jinja.Value{}, fmt.Errorf("replace: expected at least 2 arguments")
		}
		// jinja2: str(s).replace(str(old), str(new), count)
		var strs [3]string
		for i := range strs {
			s, err := st.str(args[i])
			if err != nil {
				return jinja.Value{}, err
			}
			strs[i] = s
		}
		count := -1
		if len(args) > 3 {
			count = int(libInt(args[3]))
		}
		if c, ok := kwargs["count"]; ok {
			count = int(libInt(c))
		}
		return st.replace(strs[0], strs[1], strs[2], count)
	})
	def("__f_indent", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewString(""), nil
		}
		s, err := indentInput(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		ind := strings.Repeat(" ", 4)
		if w, ok := kwOrArg(args, kwargs, 1, "width"); ok {
			switch {
			case w.IsString():
				ind = w.AsString()
			case isInt(w):
				n := libInt(w)
				if n > int64(st.maxOut) {
					return jinja.Value{}, st.fail("indent(%d) would be larger than %d bytes", n, st.maxOut)
				}
				ind = strings.Repeat(" ", int(max(n, 0)))
			default:
				return jinja.Value{}, fmt.Errorf("TypeError: can't multiply sequence by non-int of type '%s'", pyTypeName(w))
			}
		}
		first, _ := kwOrArg(args, kwargs, 2, "first")
		blank, _ := kwOrArg(args, kwargs, 3, "blank")
		// jinja2 appends a newline, then splits with Python's splitlines
		lines := pySplitLines(s + "\n")
		if int64(len(lines))*int64(len(ind)) > int64(st.maxOut-len(s)) {
			return jinja.Value{}, st.fail("indent of %d lines would be larger than %d bytes", len(lines), st.maxOut)
		}
		var rv string
		if blank.IsTruthy() {
			rv = strings.Join(lines, "\n"+ind)
		} else {
			rv = lines[0]
			if rest := lines[1:]; len(rest) > 0 {
				for i, l := range rest {
					if l != "" {
						rest[i] = ind + l
					}
				}
				rv += "\n" + strings.Join(rest, "\n")
			}
		}
		if first.IsTruthy() {
			rv = ind + rv
		}
		return jinja.NewString(rv), nil
	})
	def("__f_list", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewList(nil), nil
		}
		v := args[0]
		switch {
		case isNamespace(v):
			return jinja.Value{}, fmt.Errorf("TypeError: 'Namespace' object is not iterable")
		case isTuple(v), isView(v):
			return jinja.NewList(append([]jinja.Value(nil), v.AsList().Items...)), nil
		case v.IsDict():
			// list(d) is its keys
			return jinja.NewList(dictView(v.AsDict(), "keys").AsList().Items), nil
		case v.IsList():
			return v, nil
		case v.IsString():
			s := v.AsString()
			if n := utf8.RuneCountInString(s); n > maxValueNodes {
				return jinja.Value{}, st.fail("list of a %d-character string would hold more than %d items", n, maxValueNodes)
			}
			var items []jinja.Value
			for _, r := range s {
				items = append(items, jinja.NewString(string(r)))
			}
			return jinja.NewList(items), nil
		}
		items, err := pySeq(v)
		if err != nil {
			return jinja.Value{}, err
		}
		return jinja.NewList(append([]jinja.Value(nil), items...)), nil
	})
}

// indentInput is the text jinja2's indent works on: its first step is
// s += "\n", which fails for anything but a string (a list gains the
// newline as an item, then has no splitlines).
func indentInput(v jinja.Value) (string, error) {
	switch {
	case v.IsString():
		return v.AsString(), nil
	case v.IsUndefined():
		return "", fmt.Errorf("UndefinedError: indent of an undefined value")
	case v.IsList() && !isTuple(v) && !isView(v):
		return "", fmt.Errorf("AttributeError: 'list' object has no attribute 'splitlines'")
	case isTuple(v):
		return "", fmt.Errorf("TypeError: can only concatenate tuple (not \"str\") to tuple")
	}
	return "", fmt.Errorf("TypeError: unsupported operand type(s) for +=: '%s' and 'str'", pyTypeName(v))
}
