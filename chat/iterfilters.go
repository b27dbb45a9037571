package chat

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/ardanlabs/jinja"
)

// Filters that walk their input, and their input's conversion, as jinja2
// does it with Python's own iteration: None and numbers are not iterable
// (TypeError), a dict walks its keys, a string its characters. The
// library's versions walk only lists and take anything else as empty,
// which would render a template jinja2 refuses.

// pyWord is the \w+ of jinja2's wordcount: Python's \w on str is an
// alphanumeric character (letters and numbers of every script) or '_'.
var pyWord = regexp.MustCompile(`[\p{L}\p{N}_]+`)

// pySeq is the items "for item in v" walks; undefined walks as empty.
func pySeq(v jinja.Value) ([]jinja.Value, error) {
	switch {
	case v.IsUndefined():
		return nil, nil
	case notIterable(v):
		return nil, fmt.Errorf("TypeError: '%s' object is not iterable", pyTypeName(v))
	}
	return iterItems(v)
}

// hashKey is a text two values share exactly when a Python set holds them
// as one element (1, 1.0 and True are one); an unhashable value (list,
// dict, view) fails as Python's set does.
func hashKey(v jinja.Value, seq *int) (string, error) {
	switch {
	case v.IsUndefined():
		return "u", nil // jinja2's Undefined hashes by its type
	case v.IsNone():
		return "N", nil
	case isInt(v):
		return "n" + toBig(v).String(), nil
	case v.IsFloat():
		f := v.AsFloat()
		switch {
		case math.IsNaN(f):
			// a NaN is equal to no other value
			*seq++
			return "x" + strconv.Itoa(*seq), nil
		case f == math.Trunc(f) && !math.IsInf(f, 0):
			i, _ := big.NewFloat(f).Int(nil)
			return "n" + i.String(), nil
		}
		return "f" + strconv.FormatFloat(f, 'g', -1, 64), nil
	case v.IsString():
		return "s" + v.AsString(), nil
	case isTuple(v):
		var b strings.Builder
		b.WriteString("t")
		for _, it := range v.AsList().Items {
			k, err := hashKey(it, seq)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "%d:%s", len(k), k)
		}
		return b.String(), nil
	case v.IsCallable():
		// functions hash by identity; two are never one element here
		*seq++
		return "x" + strconv.Itoa(*seq), nil
	}
	return "", fmt.Errorf("TypeError: unhashable type: '%s'", pyTypeName(v))
}

func installIterFilters(st *renderState, def func(string, fn)) {
	def("__test", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) < 2 || !args[0].IsString() {
			return jinja.Value{}, fmt.Errorf("__test: bad arguments")
		}
		ok, err := st.pyTest(args[0].AsString(), args[1], args[2:])
		return jinja.NewBool(ok), err
	})
	for _, f := range []struct {
		name           string
		reject, byAttr bool
	}{{"select", false, false}, {"reject", true, false}, {"selectattr", false, true}, {"rejectattr", true, true}} {
		def("__f_"+f.name, func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			return st.selectOrReject(args, f.reject, f.byAttr)
		})
	}
	// items is jinja2's: a dict's (key, value) pairs, nothing for
	// undefined, TypeError for anything else
	def("__f_items", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		switch {
		case len(args) == 0 || args[0].IsUndefined():
			return jinja.NewList(nil), nil
		case args[0].IsDict() && !isNamespace(args[0]):
			return jinja.NewList(append([]jinja.Value(nil), dictView(args[0].AsDict(), "items").AsList().Items...)), nil
		}
		return jinja.Value{}, fmt.Errorf("TypeError: Can only get item pairs from a mapping.")
	})
	// groupby sorts by the attribute (lowered unless case_sensitive) and
	// groups equal neighbours into (grouper, list) pairs, the grouper
	// taken with its case from the group's first item
	def("__f_groupby", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) < 2 && kwargs["attribute"].IsUndefined() {
			return jinja.Value{}, fmt.Errorf("TypeError: groupby() missing 1 required positional argument: 'attribute'")
		}
		if err := st.check(args[0]); err != nil {
			return jinja.Value{}, err
		}
		items, err := pySeq(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		attr, _ := kwOrArg(args, kwargs, 1, "attribute")
		dflt, hasDflt := kwOrArg(args, kwargs, 2, "default")
		hasDflt = hasDflt && !dflt.IsNone()
		cs, _ := kwOrArg(args, kwargs, 3, "case_sensitive")
		path := pyStr(attr)
		if !hasDflt {
			if err := attrPathsOK(items, path); err != nil {
				return jinja.Value{}, err
			}
		}
		get := func(v jinja.Value) jinja.Value {
			r := attrGetter(path)(v)
			if r.IsUndefined() && hasDflt {
				return dflt
			}
			return r
		}
		key := func(v jinja.Value) jinja.Value {
			r := get(v)
			if r.IsString() && !cs.IsTruthy() {
				return jinja.NewString(pyLower(r.AsString()))
			}
			return r
		}
		sorted, err := sortValues(items, key, true, false)
		if err != nil {
			return jinja.Value{}, err
		}
		var groups []jinja.Value
		for i := 0; i < len(sorted); {
			j := i + 1
			for j < len(sorted) && pyEqual(key(sorted[j]), key(sorted[i])) {
				j++
			}
			grouper := key(sorted[i])
			if !cs.IsTruthy() {
				grouper = get(sorted[i])
			}
			members := append([]jinja.Value(nil), sorted[i:j]...)
			groups = append(groups, newListKind(groupKind, []jinja.Value{grouper, jinja.NewList(members)}))
			i = j
		}
		return jinja.NewList(groups), nil
	})
	// attr is Python's getattr through the sandbox: a namespace's
	// attribute, a groupby pair's grouper/list, a str/dict method as a
	// callable; never a dict's item, and undefined otherwise
	def("__f_attr", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) < 2 {
			return jinja.Value{}, fmt.Errorf("TypeError: do_attr() missing 1 required positional argument: 'name'")
		}
		v, name := args[0], pyStr(args[1])
		switch {
		case v.IsUndefined() && !strings.HasPrefix(name, "__"):
			// Undefined's __getattr__ raises
			return jinja.Value{}, fmt.Errorf("UndefinedError: an undefined value has no attribute %s", pyRepr(jinja.NewString(name)))
		case isNamespace(v):
			if r, ok := v.AsDict().Data[name]; ok {
				return r, nil
			}
		case v.IsList() && listKind(v) == groupKind && (name == "grouper" || name == "list"):
			if name == "grouper" {
				return v.AsList().Items[0], nil
			}
			return v.AsList().Items[1], nil
		case strings.HasPrefix(name, "_"):
		case isNum(v) && !isBig(v) && (name == "real" || name == "imag"):
			switch {
			case name == "real" && v.IsBool():
				return jinja.NewInt(libInt(v)), nil
			case name == "real":
				return v, nil
			case v.IsFloat():
				return jinja.NewFloat(0), nil
			}
			return jinja.NewInt(0), nil
		case isInt(v) && !isBig(v) && (name == "numerator" || name == "denominator"):
			if name == "denominator" {
				return jinja.NewInt(1), nil
			}
			return jinja.NewInt(libInt(v)), nil
		case v.IsString() && (strMethods[name] || name == "count" || name == "index"),
			v.IsDict() && dictMethods[name]:
			return jinja.NewCallable(name, func(a []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error) {
				return st.method(append([]jinja.Value{v, jinja.NewString(name)}, a...), kw)
			}), nil
		}
		return jinja.Undefined(), nil
	})
	def("__gattr", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		v, name := args[0], args[1].AsString()
		switch {
		case v.IsList() && listKind(v) == groupKind:
			if name == "grouper" {
				return v.AsList().Items[0], nil
			}
			return v.AsList().Items[1], nil
		case v.IsDict():
			if r, ok := dictLookup(v.AsDict(), jinja.NewString(name)); ok {
				return r, nil
			}
		}
		return jinja.Undefined(), nil
	})
	// default: the fallback for undefined (or, with boolean, any false
	// value)
	for _, name := range []string{"default", "d"} {
		def("__f_"+name, func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
			v := jinja.Undefined()
			if len(args) > 0 {
				v = args[0]
			}
			dflt, ok := kwOrArg(args, kwargs, 1, "default_value")
			if !ok {
				dflt = jinja.NewString("")
			}
			boolean, _ := kwOrArg(args, kwargs, 2, "boolean")
			if v.IsUndefined() || boolean.IsTruthy() && !v.IsTruthy() {
				return dflt, nil
			}
			return v, nil
		})
	}
	def("__f_reverse", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewList(nil), nil
		}
		v := args[0]
		if v.IsString() {
			r := []rune(v.AsString())
			for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
				r[i], r[j] = r[j], r[i]
			}
			return jinja.NewString(string(r)), nil
		}
		if notIterable(v) {
			return jinja.Value{}, fmt.Errorf("FilterArgumentError: argument must be iterable")
		}
		items, err := pySeq(v)
		if err != nil {
			return jinja.Value{}, err
		}
		// jinja2 gives an iterator; walked or listed it is this list
		out := make([]jinja.Value, len(items))
		for i, it := range items {
			out[len(items)-1-i] = it
		}
		return jinja.NewList(out), nil
	})
	def("__f_unique", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewList(nil), nil
		}
		if err := st.check(args[0]); err != nil {
			return jinja.Value{}, err
		}
		items, err := pySeq(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		cs, _ := kwOrArg(args, kwargs, 1, "case_sensitive")
		key := func(v jinja.Value) jinja.Value { return v }
		if a, ok := kwOrArg(args, kwargs, 2, "attribute"); ok && !a.IsNone() {
			key = attrGetter(pyStr(a))
			if err := attrPathsOK(items, pyStr(a)); err != nil {
				return jinja.Value{}, err
			}
		}
		seen := map[string]bool{}
		seq := 0
		var out []jinja.Value
		for _, it := range items {
			k := key(it)
			if !cs.IsTruthy() && k.IsString() {
				k = jinja.NewString(pyLower(k.AsString()))
			}
			h, err := hashKey(k, &seq)
			if err != nil {
				return jinja.Value{}, err
			}
			if !seen[h] {
				seen[h] = true
				out = append(out, it)
			}
		}
		return jinja.NewList(out), nil
	})
	def("__f_wordcount", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewInt(0), nil
		}
		s, err := st.str(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		return jinja.NewInt(int64(len(pyWord.FindAllStringIndex(s, -1)))), nil
	})
	// format is str(value) % args, or % kwargs as a dict
	def("__f_format", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewString(""), nil
		}
		s, err := st.str(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		if len(args) > 1 && len(kwargs) > 0 {
			return jinja.Value{}, fmt.Errorf("FilterArgumentError: can't handle positional and keyword arguments at the same time")
		}
		operand := newTuple(append([]jinja.Value(nil), args[1:]...))
		if len(kwargs) > 0 {
			operand = jinja.NewDict()
			for _, k := range kwKeys(kwargs) {
				operand.AsDict().Set(k, kwargs[k])
			}
		}
		return st.printf(s, operand)
	})
}

// pyTest is jinja2's test NAME applied to v with args, for the tests
// select and reject name (the template's own "is" compiles in rewrite.go).
func (st *renderState) pyTest(name string, v jinja.Value, args []jinja.Value) (bool, error) {
	arg := func() (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.Value{}, fmt.Errorf("TypeError: test %s takes one argument", name)
		}
		return args[0], nil
	}
	switch name {
	case "defined":
		return !v.IsUndefined(), nil
	case "undefined":
		return v.IsUndefined(), nil
	case "none":
		return v.IsNone(), nil
	case "boolean":
		return v.IsBool(), nil
	case "false":
		return v.IsBool() && !v.AsBool(), nil
	case "true":
		return v.IsBool() && v.AsBool(), nil
	case "integer":
		return isInt(v) && !v.IsBool(), nil
	case "float":
		return v.IsFloat(), nil
	case "number":
		return isNum(v), nil
	case "string":
		return v.IsString(), nil
	case "mapping":
		return v.IsDict() && !isNamespace(v), nil
	case "iterable":
		return !notIterable(v) && !v.IsCallable(), nil
	case "sequence":
		// has len() and [] (Undefined has both)
		return v.IsString() || v.IsList() && !isView(v) || v.IsDict() && !isNamespace(v) || v.IsUndefined(), nil
	case "callable":
		return v.IsCallable() && !isBig(v), nil
	case "lower", "upper":
		return pyCaseIs(pyStr(v), name == "upper"), nil
	case "odd", "even", "divisibleby":
		d := jinja.NewInt(2)
		if name == "divisibleby" {
			a, err := arg()
			if err != nil {
				return false, err
			}
			d = a
		}
		m, err := st.modulo(v, d)
		if err != nil {
			return false, err
		}
		want := jinja.NewInt(0)
		if name == "odd" {
			want = jinja.NewInt(1)
		}
		return pyEqual(m, want), nil
	case "eq", "equalto", "==", "ne", "!=", "sameas":
		a, err := arg()
		if err != nil {
			return false, err
		}
		eq := pyEqual(v, a)
		if name == "sameas" {
			// identity: one list or dict object; the singletons and equal
			// scalars of one type
			switch {
			case v.IsList() && a.IsList():
				eq = v.AsList() == a.AsList()
			case v.IsDict() && a.IsDict():
				eq = v.AsDict() == a.AsDict()
			default:
				eq = eq && pyTypeName(v) == pyTypeName(a) && !v.IsList() && !v.IsDict()
			}
		}
		return eq != (name == "ne" || name == "!="), nil
	case "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=":
		a, err := arg()
		if err != nil {
			return false, err
		}
		op := map[string]string{"lt": "<", "lessthan": "<", "le": "<=", "gt": ">", "greaterthan": ">", "ge": ">="}[name]
		if op == "" {
			op = name
		}
		r, err := st.compare([]jinja.Value{v, jinja.NewString(op), a}, nil)
		if err != nil {
			return false, err
		}
		return r.AsBool(), nil
	case "in":
		a, err := arg()
		if err != nil {
			return false, err
		}
		r, err := st.contains(v, a)
		if err != nil {
			return false, err
		}
		return r.AsBool(), nil
	}
	return false, fmt.Errorf("TemplateRuntimeError: No test named %s.", pyRepr(jinja.NewString(name)))
}

// pyCaseIs is Python's str.isupper() (upper) or str.islower(): at least
// one cased character and none of the other case.
func pyCaseIs(s string, upper bool) bool {
	cased := false
	for _, r := range s {
		switch {
		case unicode.IsUpper(r) || unicode.IsTitle(r):
			if !upper {
				return false
			}
			cased = true
		case unicode.IsLower(r):
			if upper {
				return false
			}
			cased = true
		}
	}
	return cased
}

// selectOrReject is jinja2's select, reject, selectattr and rejectattr:
// nothing when the value is false, else the items (of any iterable) whose
// test (truthiness when no test is named), on the item or its attribute,
// is true (select) or false (reject).
func (st *renderState) selectOrReject(args []jinja.Value, reject, byAttr bool) (jinja.Value, error) {
	if len(args) == 0 || !args[0].IsTruthy() {
		return jinja.NewList(nil), nil
	}
	for _, a := range args {
		// the items and the test's arguments are compared, which walks them
		if err := st.check(a); err != nil {
			return jinja.Value{}, err
		}
	}
	items, err := pySeq(args[0])
	if err != nil {
		return jinja.Value{}, err
	}
	rest := args[1:]
	get := func(v jinja.Value) jinja.Value { return v }
	if byAttr {
		if len(rest) == 0 {
			return jinja.Value{}, fmt.Errorf("FilterArgumentError: Missing parameter for attribute name")
		}
		get = attrGetter(pyStr(rest[0]))
		if err := attrPathsOK(items, pyStr(rest[0])); err != nil {
			return jinja.Value{}, err
		}
		rest = rest[1:]
	}
	test := func(v jinja.Value) (bool, error) { return v.IsTruthy(), nil }
	if len(rest) > 0 {
		name, targs := pyStr(rest[0]), rest[1:]
		test = func(v jinja.Value) (bool, error) { return st.pyTest(name, v, targs) }
	}
	var out []jinja.Value
	for _, it := range items {
		ok, err := test(get(it))
		if err != nil {
			return jinja.Value{}, err
		}
		if ok != reject {
			out = append(out, it)
		}
	}
	return jinja.NewList(out), nil
}
