package chat

import (
	"fmt"
	"math/big"
	"runtime"
	"strings"
	"sync"
	"weak"

	"github.com/ardanlabs/jinja"
)

// The library's values are JSON-like: it has no tuple and its dicts have
// only string keys. Python's tuples (str.partition's result, a macro's
// varargs, tuple literals) print as (a, b), and a dict literal such as
// {1: 'a'} has an int key that a string does not find. Such lists and
// dicts are ordinary library values that are also noted here, so that the
// library handles them as it always does while the helpers that print,
// compare and index them see the Python type.
//
// The notes are keyed by weak pointers and removed when the value is
// collected, so they neither keep values alive nor tie a value to one
// render (values may be shared between concurrent renders of a template).

type registry[T, I any] struct{ m sync.Map }

func (r *registry[T, I]) set(p *T, info I) {
	k := weak.Make(p)
	r.m.Store(k, info)
	runtime.AddCleanup(p, func(k weak.Pointer[T]) { r.m.Delete(k) }, k)
}

func (r *registry[T, I]) get(p *T) (I, bool) {
	v, ok := r.m.Load(weak.Make(p))
	if !ok {
		var zero I
		return zero, false
	}
	return v.(I), true
}

// namespaces marks the dicts that are jinja2 Namespace objects: they keep
// attributes as a dict does, but Python sees no mapping, no iterable and
// no len(), prints them as <Namespace {...}> and compares them by identity.
var namespaces registry[jinja.Dict, bool]

func isNamespace(v jinja.Value) bool {
	if !v.IsDict() {
		return false
	}
	_, ok := namespaces.get(v.AsDict())
	return ok
}

// listKinds holds the Python type of lists that are not Python lists:
// "tuple", or the dict views "dict_items", "dict_keys" and "dict_values".
var listKinds registry[jinja.List, string]

func newListKind(kind string, items []jinja.Value) jinja.Value {
	v := jinja.NewList(items)
	listKinds.set(v.AsList(), kind)
	return v
}

// newTuple is a Python tuple of items.
func newTuple(items []jinja.Value) jinja.Value { return newListKind("tuple", items) }

// listKind is the Python type name of a list value ("list" for a plain
// one).
func listKind(v jinja.Value) string {
	if k, ok := listKinds.get(v.AsList()); ok {
		return k
	}
	return "list"
}

func isTuple(v jinja.Value) bool {
	if !v.IsList() {
		return false
	}
	k := listKind(v)
	return k == "tuple" || k == groupKind
}

// groupKind is the kind of groupby's (grouper, list) pairs: tuples that
// also answer .grouper and .list (jinja2's _GroupTuple).
const groupKind = "_GroupTuple"

// isView is a dict's items(), keys() or values().
func isView(v jinja.Value) bool {
	if !v.IsList() {
		return false
	}
	k := listKind(v)
	return k != "list" && k != "tuple" && k != groupKind
}

// dictView is d.items(), d.keys() or d.values(), with the dict's Python
// keys and (key, value) tuples.
func dictView(d *jinja.Dict, name string) jinja.Value {
	items := make([]jinja.Value, len(d.Keys))
	for i, k := range d.Keys {
		switch name {
		case "items":
			items[i] = newTuple([]jinja.Value{origKey(d, k), d.Data[k]})
		case "keys":
			items[i] = origKey(d, k)
		default:
			items[i] = d.Data[k]
		}
	}
	return newListKind("dict_"+name, items)
}

// dictKeys holds, for a dict built by a literal with keys that are not
// strings, the original key of each such entry by the string the library
// stores it under.
var dictKeys registry[jinja.Dict, map[string]jinja.Value]

// origKey is the Python key of a dict's entry k.
func origKey(d *jinja.Dict, k string) jinja.Value {
	if keys, ok := dictKeys.get(d); ok {
		if v, ok := keys[k]; ok {
			return v
		}
	}
	return jinja.NewString(k)
}

// dictLookup finds key in d as Python's dict does: a string finds only a
// string key, a number only an equal number key (1, 1.0 and True are one
// key).
func dictLookup(d *jinja.Dict, key jinja.Value) (jinja.Value, bool) {
	keys, _ := dictKeys.get(d)
	if key.IsString() {
		if _, other := keys[key.AsString()]; other {
			return jinja.Value{}, false
		}
		v, ok := d.Data[key.AsString()]
		return v, ok
	}
	for k, orig := range keys {
		if pyEqual(orig, key) {
			return d.Data[k], true
		}
	}
	return jinja.Value{}, false
}

// newDict is a dict literal: args are its keys and values in turn. Later
// equal keys replace the value and keep the first key, as in Python.
func (st *renderState) newDict(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	if len(args)%2 != 0 {
		return jinja.Value{}, fmt.Errorf("__dict: odd number of arguments")
	}
	v := jinja.NewDict()
	d := v.AsDict()
	var keys map[string]jinja.Value
	for i := 0; i < len(args); i += 2 {
		k, val := args[i], args[i+1]
		switch {
		case k.IsString():
			if _, other := keys[k.AsString()]; other {
				// a string key that prints as an earlier number key:
				// the library has one slot per text
				return jinja.Value{}, fmt.Errorf("dict literal mixes the key %s with a number key of the same text", pyRepr(k))
			}
			d.Set(k.AsString(), val)
			continue
		case k.IsList() && !isTuple(k), k.IsDict():
			return jinja.Value{}, fmt.Errorf("TypeError: unhashable type: '%s'", pyTypeName(k))
		case k.IsUndefined():
			return jinja.Value{}, fmt.Errorf("UndefinedError: dict key is undefined")
		}
		if err := st.check(k); err != nil {
			return jinja.Value{}, err
		}
		found := false
		for s, orig := range keys {
			if pyEqual(orig, k) {
				d.Set(s, val)
				found = true
				break
			}
		}
		if found {
			continue
		}
		s := pyRepr(k)
		if _, taken := d.Data[s]; taken {
			return jinja.Value{}, fmt.Errorf("dict literal mixes the key %s with a string key of the same text", s)
		}
		if keys == nil {
			keys = map[string]jinja.Value{}
		}
		keys[s] = k
		d.Set(s, val)
	}
	if keys != nil {
		dictKeys.set(d, keys)
	}
	return v, st.check(v)
}

// errBadIndex is Python's TypeError for a slice bound that is not an int
// (jinja2 slices with Python's own subscript, so it reaches the template).
var errBadIndex = fmt.Errorf("TypeError: slice indices must be integers or None or have an __index__ method")

// slice is obj[start:stop:step] as Python slices a list, tuple or str
// (None for a bound left out).
func (st *renderState) slice(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	if len(args) != 5 {
		return jinja.Value{}, fmt.Errorf("__slice: expected 5 arguments")
	}
	if folded := args[4].AsBool(); folded {
		// jinja2 evaluated this slice of literals at compile time through
		// its getitem, which turns Python's TypeError into undefined
		v, err := st.slice(append(args[:4:4], jinja.NewBool(false)), nil)
		if err != nil && strings.HasPrefix(err.Error(), "TypeError: ") {
			return jinja.Undefined(), nil
		}
		return v, err
	}
	obj := args[0]
	var n int
	var runes []rune
	switch {
	case obj.IsUndefined():
		return jinja.Value{}, fmt.Errorf("UndefinedError: an undefined value has no attributes or items")
	case obj.IsString():
		runes = []rune(obj.AsString())
		n = len(runes)
	case obj.IsList() && !isView(obj):
		n = obj.AsList().Len()
	case obj.IsDict():
		// jinja2 compiles x[a:b] to Python's own subscript, bypassing its
		// getitem (which gives undefined where Python fails)
		return jinja.Value{}, fmt.Errorf("TypeError: unhashable type: 'slice'")
	default:
		return jinja.Value{}, fmt.Errorf("TypeError: '%s' object is not subscriptable", pyTypeName(obj))
	}
	bound := func(v jinja.Value) (int64, bool, error) {
		switch {
		case v.IsNone():
			return 0, false, nil
		case isInt(v):
			b := toBig(v)
			// past the length either way is the same as the length
			lim := big.NewInt(int64(n) + 1)
			if b.Cmp(lim) > 0 {
				return int64(n) + 1, true, nil
			}
			if b.Cmp(new(big.Int).Neg(lim)) < 0 {
				return -int64(n) - 1, true, nil
			}
			return b.Int64(), true, nil
		}
		return 0, false, errBadIndex
	}
	step, hasStep, err := bound(args[3])
	if err != nil {
		return jinja.Value{}, err
	}
	if !hasStep {
		step = 1
	}
	if step == 0 {
		return jinja.Value{}, fmt.Errorf("ValueError: slice step cannot be zero")
	}
	// CPython's PySlice_AdjustIndices
	adjust := func(v jinja.Value, dflt int64) (int64, error) {
		i, ok, err := bound(v)
		if err != nil || !ok {
			return dflt, err
		}
		ln := int64(n)
		if i < 0 {
			i += ln
			if i < 0 {
				i = 0
				if step < 0 {
					i = -1
				}
			}
		} else if i >= ln {
			i = ln
			if step < 0 {
				i = ln - 1
			}
		}
		return i, nil
	}
	lo, hi := int64(0), int64(n)
	if step < 0 {
		lo, hi = int64(n)-1, -1
	}
	start, err := adjust(args[1], lo)
	if err != nil {
		return jinja.Value{}, err
	}
	stop, err := adjust(args[2], hi)
	if err != nil {
		return jinja.Value{}, err
	}
	var idx []int64
	for i := start; step > 0 && i < stop || step < 0 && i > stop; i += step {
		idx = append(idx, i)
	}
	if runes != nil || obj.IsString() {
		out := make([]rune, len(idx))
		for j, i := range idx {
			out[j] = runes[i]
		}
		return jinja.NewString(string(out)), nil
	}
	src := obj.AsList().Items
	items := make([]jinja.Value, len(idx))
	for j, i := range idx {
		items[j] = src[i]
	}
	if isTuple(obj) {
		return newTuple(items), nil
	}
	return jinja.NewList(items), nil
}

// iter is what a for loop walks: a dict with keys that are not strings
// gives its Python keys (the library would give their text), and a value
// Python cannot iterate fails as Python's iter() does (the library would
// walk None or a number as empty).
func iter(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	v := args[0]
	if notIterable(v) {
		return jinja.Value{}, fmt.Errorf("TypeError: '%s' object is not iterable", pyTypeName(v))
	}
	if v.IsDict() {
		if _, ok := dictKeys.get(v.AsDict()); ok {
			return jinja.NewList(dictView(v.AsDict(), "keys").AsList().Items), nil
		}
	}
	return v, nil
}

// notIterable says Python's iter() refuses v: None, booleans and numbers
// (jinja2's Undefined iterates as empty).
func notIterable(v jinja.Value) bool { return v.IsNone() || isNum(v) || isNamespace(v) }
