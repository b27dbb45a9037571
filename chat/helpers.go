package chat

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ardanlabs/jinja"
)

type fn = func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error)

// installHelpers binds the compiled template's helper callables and
// transformers' globals. Names set in the data scope shadow the library's
// globals, which is how range, namespace, raise_exception and strftime_now
// get our bounded, deterministic versions.
func installHelpers(vars map[string]jinja.Value, st *renderState, now func() time.Time) {
	def := func(name string, f fn) { vars[name] = jinja.NewCallable(name, f) }
	empty := jinja.NewString("")

	def("__p", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		s := ""
		if len(args) > 0 {
			var err error
			if s, err = st.str(args[0]); err != nil {
				return jinja.Value{}, err
			}
		}
		st.out += len(s)
		if st.out > st.maxOut {
			st.limitErr = fmt.Errorf("rendered text exceeds %d bytes", st.maxOut)
			return jinja.Value{}, st.limitErr
		}
		return jinja.NewString(s), nil
	})
	def("__rl", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 1 && args[0].IsString() {
			st.out -= len(args[0].AsString())
		}
		return args[0], nil
	})
	def("__l", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		st.line = int(args[0].AsInt())
		return empty, nil
	})
	tick := func() error {
		st.ticks++
		if st.ticks > st.maxTicks {
			st.limitErr = fmt.Errorf("more than %d loop iterations and macro calls", st.maxTicks)
			return st.limitErr
		}
		return nil
	}
	def("__t", func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
		return empty, tick()
	})
	def("__enter", func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
		st.depth++
		if st.depth > maxMacroDepth {
			st.limitErr = fmt.Errorf("macro calls nested deeper than %d", maxMacroDepth)
			return jinja.Value{}, st.limitErr
		}
		return empty, tick()
	})
	def("__leave", func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
		st.depth--
		return empty, nil
	})
	def("__gen", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if !st.marks {
			return empty, nil
		}
		if args[0].AsInt() == 1 {
			return jinja.NewString(genOpen), nil
		}
		return jinja.NewString(genClose), nil
	})

	installBounded(vars, st, def)
	def("__f_tojson", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) > 0 {
			if err := st.check(args[0]); err != nil {
				return jinja.Value{}, err
			}
		}
		return filterToJSON(args, kwargs, st.maxOut)
	})
	def("__f_string", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return empty, nil
		}
		s, err := st.str(args[0])
		return jinja.NewString(s), err
	})
	def("__f_join", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) > 0 {
			if err := st.check(args[0]); err != nil {
				return jinja.Value{}, err
			}
		}
		v, err := filterJoin(args, kwargs, st.maxOut)
		if err != nil && st.limitErr == nil && strings.Contains(err.Error(), "larger than") {
			st.limitErr = err
		}
		return v, err
	})
	def("__f_capitalize", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return empty, nil
		}
		s, err := st.str(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		return jinja.NewString(pyCapitalize(s)), nil
	})

	// trim, lower and upper work on Python's str() of the value, as jinja2's
	// soft_str does: None trims to "None".
	strFilter := func(name string, f func(s string, args []jinja.Value) string) {
		def("__f_"+name, func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			if len(args) == 0 {
				return empty, nil
			}
			s, err := st.str(args[0])
			if err != nil {
				return jinja.Value{}, err
			}
			return jinja.NewString(f(s, args[1:])), nil
		})
	}
	strFilter("trim", func(s string, args []jinja.Value) string {
		if len(args) > 0 && !args[0].IsNone() && !args[0].IsUndefined() {
			return strings.Trim(s, pyStr(args[0]))
		}
		return strings.TrimFunc(s, isPySpace)
	})
	strFilter("lower", func(s string, _ []jinja.Value) string { return pyLower(s) })
	strFilter("upper", func(s string, _ []jinja.Value) string { return pyUpper(s) })

	def("raise_exception", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		msg := ""
		if len(args) > 0 {
			if err := st.check(args[0]); err != nil {
				return jinja.Value{}, err
			}
			msg = pyStr(args[0])
		}
		st.raiseErr = &RaiseError{Message: msg, Line: st.line}
		return jinja.Value{}, st.raiseErr
	})
	def("strftime_now", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 || !args[0].IsString() {
			return jinja.Value{}, fmt.Errorf("strftime_now: expected a format string")
		}
		s, ok := strftime(now(), args[0].AsString(), st.maxOut)
		if !ok {
			return jinja.Value{}, st.fail("strftime_now result would be larger than %d bytes", st.maxOut)
		}
		return jinja.NewString(s), nil
	})
	// lipsum is a global in jinja2 (random text): defined, but gotune cannot
	// render what it would, so calling it is an error
	def("__noloader", func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
		return jinja.Value{}, fmt.Errorf("TypeError: no loader for this environment specified")
	})
	def("lipsum", func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
		return jinja.Value{}, fmt.Errorf("lipsum() gives random text, which gotune does not reproduce")
	})
	def("range", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		var start, stop, step int64 = 0, 0, 1
		for _, a := range args {
			if !a.IsInt() {
				return jinja.Value{}, fmt.Errorf("range: arguments must be integers")
			}
		}
		switch len(args) {
		case 1:
			stop = args[0].AsInt()
		case 2:
			start, stop = args[0].AsInt(), args[1].AsInt()
		case 3:
			start, stop, step = args[0].AsInt(), args[1].AsInt(), args[2].AsInt()
		default:
			return jinja.Value{}, fmt.Errorf("range: expected 1 to 3 arguments")
		}
		if step == 0 {
			return jinja.Value{}, fmt.Errorf("range: step must not be zero")
		}
		var items []jinja.Value
		for i := start; (step > 0 && i < stop) || (step < 0 && i > stop); i += step {
			if len(items) >= maxRange {
				st.limitErr = fmt.Errorf("range longer than %d", maxRange)
				return jinja.Value{}, st.limitErr
			}
			items = append(items, jinja.NewInt(i))
		}
		return jinja.NewList(items), nil
	})
	// kwargs arrive as a Go map: their order is the call's where the
	// compiler passed it (__kw, see kwOrder), else sorted for determinism.
	kwDict := func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		d := jinja.NewDict()
		if len(args) > 0 && args[0].IsDict() {
			src := args[0].AsDict()
			for _, k := range src.Keys {
				d.AsDict().Set(k, src.Data[k])
			}
		}
		for _, k := range kwKeys(kwargs) {
			d.AsDict().Set(k, kwargs[k])
		}
		return d, st.check(d)
	}
	def("namespace", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		d, err := kwDict(args, kwargs)
		if err == nil {
			namespaces.set(d.AsDict(), true)
		}
		return d, err
	})
	def("dict", kwDict)
}

// filterToJSON is transformers' tojson; its text is held to max bytes.
func filterToJSON(args []jinja.Value, kwargs map[string]jinja.Value, maxText int) (jinja.Value, error) {
	if len(args) == 0 {
		return jinja.Value{}, fmt.Errorf("tojson: missing value")
	}
	o := &jsonOpts{itemSep: ", ", keySep: ": ", max: maxText}
	get := func(name string, pos int) (jinja.Value, bool) {
		if v, ok := kwargs[name]; ok {
			return v, true
		}
		if len(args) > pos {
			return args[pos], true
		}
		return jinja.Value{}, false
	}
	// transformers' signature: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
	if v, ok := get("ensure_ascii", 1); ok {
		o.ascii = v.IsTruthy()
	}
	if v, ok := get("indent", 2); ok && !v.IsNone() && !v.IsUndefined() {
		o.hasInd = true
		switch {
		case v.IsInt():
			o.indent = strings.Repeat(" ", int(max(0, min(v.AsInt(), 64))))
		case v.IsString():
			o.indent = v.AsString()
		default:
			return jinja.Value{}, fmt.Errorf("tojson: indent must be an integer or string")
		}
		o.itemSep = ","
	}
	if v, ok := get("separators", 3); ok && !v.IsNone() && !v.IsUndefined() {
		if !v.IsList() || v.AsList().Len() != 2 || !v.AsList().Items[0].IsString() || !v.AsList().Items[1].IsString() {
			return jinja.Value{}, fmt.Errorf("tojson: separators must be two strings")
		}
		o.itemSep, o.keySep = v.AsList().Items[0].AsString(), v.AsList().Items[1].AsString()
	}
	if v, ok := get("sort_keys", 4); ok {
		o.sortKeys = v.IsTruthy()
	}
	var b strings.Builder
	if err := jsonDumps(&b, args[0], o, 0); err != nil {
		return jinja.Value{}, fmt.Errorf("tojson: %w", err)
	}
	return jinja.NewString(b.String()), nil
}

// filterJoin is jinja2's join; its text is held to max bytes.
func filterJoin(args []jinja.Value, kwargs map[string]jinja.Value, max int) (jinja.Value, error) {
	if len(args) == 0 {
		return jinja.NewString(""), nil
	}
	sep := ""
	if len(args) > 1 {
		sep = pyStr(args[1])
	}
	if v, ok := kwargs["d"]; ok {
		sep = pyStr(v)
	}
	attr, hasAttr := kwargs["attribute"]
	var items []jinja.Value
	switch v := args[0]; {
	case isNamespace(v):
		return jinja.Value{}, fmt.Errorf("TypeError: 'Namespace' object is not iterable")
	case v.IsList():
		items = v.AsList().Items
	case v.IsDict():
		for _, k := range v.AsDict().Keys {
			items = append(items, origKey(v.AsDict(), k))
		}
	case v.IsString():
		// joining a string's characters: written directly, without a value
		// per character.
		var b strings.Builder
		for i, r := range v.AsString() {
			if i > 0 {
				b.WriteString(sep)
			}
			b.WriteRune(r)
			if b.Len() > max {
				return jinja.Value{}, fmt.Errorf("join result would be larger than %d bytes", max)
			}
		}
		return jinja.NewString(b.String()), nil
	case v.IsUndefined():
	default:
		return jinja.Value{}, fmt.Errorf("TypeError: '%s' object is not iterable", pyTypeName(v))
	}
	var b strings.Builder
	for i, it := range items {
		if hasAttr {
			if !it.IsDict() {
				return jinja.Value{}, fmt.Errorf("join: attribute on a non-mapping")
			}
			it = it.AsDict().Data[pyStr(attr)]
		}
		if i > 0 {
			b.WriteString(sep)
		}
		if err := digitLimit(it); err != nil {
			return jinja.Value{}, err
		}
		b.WriteString(pyStr(it))
		if b.Len() > max {
			return jinja.Value{}, fmt.Errorf("join result would be larger than %d bytes", max)
		}
	}
	return jinja.NewString(b.String()), nil
}

// strftime formats t as Python's time.strftime (C locale); ok is false when
// the text would pass max bytes (a format of many %B is a memory bomb).
func strftime(t time.Time, f string, max int) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if b.Len() > max {
			return "", false
		}
		if f[i] != '%' || i+1 >= len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		pad := true
		if f[i] == '-' && i+1 < len(f) { // glibc: no padding
			pad = false
			i++
		}
		num := func(n, width int) {
			s := strconv.Itoa(n)
			for pad && len(s) < width {
				s = "0" + s
			}
			b.WriteString(s)
		}
		switch f[i] {
		case 'Y':
			num(t.Year(), 1)
		case 'y':
			num(t.Year()%100, 2)
		case 'm':
			num(int(t.Month()), 2)
		case 'd':
			num(t.Day(), 2)
		case 'e':
			s := strconv.Itoa(t.Day())
			if pad && len(s) < 2 {
				s = " " + s
			}
			b.WriteString(s)
		case 'H':
			num(t.Hour(), 2)
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			num(h, 2)
		case 'M':
			num(t.Minute(), 2)
		case 'S':
			num(t.Second(), 2)
		case 'f':
			fmt.Fprintf(&b, "%06d", t.Nanosecond()/1000)
		case 'j':
			num(t.YearDay(), 3)
		case 'p':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'B':
			b.WriteString(t.Month().String())
		case 'b', 'h':
			b.WriteString(t.Month().String()[:3])
		case 'A':
			b.WriteString(t.Weekday().String())
		case 'a':
			b.WriteString(t.Weekday().String()[:3])
		case 'w':
			num(int(t.Weekday()), 1)
		case 'Z':
			name, _ := t.Zone()
			b.WriteString(name)
		case 'z':
			b.WriteString(t.Format("-0700"))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(f[i])
		}
	}
	return b.String(), b.Len() <= max
}
