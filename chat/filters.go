package chat

import (
	"fmt"
	"math"
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
		return strings.ToUpper(s[i:i+n]) + strings.ToLower(s[i+n:])
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

// attrGetter is jinja2's make_attrgetter for dotted attribute paths.
func attrGetter(path string) func(jinja.Value) jinja.Value {
	parts := strings.Split(path, ".")
	return func(v jinja.Value) jinja.Value {
		for _, p := range parts {
			switch {
			case v.IsDict():
				w, ok := v.AsDict().Data[p]
				if !ok {
					return jinja.Undefined()
				}
				v = w
			case v.IsList():
				i, err := strconv.Atoi(p)
				if err != nil || i < 0 || i >= v.AsList().Len() {
					return jinja.Undefined()
				}
				v = v.AsList().Items[i]
			default:
				return jinja.Undefined()
			}
		}
		return v
	}
}

func iterItems(v jinja.Value) ([]jinja.Value, error) {
	switch {
	case v.IsList():
		return v.AsList().Items, nil
	case v.IsDict():
		return strList(v.AsDict().Keys).AsList().Items, nil
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
			return jinja.NewString(strings.ToUpper(s)), true, nil
		}
		return jinja.NewString(strings.ToLower(s)), true, nil
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
		case v.IsDict():
			return jinja.NewInt(int64(len(v.AsDict().Keys))), true, nil
		}
		return jinja.Value{}, true, fmt.Errorf("TypeError: object of type '%s' has no len()", pyTypeName(v))
	case "int":
		switch {
		case isNum(v):
			return jinja.NewInt(libInt(v)), true, nil
		case v.IsString():
			if n, err := strconv.ParseInt(strings.TrimSpace(v.AsString()), 10, 64); err == nil {
				return jinja.NewInt(n), true, nil
			}
			if f, err := strconv.ParseFloat(strings.TrimSpace(v.AsString()), 64); err == nil {
				return jinja.NewInt(int64(f)), true, nil
			}
		}
		if len(args) > 0 {
			return args[0], true, nil
		}
		return jinja.NewInt(0), true, nil
	case "float":
		switch {
		case isNum(v):
			return jinja.NewFloat(libFloat(v)), true, nil
		case v.IsString():
			if f, err := strconv.ParseFloat(strings.TrimSpace(v.AsString()), 64); err == nil {
				return jinja.NewFloat(f), true, nil
			}
		}
		if len(args) > 0 {
			return args[0], true, nil
		}
		return jinja.NewFloat(0), true, nil
	case "abs":
		switch {
		case v.IsInt() || v.IsBool():
			return jinja.NewInt(abs64(libInt(v))), true, nil
		case v.IsFloat():
			return jinja.NewFloat(math.Abs(v.AsFloat())), true, nil
		}
		return jinja.Value{}, true, fmt.Errorf("TypeError: bad operand type for abs(): '%s'", pyTypeName(v))
	}
	return jinja.Value{}, false, nil
}

func installFilters(vars map[string]jinja.Value, st *renderState, def func(string, fn)) {
	def("__f_map", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
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
		var f func(jinja.Value) (jinja.Value, error)
		if a, ok := kwargs["attribute"]; ok {
			get := attrGetter(pyStr(a))
			dflt, hasDflt := kwargs["default"]
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
		return jinja.NewString(jinjaTitle(pyStr(args[0]))), st.check(args[0])
	})
	def("__f_escape", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewString(""), nil
		}
		if err := st.check(args[0]); err != nil {
			return jinja.Value{}, err
		}
		r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;")
		s := r.Replace(pyStr(args[0]))
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
		return jinja.NewString(pad(pyStr(args[0]), w, " ", 'c')), nil
	})
	def("__f_round", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 || !isNum(args[0]) {
			return jinja.Value{}, fmt.Errorf("TypeError: round: a number is required")
		}
		x := libFloat(args[0])
		prec := 0
		if v, ok := kwOrArg(args, kwargs, 1, "precision"); ok {
			prec = int(libInt(v))
		}
		method := "common"
		if v, ok := kwOrArg(args, kwargs, 2, "method"); ok {
			method = pyStr(v)
		}
		p := math.Pow(10, float64(prec))
		switch method {
		case "common":
			if prec >= 0 {
				r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', prec, 64), 64)
				return jinja.NewFloat(r), nil
			}
			return jinja.NewFloat(math.RoundToEven(x*p) / p), nil
		case "floor":
			return jinja.NewFloat(math.Floor(x*p) / p), nil
		case "ceil":
			return jinja.NewFloat(math.Ceil(x*p) / p), nil
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
			key = attrGetter(pyStr(a))
		}
		out, err := sortValues(items, key, cs.IsTruthy(), rev.IsTruthy())
		if err != nil {
			return jinja.Value{}, err
		}
		return jinja.NewList(out), nil
	})
	def("__f_dictsort", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 || !args[0].IsDict() {
			return jinja.Value{}, fmt.Errorf("TypeError: dictsort needs a mapping")
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
		return jinja.NewString(strings.ToLower(k.AsString()))
	}
	return k
}
