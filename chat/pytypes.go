package chat

import (
	"fmt"
	"runtime"
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

func isTuple(v jinja.Value) bool { return v.IsList() && listKind(v) == "tuple" }

// isView is a dict's items(), keys() or values().
func isView(v jinja.Value) bool {
	if !v.IsList() {
		return false
	}
	k := listKind(v)
	return k != "list" && k != "tuple"
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
