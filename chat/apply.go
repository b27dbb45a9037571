package chat

import (
	"fmt"
	"strings"

	"github.com/ardanlabs/jinja"
)

// apply is __apply(f, args..., kw=..., __star=xs, __dstar=d): a call
// with *args and **kwargs (rewrite.go's applyCall), which the library's
// calls cannot spread. As in Python, xs may be any iterable (None and
// numbers are not) and adds positional arguments after the call's own;
// d must be a dict with string keys, and a keyword given twice is a
// TypeError. The keywords' order (explicit ones, then d's) goes to f as
// __kw, which macros read for their kwargs.
func apply(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
	if len(args) == 0 {
		return jinja.Value{}, fmt.Errorf("__apply: no callable")
	}
	f := args[0]
	pos := append([]jinja.Value(nil), args[1:]...)
	if xs, ok := kwargs["__star"]; ok {
		if notIterable(xs) {
			return jinja.Value{}, fmt.Errorf("TypeError: Value after * must be an iterable, not %s", pyTypeName(xs))
		}
		items, err := pySeq(xs)
		if err != nil {
			return jinja.Value{}, err
		}
		pos = append(pos, items...)
	}
	kw := map[string]jinja.Value{}
	var order []string
	for _, k := range kwKeys(kwargs) {
		if k != "__star" && k != "__dstar" {
			kw[k] = kwargs[k]
			order = append(order, k)
		}
	}
	if d, ok := kwargs["__dstar"]; ok {
		if d.IsUndefined() {
			return jinja.Value{}, fmt.Errorf("UndefinedError: ** of an undefined value")
		}
		if !d.IsDict() {
			return jinja.Value{}, fmt.Errorf("TypeError: argument after ** must be a mapping, not %s", pyTypeName(d))
		}
		dict := d.AsDict()
		for _, k := range dict.Keys {
			if key := origKey(dict, k); !key.IsString() {
				return jinja.Value{}, fmt.Errorf("TypeError: keywords must be strings")
			}
			if _, dup := kw[k]; dup {
				return jinja.Value{}, fmt.Errorf("TypeError: got multiple values for keyword argument '%s'", k)
			}
			kw[k] = dict.Data[k]
			order = append(order, k)
		}
	}
	if len(order) > 0 {
		kw["__kw"] = jinja.NewString(strings.Join(order, ","))
	}
	if !f.IsCallable() || isBig(f) {
		return jinja.Value{}, fmt.Errorf("TypeError: '%s' object is not callable", pyTypeName(f))
	}
	return f.AsCallable().Fn(pos, kw)
}

// noDefaultName names the placeholder a macro parameter with a computed
// default receives when the call leaves it out (compile.go's macroStmt).
const noDefaultName = "\x00no default"

func noDefault([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
	return jinja.NewCallable(noDefaultName, func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
		return jinja.Value{}, fmt.Errorf("internal error: a macro default was not evaluated")
	}), nil
}

func isNoDefault(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	return jinja.NewBool(len(args) == 1 && args[0].IsCallable() && args[0].AsCallable().Name == noDefaultName), nil
}
