package chat

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ardanlabs/jinja"
)

// makeMacro is __macro(inner, name, params, uses): the macro callable a
// template sees. The library's macro (inner) binds declared parameters
// from positional and keyword arguments and drops anything else; jinja2
// collects surplus positional arguments in the tuple varargs and unknown
// keywords in the dict kwargs when the body names them, and raises
// otherwise. The wrapper sorts the arguments out as jinja2 does and hands
// inner only what it binds.
func (st *renderState) makeMacro(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	if len(args) != 4 || !args[0].IsCallable() {
		return jinja.Value{}, fmt.Errorf("__macro: bad arguments")
	}
	inner := args[0].AsCallable().Fn
	name := args[1].AsString()
	var params []string
	if p := args[2].AsString(); p != "" {
		params = strings.Split(p, ",")
	}
	uses := macroUse(args[3].AsInt())
	return jinja.NewCallable(name, func(pos []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error) {
		var extra []jinja.Value
		if len(pos) > len(params) {
			if uses&usesVarargs == 0 {
				return jinja.Value{}, fmt.Errorf("TypeError: macro '%s' takes not more than %d argument(s)", name, len(params))
			}
			pos, extra = pos[:len(params)], pos[len(params):]
		}
		order := kwKeys(kw)
		call := make(map[string]jinja.Value, len(kw)+2)
		surplus := jinja.NewDict()
		for _, k := range order {
			v, ok := kw[k]
			if !ok {
				continue
			}
			i := indexOf(params, k)
			switch {
			case i >= 0 && i < len(pos):
				return jinja.Value{}, fmt.Errorf("TypeError: macro '%s' got multiple values for argument '%s'", name, k)
			case i >= 0, k == "caller" && uses&usesCaller != 0:
				call[k] = v
			case uses&usesKwargs != 0:
				surplus.AsDict().Set(k, v)
			default:
				return jinja.Value{}, fmt.Errorf("TypeError: macro '%s' takes no keyword argument '%s'", name, k)
			}
		}
		if uses&usesVarargs != 0 {
			call["varargs"] = newTuple(extra)
		}
		if uses&usesKwargs != 0 {
			call["kwargs"] = surplus
		}
		return inner(pos, call)
	}), nil
}

// kwKeys are a call's keyword names in the call's order where the compiler
// passed it (__kw, see kwOrder), else sorted: the library hands keywords
// over in a Go map.
func kwKeys(kw map[string]jinja.Value) []string {
	var order []string
	if o, ok := kw["__kw"]; ok && o.IsString() && o.AsString() != "" {
		for _, k := range strings.Split(o.AsString(), ",") {
			if _, ok := kw[k]; ok && !contains(order, k) {
				order = append(order, k)
			}
		}
	}
	var rest []string
	for k := range kw {
		if k != "__kw" && !contains(order, k) {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	return append(order, rest...)
}

func indexOf(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return -1
}
