package chat

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ardanlabs/jinja"
)

// Filters whose library versions are missing or differ from jinja2's.

var wordBeginning = regexp.MustCompile(`[-\s({\[<]+`)

// jinjaTitle is jinja2's title filter: each word's first character upper
// case, the rest lower, words split at spaces, dashes and open brackets.
func jinjaTitle(s string) string {
	var b strings.Builder
	last := 0
	word := func(w string) {
		if w == "" {
			return
		}
		b.WriteString(pyCapitalizeKeep(w))
	}
	for _, m := range wordBeginning.FindAllStringIndex(s, -1) {
		word(s[last:m[0]])
		b.WriteString(s[m[0]:m[1]])
		last = m[1]
	}
	word(s[last:])
	return b.String()
}

// pyCapitalizeKeep is item[0].upper() + item[1:].lower().
func pyCapitalizeKeep(s string) string {
	for i, r := range s {
		n := len(string(r))
		return pyUpper(s[i:i+n]) + pyLower(s[i+n:])
	}
	return ""
}

func kwOrArg(args []jinja.Value, kwargs map[string]jinja.Value, pos int, kw string) (jinja.Value, bool) {
	if v, ok := kwargs[kw]; ok {
		return v, true
	}
	if pos < len(args) {
		return args[pos], true
	}
	return jinja.Value{}, false
}

// attrGetter is jinja2's make_attrgetter for dotted attribute paths. A
// path that runs past a missing part gives undefined here; attrPathsOK
// raises as jinja2 does there.
func attrGetter(path string) func(jinja.Value) jinja.Value {
	return func(v jinja.Value) jinja.Value {
		r, _ := attrPath(v, path)
		return r
	}
}

// attrPath walks path's parts from v; the error is jinja2's when a part
// is read from an undefined one (a.b with no a).
func attrPath(v jinja.Value, path string) (jinja.Value, error) {
	parts := strings.Split(path, ".")
	for i, p := range parts {
		// jinja2 reads a part of digits as an int index
		key := jinja.NewString(p)
		if n, err := strconv.Atoi(p); err == nil && p != "" && strings.Trim(p, "0123456789") == "" {
			key = jinja.NewInt(int64(n))
		}
		next := jinja.Undefined()
		if !v.IsUndefined() {
			r, err := item(v, key)
			if err == nil {
				next = r
			}
		}
		if next.IsUndefined() && i < len(parts)-1 && !v.IsUndefined() {
			return next, noAttribute(v, p)
		}
		v = next
	}
	return v, nil
}

// attrPathsOK fails as jinja2 does when path cannot be walked on one of
// items (jinja2 raises at the first such item).
func attrPathsOK(items []jinja.Value, path string) error {
	for _, it := range items {
		if _, err := attrPath(it, path); err != nil {
			return err
		}
	}
	return nil
}

func iterItems(v jinja.Value) ([]jinja.Value, error) {
	switch {
	case isNamespace(v):
		return nil, fmt.Errorf("TypeError: 'Namespace' object is not iterable")
	case v.IsList():
		return v.AsList().Items, nil
	case v.IsDict():
		return dictView(v.AsDict(), "keys").AsList().Items, nil
	case v.IsString():
		var out []jinja.Value
		for _, r := range v.AsString() {
			out = append(out, jinja.NewString(string(r)))
		}
		return out, nil
	case v.IsUndefined():
		return nil, nil
	}
	return nil, fmt.Errorf("TypeError: '%s' object is not iterable", pyTypeName(v))
}

// simpleFilter applies the library filters map(NAME) may name that have no
// helper of ours.
func simpleFilter(name string, v jinja.Value, args []jinja.Value) (jinja.Value, bool, error) {
	switch name {
	case "upper", "lower":
		s := pyStr(v)
		if name == "upper" {
			return jinja.NewString(pyUpper(s)), true, nil
		}
		return jinja.NewString(pyLower(s)), true, nil
	case "trim":
		return jinja.NewString(strings.TrimSpace(pyStr(v))), true, nil
	case "length", "count":
		switch {
		case v.IsUndefined():
			return jinja.NewInt(0), true, nil
		case v.IsString():
			return jinja.NewInt(int64(utf8.RuneCountInString(v.AsString()))), true, nil
		case v.IsList():
			return jinja.NewInt(int64(v.AsList().Len())), true, nil
		case v.IsDict() && !isNamespace(v):
			return jinja.NewInt(int64(len(v.AsDict().Keys))), true, nil
		}
		return jinja.Value{}, true, fmt.Errorf("TypeError: object of type '%s' has no len()", pyTypeName(v))
	case "int":
		dflt, base := jinja.NewInt(0), int64(10)
		if len(args) > 0 {
			dflt = args[0]
		}
		if len(args) > 1 && args[1].IsInt() {
			base = args[1].AsInt()
		}
		r, err := intFilter(v, dflt, base)
		return r, true, err
	case "float":
		dflt := jinja.NewFloat(0)
		if len(args) > 0 {
			dflt = args[0]
		}
		r, err := floatFilter(v, dflt)
		return r, true, err
	case "abs":
		switch {
		case isInt(v):
			return bigValueOrInt(new(big.Int).Abs(toBig(v))), true, nil
		case v.IsFloat():
			return jinja.NewFloat(math.Abs(v.AsFloat())), true, nil
		}
		return jinja.Value{}, true, fmt.Errorf("TypeError: bad operand type for abs(): '%s'", pyTypeName(v))
	}
	return jinja.Value{}, false, nil
}

// bigValueOrInt is an int value of b (bounded by its operand's size).
func bigValueOrInt(b *big.Int) jinja.Value {
	if b.IsInt64() {
		return jinja.NewInt(b.Int64())
	}
	return bigValue(b)
}

// intFilter is jinja2's int filter: int(value, base) of a str, int(value)
// of anything else, then int(float(value)), then the default.
func intFilter(v, dflt jinja.Value, base int64) (jinja.Value, error) {
	switch {
	case v.IsUndefined():
		// int(Undefined) raises, and jinja2 catches only TypeError and
		// ValueError
		return jinja.Value{}, fmt.Errorf("UndefinedError: int of an undefined value")
	case isInt(v):
		return bigValueOrInt(toBig(v)), nil
	case v.IsFloat():
		return floatToInt(v.AsFloat())
	case v.IsString():
		if b, ok := pyParseInt(v.AsString(), int(base)); ok {
			return bigValueOrInt(b), nil
		}
		if f, ok := pyParseFloat(v.AsString()); ok && !math.IsNaN(f) {
			return floatToInt(f)
		}
	}
	return dflt, nil
}

// floatToInt is int(f): exact, and OverflowError for inf (which jinja2's
// int filter does not catch).
func floatToInt(f float64) (jinja.Value, error) {
	if math.IsInf(f, 0) {
		return jinja.Value{}, fmt.Errorf("OverflowError: cannot convert float infinity to integer")
	}
	if math.IsNaN(f) {
		return jinja.Value{}, fmt.Errorf("ValueError: cannot convert float NaN to integer")
	}
	b, _ := big.NewFloat(math.Trunc(f)).Int(nil)
	return bigValueOrInt(b), nil
}

// floatFilter is jinja2's float filter: float(value), else the default.
func floatFilter(v, dflt jinja.Value) (jinja.Value, error) {
	switch {
	case v.IsUndefined():
		return jinja.Value{}, fmt.Errorf("UndefinedError: float of an undefined value")
	case isBig(v):
		f, err := bigFloat(toBig(v))
		if err != nil {
			return jinja.Value{}, err
		}
		return jinja.NewFloat(f), nil
	case isNum(v):
		return jinja.NewFloat(libFloat(v)), nil
	case v.IsString():
		if f, ok := pyParseFloat(v.AsString()); ok {
			return jinja.NewFloat(f), nil
		}
	}
	return dflt, nil
}

// pyDigits removes Python's digit separators from a numeral: one '_'
// between two digits; ok is false for any other '_'.
func pyDigits(s string) (string, bool) {
	if !strings.Contains(s, "_") {
		return s, true
	}
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	for i := 0; i < len(s); i++ {
		if s[i] == '_' && (i == 0 || i == len(s)-1 || !isDigit(s[i-1]) || !isDigit(s[i+1])) {
			return "", false
		}
	}
	return strings.ReplaceAll(s, "_", ""), true
}

// pyParseInt is Python's int(s, base) for 2 <= base <= 36.
func pyParseInt(s string, base int) (*big.Int, bool) {
	s = strings.TrimFunc(s, isPySpace)
	if base != 0 && (base < 2 || base > 36) || len(s) > maxIntDigits+1 {
		return nil, false
	}
	sign := ""
	if s != "" && (s[0] == '-' || s[0] == '+') {
		sign, s = s[:1], s[1:]
	}
	// the prefix of base 16, 8 or 2 may be written (and must be for base 0,
	// where other numbers are decimal without leading zeros)
	if len(s) >= 2 && s[0] == '0' {
		p := map[byte]int{'x': 16, 'X': 16, 'o': 8, 'O': 8, 'b': 2, 'B': 2}[s[1]]
		if p != 0 && (base == p || base == 0) {
			base, s = p, strings.TrimPrefix(s[2:], "_")
		}
	}
	if base == 0 {
		base = 10
		if strings.TrimLeft(s, "0_") != "" && s[0] == '0' {
			return nil, false
		}
	}
	s, ok := pyDigits(s)
	if !ok || s == "" || s[0] == '-' || s[0] == '+' {
		return nil, false
	}
	return new(big.Int).SetString(sign+s, base)
}

// pyParseFloat is Python's float(s) (no hex floats, which Go accepts).
func pyParseFloat(s string) (float64, bool) {
	s = strings.TrimFunc(s, isPySpace)
	if strings.ContainsAny(s, "xXpP") {
		return 0, false
	}
	s, ok := pyDigits(s)
	if !ok {
		return 0, false
	}
	if u := strings.ToLower(strings.TrimLeft(s, "+-")); u == "nan" {
		return math.NaN(), len(s)-len(u) <= 1 // Python takes a signed nan
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, false
	}
	return f, true
}

func installFilters(vars map[string]jinja.Value, st *renderState, def func(string, fn)) {
	// int, float and abs: jinja2's, exact past int64
	def("__f_int", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewInt(0), nil
		}
		dflt, ok := kwOrArg(args, kwargs, 1, "default")
		if !ok {
			dflt = jinja.NewInt(0)
		}
		base := int64(10)
		if b, ok := kwOrArg(args, kwargs, 2, "base"); ok && b.IsInt() {
			base = b.AsInt()
		}
		return intFilter(args[0], dflt, base)
	})
	def("__f_float", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewFloat(0), nil
		}
		dflt, ok := kwOrArg(args, kwargs, 1, "default")
		if !ok {
			dflt = jinja.NewFloat(0)
		}
		return floatFilter(args[0], dflt)
	})
	def("__f_abs", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.Value{}, fmt.Errorf("TypeError: abs() takes exactly one argument")
		}
		r, _, err := simpleFilter("abs", args[0], nil)
		return r, err
	})
	def("__isbig", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		return jinja.NewBool(len(args) == 1 && isBig(args[0])), nil
	})
	def("__f_map", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewList(nil), nil
		}
		if err := st.check(args[0]); err != nil {
			return jinja.Value{}, err
		}
		if !args[0].IsTruthy() {
			// jinja2 maps nothing when the value is false (None included)
			return jinja.NewList(nil), nil
		}
		items, err := iterItems(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		var f func(jinja.Value) (jinja.Value, error)
		if a, ok := kwargs["attribute"]; ok {
			get := attrGetter(pyStr(a))
			dflt, hasDflt := kwargs["default"]
			if !hasDflt {
				if err := attrPathsOK(items, pyStr(a)); err != nil {
					return jinja.Value{}, err
				}
			}
			f = func(v jinja.Value) (jinja.Value, error) {
				r := get(v)
				if r.IsUndefined() && hasDflt {
					return dflt, nil
				}
				return r, nil
			}
		} else {
			if len(args) < 2 || !args[1].IsString() {
				return jinja.Value{}, fmt.Errorf("FilterArgumentError: map requires a filter argument")
			}
			name, rest := args[1].AsString(), args[2:]
			if name == "e" {
				name = "escape"
			}
			if own, ok := vars["__f_"+name]; ok && own.IsCallable() {
				call := own.AsCallable().Fn
				f = func(v jinja.Value) (jinja.Value, error) {
					return call(append([]jinja.Value{v}, rest...), kwargs)
				}
			} else if _, ok, _ := simpleFilter(name, jinja.NewString(""), nil); ok {
				f = func(v jinja.Value) (jinja.Value, error) {
					r, _, err := simpleFilter(name, v, rest)
					return r, err
				}
			} else {
				return jinja.Value{}, fmt.Errorf("map: unsupported filter %q", name)
			}
		}
		out := make([]jinja.Value, len(items))
		for i, it := range items {
			if out[i], err = f(it); err != nil {
				return jinja.Value{}, err
			}
		}
		return jinja.NewList(out), nil
	})
	for _, name := range []string{"length", "count"} {
		def("__f_"+name, func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			if len(args) == 0 {
				return jinja.NewInt(0), nil
			}
			r, _, err := simpleFilter("length", args[0], nil)
			return r, err
		})
	}
	minMax := func(max bool) fn {
		return func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
			if len(args) == 0 {
				return jinja.Undefined(), nil
			}
			if err := st.check(args[0]); err != nil {
				return jinja.Value{}, err
			}
			items, err := iterItems(args[0])
			if err != nil {
				return jinja.Value{}, err
			}
			if len(items) == 0 {
				return jinja.Undefined(), nil
			}
			cs, _ := kwOrArg(args, kwargs, 1, "case_sensitive")
			key := func(v jinja.Value) jinja.Value { return v }
			if a, ok := kwOrArg(args, kwargs, 2, "attribute"); ok && !a.IsNone() {
				key = attrGetter(pyStr(a))
				if err := attrPathsOK(items, pyStr(a)); err != nil {
					return jinja.Value{}, err
				}
			}
			sorted, err := sortValues(items, key, cs.IsTruthy(), false)
			if err != nil {
				return jinja.Value{}, err
			}
			if !max {
				return sorted[0], nil
			}
			// Python's max keeps the first of equal maxima
			best := sorted[len(sorted)-1]
			for i := len(sorted) - 2; i >= 0; i-- {
				c, _ := pyCompare("<", normKey(key(sorted[i]), cs.IsTruthy()), normKey(key(best), cs.IsTruthy()))
				if c != 0 {
					break
				}
				best = sorted[i]
			}
			return best, nil
		}
	}
	def("__f_max", minMax(true))
	def("__f_min", minMax(false))
	def("__f_batch", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) < 2 {
			return jinja.Value{}, fmt.Errorf("TypeError: batch needs a size")
		}
		items, err := iterItems(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		n := int(libInt(args[1]))
		if n <= 0 {
			return jinja.Value{}, fmt.Errorf("batch: size must be positive")
		}
		fill, hasFill := kwOrArg(args, kwargs, 2, "fill_with")
		hasFill = hasFill && !fill.IsNone()
		var out []jinja.Value
		for i := 0; i < len(items); i += n {
			part := append([]jinja.Value(nil), items[i:min(i+n, len(items))]...)
			for hasFill && len(part) < n {
				part = append(part, fill)
			}
			out = append(out, jinja.NewList(part))
		}
		return jinja.NewList(out), nil
	})
	def("__f_title", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewString(""), nil
		}
		s, err := st.str(args[0])
		return jinja.NewString(jinjaTitle(s)), err
	})
	def("__f_escape", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewString(""), nil
		}
		text, err := st.str(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;")
		s := r.Replace(text)
		return jinja.NewString(s), st.room(len(s), "escape")
	})
	def("__f_center", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewString(""), nil
		}
		w := 80
		if v, ok := kwOrArg(args, kwargs, 1, "width"); ok {
			w = int(libInt(v))
		}
		if err := st.room(w, "center"); err != nil {
			return jinja.Value{}, err
		}
		s, err := st.str(args[0])
		return jinja.NewString(pad(s, w, " ", 'c')), err
	})
	def("__f_round", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 || !isNum(args[0]) {
			return jinja.Value{}, fmt.Errorf("TypeError: round: a number is required")
		}
		prec := 0
		if v, ok := kwOrArg(args, kwargs, 1, "precision"); ok {
			prec = int(libInt(v))
		}
		method := "common"
		if v, ok := kwOrArg(args, kwargs, 2, "method"); ok {
			method = pyStr(v)
		}
		if method == "common" && isInt(args[0]) && prec >= 0 {
			// Python's round(int, n) is the int itself
			return bigValueOrInt(toBig(args[0])), nil
		}
		x, err := toFloat(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		p := math.Pow(10, float64(prec))
		switch method {
		case "common":
			if prec >= 0 {
				r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', prec, 64), 64)
				return jinja.NewFloat(r), nil
			}
			return jinja.NewFloat(roundTens(x, -prec)), nil
		case "floor", "ceil":
			// math.floor/ceil give an int (no negative zero), then / 10**n
			f := math.Floor(x * p)
			if method == "ceil" {
				f = math.Ceil(x * p)
			}
			if f == 0 {
				f = 0 // an int has no sign: math.ceil(-0.3) is 0
			}
			return jinja.NewFloat(f / p), nil
		}
		return jinja.Value{}, fmt.Errorf("FilterArgumentError: method must be common, ceil or floor")
	})
	firstLast := func(last bool) fn {
		return func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			if len(args) == 0 {
				return jinja.Undefined(), nil
			}
			items, err := iterItems(args[0])
			if err != nil {
				return jinja.Value{}, err
			}
			if len(items) == 0 {
				return jinja.Undefined(), nil
			}
			if last {
				return items[len(items)-1], nil
			}
			return items[0], nil
		}
	}
	def("__f_first", firstLast(false))
	def("__f_last", firstLast(true))
	def("__f_slice", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) < 2 {
			return jinja.Value{}, fmt.Errorf("TypeError: slice needs a number of slices")
		}
		seq, err := iterItems(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		n := int(libInt(args[1]))
		if n <= 0 || n > maxValueNodes {
			return jinja.Value{}, fmt.Errorf("slice: bad number of slices %d", n)
		}
		fill, hasFill := kwOrArg(args, kwargs, 2, "fill_with")
		hasFill = hasFill && !fill.IsNone()
		per, extra := len(seq)/n, len(seq)%n
		offset := 0
		var out []jinja.Value
		for i := 0; i < n; i++ {
			start := offset + i*per
			if i < extra {
				offset++
			}
			end := offset + (i+1)*per
			part := append([]jinja.Value(nil), seq[start:end]...)
			if hasFill && i >= extra {
				part = append(part, fill)
			}
			out = append(out, jinja.NewList(part))
		}
		return jinja.NewList(out), nil
	})
	def("__f_sort", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewList(nil), nil
		}
		if err := st.check(args[0]); err != nil {
			return jinja.Value{}, err
		}
		items, err := iterItems(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		rev, _ := kwOrArg(args, kwargs, 1, "reverse")
		cs, _ := kwOrArg(args, kwargs, 2, "case_sensitive")
		key := func(v jinja.Value) jinja.Value { return v }
		if a, ok := kwOrArg(args, kwargs, 3, "attribute"); ok && !a.IsNone() {
			// jinja2's make_multi_attrgetter: "a,b.c" sorts by the list
			// [a, b.c], compared item by item (== first, so two undefined
			// keys tie), each lowered unless case_sensitive
			var paths []string
			for _, p := range strings.Split(pyStr(a), ",") {
				if err := attrPathsOK(items, p); err != nil {
					return jinja.Value{}, err
				}
				paths = append(paths, p)
			}
			key = func(v jinja.Value) jinja.Value {
				parts := make([]jinja.Value, len(paths))
				for i, p := range paths {
					k := attrGetter(p)(v)
					if k.IsString() && !cs.IsTruthy() {
						k = jinja.NewString(pyLower(k.AsString()))
					}
					parts[i] = k
				}
				return jinja.NewList(parts)
			}
		}
		out, err := sortValues(items, key, cs.IsTruthy(), rev.IsTruthy())
		if err != nil {
			return jinja.Value{}, err
		}
		return jinja.NewList(out), nil
	})
	def("__f_dictsort", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) > 0 && isNamespace(args[0]) {
			return jinja.Value{}, fmt.Errorf("AttributeError: items")
		}
		if len(args) == 0 || !args[0].IsDict() {
			// jinja2's dictsort calls value.items()
			v := jinja.Undefined()
			if len(args) > 0 {
				v = args[0]
			}
			if v.IsUndefined() {
				return jinja.Value{}, fmt.Errorf("UndefinedError: dictsort of an undefined value")
			}
			return jinja.Value{}, fmt.Errorf("AttributeError: '%s' object has no attribute 'items'", pyTypeName(v))
		}
		if err := st.check(args[0]); err != nil {
			return jinja.Value{}, err
		}
		d := args[0].AsDict()
		var pairs []jinja.Value
		for _, k := range d.Keys {
			pairs = append(pairs, newTuple([]jinja.Value{origKey(d, k), d.Data[k]}))
		}
		cs, _ := kwOrArg(args, kwargs, 1, "case_sensitive")
		pos := 0
		if by, ok := kwOrArg(args, kwargs, 2, "by"); ok {
			switch pyStr(by) {
			case "key":
			case "value":
				pos = 1
			default:
				return jinja.Value{}, fmt.Errorf("FilterArgumentError: You can only sort by either \"key\" or \"value\"")
			}
		}
		rev, _ := kwOrArg(args, kwargs, 3, "reverse")
		out, err := sortValues(pairs, func(v jinja.Value) jinja.Value { return v.AsList().Items[pos] }, cs.IsTruthy(), rev.IsTruthy())
		if err != nil {
			return jinja.Value{}, err
		}
		return jinja.NewList(out), nil
	})
	def("__f_sum", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewInt(0), nil
		}
		items, err := iterItems(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		total := jinja.NewInt(0)
		if v, ok := kwOrArg(args, kwargs, 2, "start"); ok {
			total = v
		}
		key := func(v jinja.Value) jinja.Value { return v }
		if a, ok := kwOrArg(args, kwargs, 1, "attribute"); ok && !a.IsNone() {
			key = attrGetter(pyStr(a))
			if err := attrPathsOK(items, pyStr(a)); err != nil {
				return jinja.Value{}, err
			}
		}
		for _, it := range items {
			if total, err = st.add(total, key(it)); err != nil {
				return jinja.Value{}, err
			}
		}
		return total, nil
	})
}

func normKey(k jinja.Value, caseSensitive bool) jinja.Value {
	if k.IsString() && !caseSensitive {
		return jinja.NewString(pyLower(k.AsString()))
	}
	return k
}

// roundTens is Python's round(x, -k) for k > 0: x to the nearest multiple of
// 10**k, ties to even, from x's exact value.
func roundTens(x float64, k int) float64 {
	if math.IsInf(x, 0) || math.IsNaN(x) || x == 0 || k > 400 {
		if k > 400 && !math.IsInf(x, 0) && !math.IsNaN(x) {
			return math.Copysign(0, x)
		}
		return x
	}
	unit := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(k)), nil)
	r := new(big.Rat).SetFloat64(x)
	q := new(big.Rat).Quo(r, new(big.Rat).SetInt(unit))
	// q to the nearest integer, ties to even
	num, den := q.Num(), q.Denom()
	fl, rem := new(big.Int).DivMod(num, den, new(big.Int)) // floor division
	twice := new(big.Int).Mul(rem, big.NewInt(2))
	switch c := twice.Cmp(den); {
	case c > 0, c == 0 && fl.Bit(0) == 1:
		fl.Add(fl, big.NewInt(1))
	}
	f, _ := new(big.Float).SetInt(new(big.Int).Mul(fl, unit)).Float64()
	if f == 0 {
		return math.Copysign(0, x)
	}
	return f
}
