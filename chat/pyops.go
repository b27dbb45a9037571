package chat

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ardanlabs/jinja"
)

// Python semantics for the operators, comparisons, string methods and
// filters where the library's differ from jinja2's (which evaluates them
// with Python's own types). The compiled template calls these helpers in
// place of the library's operators; see rewrite.go.

// pyTypeName is Python's type name of a value, for error messages.
func pyTypeName(v jinja.Value) string {
	switch {
	case isBig(v):
		return "int"
	case v.IsUndefined():
		return "Undefined"
	case v.IsNone():
		return "NoneType"
	case v.IsBool():
		return "bool"
	case v.IsInt():
		return "int"
	case v.IsFloat():
		return "float"
	case v.IsString():
		return "str"
	case v.IsList():
		return listKind(v)
	case isNamespace(v):
		return "Namespace"
	case v.IsDict():
		return "dict"
	}
	return "object"
}

func isNum(v jinja.Value) bool { return v.IsInt() || v.IsFloat() || v.IsBool() || isBig(v) }

// pyCompare orders a and b as Python does, or fails as Python does on
// values of kinds that have no order between them.
func pyCompare(op string, a, b jinja.Value) (int, error) {
	switch {
	case isNum(a) && isNum(b):
		return compareNum(a, b), nil
	case a.IsString() && b.IsString():
		return strings.Compare(a.AsString(), b.AsString()), nil
	case a.IsList() && b.IsList():
		if isTuple(a) != isTuple(b) || isView(a) || isView(b) {
			return 0, fmt.Errorf("TypeError: '%s' not supported between instances of '%s' and '%s'", op, pyTypeName(a), pyTypeName(b))
		}
		la, lb := a.AsList().Items, b.AsList().Items
		for i := 0; i < len(la) && i < len(lb); i++ {
			if pyEqual(la[i], lb[i]) {
				continue
			}
			return pyCompare(op, la[i], lb[i])
		}
		return cmpOrdered(len(la), len(lb)), nil
	}
	if a.IsUndefined() || b.IsUndefined() {
		return 0, fmt.Errorf("UndefinedError: comparison with an undefined value")
	}
	return 0, fmt.Errorf("TypeError: '%s' not supported between instances of '%s' and '%s'", op, pyTypeName(a), pyTypeName(b))
}

func cmpOrdered[T int | int64 | float64](x, y T) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// pyEqual is Python's == on JSON-like values.
func pyEqual(a, b jinja.Value) bool {
	switch {
	case isNamespace(a) || isNamespace(b):
		return a.IsDict() && b.IsDict() && a.AsDict() == b.AsDict()
	case isNum(a) && isNum(b):
		if isBig(a) || isBig(b) {
			return compareNum(a, b) == 0
		}
		return libFloat(a) == libFloat(b) && libInt(a) == libInt(b)
	case a.IsString() && b.IsString():
		return a.AsString() == b.AsString()
	case a.IsNone() && b.IsNone(), a.IsUndefined() && b.IsUndefined():
		return true
	case a.IsList() && b.IsList():
		la, lb := a.AsList().Items, b.AsList().Items
		if len(la) != len(lb) || isTuple(a) != isTuple(b) || isView(a) != isView(b) || isView(a) && listKind(a) != listKind(b) || listKind(a) == "dict_values" {
			return false
		}
		for i := range la {
			if !pyEqual(la[i], lb[i]) {
				return false
			}
		}
		return true
	case a.IsDict() && b.IsDict():
		da, db := a.AsDict(), b.AsDict()
		if len(da.Keys) != len(db.Keys) {
			return false
		}
		for _, k := range da.Keys {
			w, ok := db.Data[k]
			if !ok || !pyEqual(da.Data[k], w) {
				return false
			}
		}
		return true
	}
	return false
}

func (st *renderState) compare(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	if len(args) != 3 {
		return jinja.Value{}, fmt.Errorf("__cmp: expected 3 arguments")
	}
	op := args[1].AsString()
	c, err := pyCompare(op, args[0], args[2])
	if err != nil {
		return jinja.Value{}, err
	}
	var r bool
	switch op {
	case "<":
		r = c < 0
	case "<=":
		r = c <= 0
	case ">":
		r = c > 0
	case ">=":
		r = c >= 0
	}
	return jinja.NewBool(r), nil
}

func numOperands(op string, a, b jinja.Value) error {
	if isNum(a) && isNum(b) {
		return nil
	}
	if a.IsUndefined() || b.IsUndefined() {
		return fmt.Errorf("UndefinedError: %s on an undefined value", op)
	}
	return fmt.Errorf("TypeError: unsupported operand type(s) for %s: '%s' and '%s'", op, pyTypeName(a), pyTypeName(b))
}

func bothInt(a, b jinja.Value) bool { return isInt(a) && isInt(b) }

func (st *renderState) floorDiv(a, b jinja.Value) (jinja.Value, error) {
	if err := numOperands("//", a, b); err != nil {
		return jinja.Value{}, err
	}
	if bothInt(a, b) {
		return st.intArith("//", a, b)
	}
	x, y, err := floatOperands(a, b)
	if err != nil {
		return jinja.Value{}, err
	}
	if y == 0 {
		return jinja.Value{}, fmt.Errorf("ZeroDivisionError: float floor division by zero")
	}
	return jinja.NewFloat(pyFloorDiv(x, y)), nil
}

func (st *renderState) modulo(a, b jinja.Value) (jinja.Value, error) {
	if a.IsString() {
		return st.printf(a.AsString(), b)
	}
	if err := numOperands("%", a, b); err != nil {
		return jinja.Value{}, err
	}
	if bothInt(a, b) {
		return st.intArith("%", a, b)
	}
	x, y, err := floatOperands(a, b)
	if err != nil {
		return jinja.Value{}, err
	}
	if y == 0 {
		return jinja.Value{}, fmt.Errorf("ZeroDivisionError: float modulo")
	}
	m := math.Mod(x, y)
	switch {
	case m != 0 && (m < 0) != (y < 0):
		m += y
	case m == 0:
		m = math.Copysign(0, y)
	}
	return jinja.NewFloat(m), nil
}

// pyFloorDiv is CPython's float floor division, which works from fmod so
// that 1 // 0.1 is 9.0 (floor(1 / 0.1) would be 10).
func pyFloorDiv(x, y float64) float64 {
	mod := math.Mod(x, y)
	div := (x - mod) / y
	if mod != 0 && (y < 0) != (mod < 0) {
		div--
	}
	if div == 0 {
		return math.Copysign(0, x/y)
	}
	f := math.Floor(div)
	if div-f > 0.5 {
		f++
	}
	return f
}

func (st *renderState) power(a, b jinja.Value) (jinja.Value, error) {
	if err := numOperands("**", a, b); err != nil {
		return jinja.Value{}, err
	}
	if bothInt(a, b) {
		return st.intArith("**", a, b)
	}
	x, y, err := floatOperands(a, b)
	if err != nil {
		return jinja.Value{}, err
	}
	if x == 0 && y < 0 {
		return jinja.Value{}, fmt.Errorf("ZeroDivisionError: 0.0 cannot be raised to a negative power")
	}
	if x < 0 && y != math.Trunc(y) && !math.IsInf(y, 0) {
		// Python gives a complex number, which templates never print on purpose
		return jinja.Value{}, fmt.Errorf("negative number to a fractional power: complex results are not supported")
	}
	// a float power (192-bit arithmetic, ~100 µs and ~70 kB) counts as
	// walking 2^18 values: a render may take about 2,000 of them
	if st.work += 1 << 18; st.work > maxWork {
		return jinja.Value{}, st.fail("the template does more than %d steps of work on values", maxWork)
	}
	r := pyPow(x, y)
	if math.IsInf(r, 0) && !math.IsInf(x, 0) && !math.IsInf(y, 0) {
		return jinja.Value{}, fmt.Errorf("OverflowError: (34, 'Numerical result out of range')")
	}
	return jinja.NewFloat(r), nil
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// printf is Python's str % args for the conversions templates use.
func (st *renderState) printf(f string, arg jinja.Value) (jinja.Value, error) {
	// a tuple gives the arguments; any other value is the one argument (a
	// dict also serves %(key)s)
	args := []jinja.Value{arg}
	if isTuple(arg) {
		args = arg.AsList().Items
	}
	mapping := arg.IsDict()
	// Python's % takes any other object with [] (a list) as a mapping
	// too: it never complains of unconverted arguments
	sequenceArg := arg.IsList() && !isTuple(arg) && !isView(arg) || arg.IsUndefined()
	var b strings.Builder
	next := 0
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			b.WriteByte(f[i])
			continue
		}
		i++
		if i < len(f) && f[i] == '%' {
			b.WriteByte('%')
			continue
		}
		var keyed *jinja.Value
		if i < len(f) && f[i] == '(' {
			end := strings.IndexByte(f[i:], ')')
			if end < 0 {
				return jinja.Value{}, fmt.Errorf("ValueError: incomplete format key")
			}
			if !mapping {
				return jinja.Value{}, fmt.Errorf("TypeError: format requires a mapping")
			}
			key := f[i+1 : i+end]
			v, ok := dictLookup(arg.AsDict(), jinja.NewString(key))
			if !ok {
				return jinja.Value{}, fmt.Errorf("KeyError: %s", pyRepr(jinja.NewString(key)))
			}
			keyed = &v
			i += end + 1
		}
		// flags, width, precision (a '*' takes them from the arguments)
		sp := formatSpec{fill: ' ', precision: -1}
		left := false
	flags:
		for ; i < len(f); i++ {
			switch f[i] {
			case '-':
				left = true
			case '+':
				sp.sign = '+'
			case ' ':
				if sp.sign != '+' {
					sp.sign = ' '
				}
			case '0':
				sp.zero = true
			case '#':
				sp.alt = true
			default:
				break flags
			}
		}
		num := func(star bool) (int, error) {
			if star {
				if next >= len(args) {
					return 0, fmt.Errorf("TypeError: not enough arguments for format string")
				}
				v := args[next]
				next++
				if !isInt(v) || isBig(v) {
					return 0, fmt.Errorf("TypeError: * wants int")
				}
				if n := libInt(v); n > 1<<20 || n < -(1<<20) {
					return 0, st.fail("%%-format width or precision %d is larger than %d", n, 1<<20)
				}
				return int(libInt(v)), nil
			}
			j := i
			for j < len(f) && f[j] >= '0' && f[j] <= '9' {
				j++
			}
			n, err := strconv.Atoi(f[i:j])
			if j > i && (err != nil || n > 1<<20) {
				return 0, fmt.Errorf("ValueError: width too big")
			}
			i = j - 1
			return n, nil
		}
		if i < len(f) && (f[i] == '*' || f[i] >= '1' && f[i] <= '9') {
			w, err := num(f[i] == '*')
			if err != nil {
				return jinja.Value{}, err
			}
			if w < 0 {
				left, w = true, -w
			}
			sp.width = w
			i++
		}
		if i < len(f) && f[i] == '.' {
			i++
			p, err := 0, error(nil)
			if i < len(f) && (f[i] == '*' || f[i] >= '0' && f[i] <= '9') {
				if p, err = num(f[i] == '*'); err != nil {
					return jinja.Value{}, err
				}
				i++
			}
			sp.precision = max(p, 0)
		}
		for i < len(f) && (f[i] == 'h' || f[i] == 'l' || f[i] == 'L') {
			i++ // C length modifiers, ignored as Python does
		}
		if left {
			sp.align, sp.zero = '<', false
		}
		var a jinja.Value
		switch {
		case i >= len(f):
			return jinja.Value{}, fmt.Errorf("ValueError: incomplete format")
		case keyed != nil:
			a = *keyed
		case next >= len(args):
			return jinja.Value{}, fmt.Errorf("TypeError: not enough arguments for format string")
		default:
			a = args[next]
			next++
		}
		text, err := st.printfOne(f[i], a, sp)
		if err != nil {
			return jinja.Value{}, err
		}
		b.WriteString(text)
		if err := st.room(b.Len(), "formatted string"); err != nil {
			return jinja.Value{}, err
		}
	}
	if next < len(args) && !mapping && !sequenceArg {
		return jinja.Value{}, fmt.Errorf("TypeError: not all arguments converted during string formatting")
	}
	return jinja.NewString(b.String()), nil
}

// defined fails on an undefined value, as jinja2 does when one is
// subscripted or has an attribute read.
func defined(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	if len(args) != 1 {
		return jinja.Value{}, fmt.Errorf("__def: expected 1 value")
	}
	if args[0].IsUndefined() {
		return jinja.Value{}, fmt.Errorf("UndefinedError: an undefined value has no attributes or items")
	}
	return args[0], nil
}

// item is jinja2's obj[key]. A list or str indexed by anything but an int
// (or bool, an int in Python) gives undefined, as jinja2's getitem does
// when Python's [] fails; the library would read such a key as 0. Dict
// keys are looked up as the library stores them.
func item(obj, key jinja.Value) (jinja.Value, error) {
	if obj.IsUndefined() {
		return jinja.Value{}, fmt.Errorf("UndefinedError: an undefined value has no attributes or items")
	}
	switch {
	case isView(obj):
		// dict views are not subscriptable: jinja2 gives undefined
		return jinja.Undefined(), nil
	case obj.IsList() || obj.IsString():
		var i int64
		switch {
		case key.IsInt():
			i = key.AsInt()
		case key.IsBool():
			if key.AsBool() {
				i = 1
			}
		default:
			return jinja.Undefined(), nil
		}
		if obj.IsList() {
			items := obj.AsList().Items
			if i < 0 {
				i += int64(len(items))
			}
			if i < 0 || i >= int64(len(items)) {
				return jinja.Undefined(), nil
			}
			return items[i], nil
		}
		rs := []rune(obj.AsString())
		if i < 0 {
			i += int64(len(rs))
		}
		if i < 0 || i >= int64(len(rs)) {
			return jinja.Undefined(), nil
		}
		return jinja.NewString(string(rs[i])), nil
	case obj.IsDict():
		// a str key finds only str keys, a number only number keys
		if v, ok := dictLookup(obj.AsDict(), key); ok {
			return v, nil
		}
	}
	return jinja.Undefined(), nil
}

// mutable fails where jinja2's immutable sandbox refuses a method that
// modifies a list or dict.
func mutable(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	v, name := args[0], args[1].AsString()
	unsafe := false
	switch {
	case v.IsList() && !isTuple(v) && !isView(v):
		unsafe = map[string]bool{"append": true, "reverse": true, "insert": true, "sort": true, "extend": true, "remove": true}[name]
		if !unsafe && name != "pop" {
			return jinja.Value{}, noAttribute(v, name)
		}
	case v.IsDict():
		unsafe = map[string]bool{"clear": true, "pop": true, "popitem": true, "setdefault": true, "update": true}[name]
	case v.IsUndefined():
		return jinja.Value{}, fmt.Errorf("UndefinedError: undefined value has no attribute '%s'", name)
	default:
		// str, tuple, None, numbers have none of these methods
		return jinja.Value{}, noAttribute(v, name)
	}
	if unsafe {
		return jinja.Value{}, fmt.Errorf("SecurityError: access to attribute '%s' of '%s' object is unsafe", name, pyTypeName(v))
	}
	return v, nil
}

// pySplit is str.split/str.rsplit with Python's whitespace rule when sep is
// absent; max < 0 means no limit.
func pySplit(s string, sep *string, max int, right bool) []string {
	if sep != nil {
		if max < 0 {
			return strings.Split(s, *sep)
		}
		if !right {
			return strings.SplitN(s, *sep, max+1)
		}
		var out []string
		for max > 0 {
			i := strings.LastIndex(s, *sep)
			if i < 0 {
				break
			}
			out = append(out, s[i+len(*sep):])
			s = s[:i]
			max--
		}
		out = append(out, s)
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
		return out
	}
	if max < 0 {
		return strings.Fields(s)
	}
	var out []string
	if !right {
		for {
			s = strings.TrimLeftFunc(s, isPySpace)
			if s == "" {
				return out
			}
			if max == 0 {
				return append(out, s)
			}
			i := strings.IndexFunc(s, isPySpace)
			if i < 0 {
				return append(out, s)
			}
			out = append(out, s[:i])
			s = s[i:]
			max--
		}
	}
	for {
		s = strings.TrimRightFunc(s, isPySpace)
		if s == "" {
			break
		}
		if max == 0 {
			out = append(out, s)
			break
		}
		i := strings.LastIndexFunc(s, isPySpace)
		if i < 0 {
			out = append(out, s)
			break
		}
		_, n := utf8.DecodeRuneInString(s[i:])
		out = append(out, s[i+n:])
		s = s[:i]
		max--
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func strList(ss []string) jinja.Value {
	items := make([]jinja.Value, len(ss))
	for i, s := range ss {
		items[i] = jinja.NewString(s)
	}
	return jinja.NewList(items)
}

// runeIndex converts a byte offset of s to Python's character index.
func runeIndex(s string, i int) int {
	if i < 0 {
		return -1
	}
	return utf8.RuneCountInString(s[:i])
}

func allRunes(s string, f func(rune) bool) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !f(r) {
			return false
		}
	}
	return true
}

func hasCase(s string, upper bool) bool {
	cased := false
	for _, r := range s {
		if unicode.IsUpper(r) || unicode.IsTitle(r) {
			if !upper {
				return false
			}
			cased = true
		} else if unicode.IsLower(r) {
			if upper {
				return false
			}
			cased = true
		}
	}
	return cased
}

// pad is str.ljust/rjust/center.
func pad(s string, width int, fill string, how byte) string {
	n := utf8.RuneCountInString(s)
	if width <= n {
		return s
	}
	total := width - n
	left := 0
	switch how {
	case 'r':
		left = total
	case 'c':
		left = total/2 + (total & width & 1)
	}
	return strings.Repeat(fill, left) + s + strings.Repeat(fill, total-left)
}

// strMethods are the Python str methods __m implements.
var strMethods = map[string]bool{
	"split": true, "rsplit": true, "startswith": true, "endswith": true, "find": true,
	"rfind": true, "index": true, "rindex": true, "title": true, "capitalize": true,
	"swapcase": true, "format": true, "isdigit": true, "isalpha": true, "isalnum": true,
	"isspace": true, "islower": true, "isupper": true, "isnumeric": true, "isdecimal": true,
	"join": true, "partition": true, "rpartition": true, "zfill": true, "ljust": true,
	"rjust": true, "center": true, "removeprefix": true, "removesuffix": true,
	"splitlines": true, "strip": true, "lstrip": true, "rstrip": true, "upper": true, "lower": true,
	"casefold": true, "istitle": true,
}

// method calls a Python str method (and list.index) on args[0].
func (st *renderState) method(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
	recv, name, args := args[0], args[1].AsString(), args[2:]
	arg := func(i int, kw string) (jinja.Value, bool) {
		if v, ok := kwargs[kw]; ok && kw != "" {
			return v, true
		}
		if i < len(args) {
			return args[i], true
		}
		return jinja.Value{}, false
	}
	if name == "copy" {
		// list.copy and dict.copy: shallow copies (Python keys kept)
		switch {
		case recv.IsList() && !isTuple(recv) && !isView(recv):
			return jinja.NewList(append([]jinja.Value(nil), recv.AsList().Items...)), nil
		case recv.IsDict() && !isNamespace(recv):
			src := recv.AsDict()
			out := jinja.NewDict()
			for _, k := range src.Keys {
				out.AsDict().Set(k, src.Data[k])
			}
			if keys, ok := dictKeys.get(src); ok {
				cp := make(map[string]jinja.Value, len(keys))
				for k, v := range keys {
					cp[k] = v
				}
				dictKeys.set(out.AsDict(), cp)
			}
			return out, nil
		case recv.IsUndefined():
			return jinja.Value{}, fmt.Errorf("UndefinedError: undefined value has no attribute 'copy'")
		}
		return jinja.Value{}, noAttribute(recv, name)
	}
	if recv.IsList() && name == "index" {
		if len(args) == 0 {
			return jinja.Value{}, fmt.Errorf("TypeError: index expected an argument")
		}
		for i, it := range recv.AsList().Items {
			if pyEqual(it, args[0]) {
				return jinja.NewInt(int64(i)), nil
			}
		}
		return jinja.Value{}, fmt.Errorf("ValueError: %s is not in list", pyRepr(args[0]))
	}
	if name == "count" && len(args) > 0 {
		// list.count compares every item with its argument
		if err := st.check(recv); err != nil {
			return jinja.Value{}, err
		}
		if err := st.check(args[0]); err != nil {
			return jinja.Value{}, err
		}
		switch {
		case recv.IsList():
			n := 0
			for _, it := range recv.AsList().Items {
				if pyEqual(it, args[0]) {
					n++
				}
			}
			return jinja.NewInt(int64(n)), nil
		case recv.IsString() && args[0].IsString():
			sub := args[0].AsString()
			w, _, ok, err := strWindow(recv.AsString(), args[1:])
			switch {
			case err != nil:
				return jinja.Value{}, err
			case !ok:
				return jinja.NewInt(0), nil
			case sub == "":
				return jinja.NewInt(int64(utf8.RuneCountInString(w) + 1)), nil
			}
			return jinja.NewInt(int64(strings.Count(w, sub))), nil
		}
	}
	if isNamespace(recv) {
		return jinja.Value{}, noAttribute(recv, name)
	}
	if recv.IsDict() {
		d := recv.AsDict()
		switch name {
		case "items", "keys", "values":
			return dictView(d, name), nil
		case "get":
			if len(args) == 0 || len(args) > 2 {
				return jinja.Value{}, fmt.Errorf("TypeError: get expected 1 or 2 arguments, got %d", len(args))
			}
			if v, ok := dictLookup(d, args[0]); ok {
				return v, nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return jinja.None(), nil
		}
	}
	if recv.IsUndefined() {
		return jinja.Value{}, fmt.Errorf("UndefinedError: undefined value has no attribute '%s'", name)
	}
	if !recv.IsString() {
		return jinja.Value{}, noAttribute(recv, name)
	}
	s := recv.AsString()
	strArg := func(i int, kw string) (*string, error) {
		v, ok := arg(i, kw)
		if !ok || v.IsNone() {
			return nil, nil
		}
		if !v.IsString() {
			return nil, fmt.Errorf("TypeError: %s() argument must be str or None, not %s", name, pyTypeName(v))
		}
		x := v.AsString()
		return &x, nil
	}
	intArg := func(i int, kw string, dflt int) int {
		if v, ok := arg(i, kw); ok && isNum(v) {
			return int(libInt(v))
		}
		return dflt
	}
	switch name {
	case "upper":
		return jinja.NewString(pyUpper(s)), nil
	case "lower":
		return jinja.NewString(pyLower(s)), nil
	case "split", "rsplit":
		sep, err := strArg(0, "sep")
		if err != nil {
			return jinja.Value{}, err
		}
		if sep != nil && *sep == "" {
			return jinja.Value{}, fmt.Errorf("ValueError: empty separator")
		}
		n := len(s)/2 + 1
		if sep != nil {
			n = strings.Count(s, *sep) + 1
		}
		if n > maxValueNodes {
			return jinja.Value{}, st.fail("split would make %d strings (at most %d)", n, maxValueNodes)
		}
		return strList(pySplit(s, sep, intArg(1, "maxsplit", -1), name == "rsplit")), nil
	case "splitlines":
		keep, _ := arg(0, "keepends")
		lines := pySplitLinesKeep(s, keep.IsTruthy())
		if len(lines) > maxValueNodes {
			return jinja.Value{}, st.fail("splitlines would make %d strings (at most %d)", len(lines), maxValueNodes)
		}
		return strList(lines), nil
	case "startswith", "endswith":
		v, ok := arg(0, "")
		if !ok {
			return jinja.Value{}, fmt.Errorf("TypeError: %s expected an argument", name)
		}
		var cands []jinja.Value
		if v.IsList() {
			cands = v.AsList().Items
		} else {
			cands = []jinja.Value{v}
		}
		w, _, inside, err := strWindow(s, args[1:])
		if err != nil {
			return jinja.Value{}, err
		}
		for _, c := range cands {
			if !c.IsString() {
				return jinja.Value{}, fmt.Errorf("TypeError: %s first arg must be str or a tuple of str, not %s", name, pyTypeName(c))
			}
			if !inside {
				continue
			}
			if name == "startswith" && strings.HasPrefix(w, c.AsString()) || name == "endswith" && strings.HasSuffix(w, c.AsString()) {
				return jinja.NewBool(true), nil
			}
		}
		return jinja.NewBool(false), nil
	case "strip", "lstrip", "rstrip":
		chars, err := strArg(0, "")
		if err != nil {
			return jinja.Value{}, err
		}
		cut := isPySpace
		if chars != nil {
			set := *chars
			cut = func(r rune) bool { return strings.ContainsRune(set, r) }
		}
		if name != "rstrip" {
			s = strings.TrimLeftFunc(s, cut)
		}
		if name != "lstrip" {
			s = strings.TrimRightFunc(s, cut)
		}
		return jinja.NewString(s), nil
	case "find", "rfind", "index", "rindex":
		sub, err := strArg(0, "")
		if err != nil || sub == nil {
			return jinja.Value{}, fmt.Errorf("TypeError: %s() argument must be str", name)
		}
		w, off, inside, err := strWindow(s, args[1:])
		if err != nil {
			return jinja.Value{}, err
		}
		i := -1
		switch {
		case !inside:
		case name[0] == 'r':
			i = strings.LastIndex(w, *sub)
		default:
			i = strings.Index(w, *sub)
		}
		if i < 0 && (name == "index" || name == "rindex") {
			return jinja.Value{}, fmt.Errorf("ValueError: substring not found")
		}
		if i < 0 {
			return jinja.NewInt(-1), nil
		}
		return jinja.NewInt(int64(off + runeIndex(w, i))), nil
	case "title":
		return jinja.NewString(pyTitle(s)), nil
	case "capitalize":
		return jinja.NewString(pyCapitalize(s)), nil
	case "swapcase":
		return jinja.NewString(pySwapcase(s)), nil
	case "isdecimal":
		return jinja.NewBool(allRunes(s, pyIsDecimal)), nil
	case "isdigit":
		return jinja.NewBool(allRunes(s, pyIsDigit)), nil
	case "isnumeric":
		return jinja.NewBool(allRunes(s, pyIsNumeric)), nil
	case "isalpha":
		return jinja.NewBool(allRunes(s, unicode.IsLetter)), nil
	case "casefold":
		return jinja.NewString(pyCasefold(s)), nil
	case "istitle":
		return jinja.NewBool(pyIsTitle(s)), nil
	case "isalnum":
		return jinja.NewBool(allRunes(s, pyIsAlnum)), nil
	case "isspace":
		return jinja.NewBool(allRunes(s, isPySpace)), nil
	case "islower":
		return jinja.NewBool(hasCase(s, false)), nil
	case "isupper":
		return jinja.NewBool(hasCase(s, true)), nil
	case "join":
		if len(args) != 1 {
			return jinja.Value{}, fmt.Errorf("TypeError: join() takes exactly one argument")
		}
		var parts []string
		switch v := args[0]; {
		case v.IsList():
			for _, it := range v.AsList().Items {
				if !it.IsString() {
					return jinja.Value{}, fmt.Errorf("TypeError: sequence item: expected str instance, %s found", pyTypeName(it))
				}
				parts = append(parts, it.AsString())
			}
		case v.IsString():
			for _, r := range v.AsString() {
				parts = append(parts, string(r))
			}
		case v.IsDict():
			parts = append(parts, v.AsDict().Keys...)
		default:
			return jinja.Value{}, fmt.Errorf("TypeError: can only join an iterable")
		}
		n := len(s) * max(0, len(parts)-1)
		for _, p := range parts {
			n += len(p)
		}
		if err := st.room(n, "join"); err != nil {
			return jinja.Value{}, err
		}
		return jinja.NewString(strings.Join(parts, s)), nil
	case "partition", "rpartition":
		sep, err := strArg(0, "")
		if err != nil || sep == nil || *sep == "" {
			return jinja.Value{}, fmt.Errorf("ValueError: %s needs a non-empty separator", name)
		}
		var i int
		if name == "partition" {
			i = strings.Index(s, *sep)
		} else {
			i = strings.LastIndex(s, *sep)
		}
		parts := []string{"", "", s}
		switch {
		case i >= 0:
			parts = []string{s[:i], *sep, s[i+len(*sep):]}
		case name == "partition":
			parts = []string{s, "", ""}
		}
		return newTuple(strList(parts).AsList().Items), nil
	case "zfill", "ljust", "rjust", "center":
		w := intArg(0, "", 0)
		if err := st.room(w, name); err != nil {
			return jinja.Value{}, err
		}
		if name == "zfill" {
			sign := ""
			if s != "" && (s[0] == '-' || s[0] == '+') {
				sign, s = s[:1], s[1:]
			}
			return jinja.NewString(sign + pad(s, w-len(sign), "0", 'r')), nil
		}
		fill := " "
		if f, _ := strArg(1, ""); f != nil {
			if utf8.RuneCountInString(*f) != 1 {
				return jinja.Value{}, fmt.Errorf("TypeError: The fill character must be exactly one character long")
			}
			fill = *f
		}
		return jinja.NewString(pad(s, w, fill, map[string]byte{"ljust": 'l', "rjust": 'r', "center": 'c'}[name])), nil
	case "removeprefix", "removesuffix":
		a, err := strArg(0, "")
		if err != nil || a == nil {
			return jinja.Value{}, fmt.Errorf("TypeError: %s() argument must be str", name)
		}
		if name == "removeprefix" {
			return jinja.NewString(strings.TrimPrefix(s, *a)), nil
		}
		return jinja.NewString(strings.TrimSuffix(s, *a)), nil
	case "format":
		return st.format(s, args, kwargs)
	}
	return jinja.Value{}, noAttribute(recv, name)
}

// noAttribute is jinja2's error for calling a method the value does not
// have: its sandbox reads the missing attribute as undefined, and calling
// that undefined raises.
func noAttribute(recv jinja.Value, name string) error {
	obj := "None"
	switch {
	case isNamespace(recv):
		obj = "jinja2.utils.Namespace object"
	case !recv.IsNone():
		obj = pyTypeName(recv) + " object"
	}
	return fmt.Errorf("UndefinedError: %s has no attribute %s", pyRepr(jinja.NewString(obj)), pyRepr(jinja.NewString(name)))
}

// format is str.format with plain replacement fields ({}, {0}, {name}).
func (st *renderState) format(f string, args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
	auto := 0
	return st.formatAuto(f, args, kwargs, &auto)
}

// formatAuto is format with the automatic field counter shared with the
// fields nested in a spec ({:{}}); -1 once fields are numbered by hand.
func (st *renderState) formatAuto(f string, args []jinja.Value, kwargs map[string]jinja.Value, autoP *int) (jinja.Value, error) {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c == '}' {
			if i+1 < len(f) && f[i+1] == '}' {
				i++
			}
			b.WriteByte('}')
			continue
		}
		if c != '{' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(f) && f[i+1] == '{' {
			b.WriteByte('{')
			i++
			continue
		}
		// the field runs to its matching '}' (the spec may nest fields)
		j, depth := i+1, 1
		for ; j < len(f) && depth > 0; j++ {
			switch f[j] {
			case '{':
				depth++
			case '}':
				depth--
			}
		}
		if depth > 0 {
			return jinja.Value{}, fmt.Errorf("ValueError: expected '}' before end of string")
		}
		field := f[i+1 : j-1]
		i = j - 1
		name, spec, _ := strings.Cut(field, ":")
		name, conv, hasConv := strings.Cut(name, "!")
		if hasConv && len(conv) != 1 {
			return jinja.Value{}, fmt.Errorf("ValueError: expected ':' after conversion specifier")
		}
		v, err := formatField(name, args, kwargs, autoP)
		if err != nil {
			return jinja.Value{}, err
		}
		if strings.Contains(spec, "{") {
			// nested fields: {:{width}}
			sv, err := st.formatAuto(spec, args, kwargs, autoP)
			if err != nil {
				return jinja.Value{}, err
			}
			spec = sv.AsString()
		}
		if err := st.check(v); err != nil {
			return jinja.Value{}, err
		}
		switch conv {
		case "":
		case "s", "r", "a":
			if err := digitLimit(v); err != nil {
				return jinja.Value{}, err
			}
			text := pyStr(v)
			if conv != "s" {
				text = pyRepr(v)
			}
			if conv == "a" {
				text = asciiEscape(text)
			}
			v = jinja.NewString(text)
		default:
			return jinja.Value{}, fmt.Errorf("ValueError: Unknown conversion specifier %s", conv)
		}
		s, err := pyFormat(v, spec)
		if err != nil {
			return jinja.Value{}, err
		}
		b.WriteString(s)
		if err := st.room(b.Len(), "formatted string"); err != nil {
			return jinja.Value{}, err
		}
	}
	return jinja.NewString(b.String()), nil
}

// sortValues sorts items stably as Python's sorted() with jinja2's
// case-insensitive key for strings.
func sortValues(items []jinja.Value, key func(jinja.Value) jinja.Value, caseSensitive, reverse bool) ([]jinja.Value, error) {
	keys := make([]jinja.Value, len(items))
	for i, it := range items {
		k := key(it)
		if k.IsString() && !caseSensitive {
			k = jinja.NewString(pyLower(k.AsString()))
		}
		keys[i] = k
	}
	idx := make([]int, len(items))
	for i := range idx {
		idx[i] = i
	}
	var err error
	sort.SliceStable(idx, func(a, b int) bool {
		c, e := pyCompare("<", keys[idx[a]], keys[idx[b]])
		if e != nil && err == nil {
			err = e
		}
		if reverse {
			return c > 0
		}
		return c < 0
	})
	if err != nil {
		return nil, err
	}
	out := make([]jinja.Value, len(items))
	for i, j := range idx {
		out[i] = items[j]
	}
	return out, nil
}

// unpack checks that a value unpacked into n names holds n items.
func unpack(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	v, n := args[0], int(args[1].AsInt())
	items, err := iterItems(v)
	if err != nil || v.IsUndefined() {
		return jinja.Value{}, fmt.Errorf("TypeError: cannot unpack non-iterable %s object", pyTypeName(v))
	}
	if len(items) != n {
		return jinja.Value{}, fmt.Errorf("ValueError: expected %d values to unpack, got %d", n, len(items))
	}
	return jinja.NewList(items), nil
}

// trueDiv is Python's /: always a float, and division by zero raises.
func (st *renderState) trueDiv(a, b jinja.Value) (jinja.Value, error) {
	if err := numOperands("/", a, b); err != nil {
		return jinja.Value{}, err
	}
	if isBig(a) || isBig(b) {
		if bothInt(a, b) {
			// int / int is the correctly rounded quotient
			y := toBig(b)
			if y.Sign() == 0 {
				return jinja.Value{}, fmt.Errorf("ZeroDivisionError: division by zero")
			}
			q, _ := new(big.Rat).SetFrac(toBig(a), y).Float64()
			if math.IsInf(q, 0) {
				return jinja.Value{}, fmt.Errorf("OverflowError: integer division result too large for a float")
			}
			return jinja.NewFloat(q), nil
		}
	}
	x, y, err := floatOperands(a, b)
	if err != nil {
		return jinja.Value{}, err
	}
	if y == 0 {
		return jinja.Value{}, fmt.Errorf("ZeroDivisionError: division by zero")
	}
	return jinja.NewFloat(x / y), nil
}

// contains is Python's "x in c".
func (st *renderState) contains(x, c jinja.Value) (jinja.Value, error) {
	if err := st.check(x); err != nil {
		return jinja.Value{}, err
	}
	if err := st.check(c); err != nil {
		return jinja.Value{}, err
	}
	switch {
	case c.IsString():
		if !x.IsString() {
			return jinja.Value{}, fmt.Errorf("TypeError: 'in <string>' requires string as left operand, not %s", pyTypeName(x))
		}
		return jinja.NewBool(strings.Contains(c.AsString(), x.AsString())), nil
	case c.IsList():
		for _, it := range c.AsList().Items {
			if pyEqual(it, x) {
				return jinja.NewBool(true), nil
			}
		}
		return jinja.NewBool(false), nil
	case isNamespace(c):
		return jinja.Value{}, fmt.Errorf("TypeError: argument of type 'Namespace' is not iterable")
	case c.IsDict():
		if x.IsDict() || x.IsList() && !isTuple(x) {
			return jinja.Value{}, fmt.Errorf("TypeError: unhashable type: '%s'", pyTypeName(x))
		}
		_, ok := dictLookup(c.AsDict(), x)
		return jinja.NewBool(ok), nil
	case c.IsUndefined():
		// jinja2's Undefined iterates as empty
		return jinja.NewBool(false), nil
	}
	return jinja.Value{}, fmt.Errorf("TypeError: argument of type '%s' is not iterable", pyTypeName(c))
}

// unhex decodes a macro default that compile.go hex-encoded.
func unhex(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	b, err := hex.DecodeString(args[0].AsString())
	return jinja.NewString(string(b)), err
}

// equal is Python's == after the bound checks.
func (st *renderState) equal(a, b jinja.Value) (jinja.Value, error) {
	if err := st.check(a); err != nil {
		return jinja.Value{}, err
	}
	if err := st.check(b); err != nil {
		return jinja.Value{}, err
	}
	return jinja.NewBool(pyEqual(a, b)), nil
}

// pySplitLines is Python's str.splitlines(): lines end at \n, \r, \r\n,
// \v, \f, \x1c-\x1e, \x85, U+2028 and U+2029, and a text ending in a line
// break has no empty last line.
func pySplitLines(s string) []string { return pySplitLinesKeep(s, false) }

// pySplitLinesKeep is str.splitlines(keepends).
func pySplitLinesKeep(s string, keep bool) []string {
	var lines []string
	start := 0
	for i, r := range s {
		if i < start {
			continue // the \n of a \r\n
		}
		switch r {
		case '\n', '\r', '\v', '\f', 0x1c, 0x1d, 0x1e, 0x85, 0x2028, 0x2029:
			end := i + len(string(r))
			if r == '\r' && strings.HasPrefix(s[end:], "\n") {
				end++
			}
			if keep {
				lines = append(lines, s[start:end])
			} else {
				lines = append(lines, s[start:i])
			}
			start = end
		}
	}
	if start < len(s) {
		lines = append(lines, s[start:])
	}
	return lines
}

// asciiEscape is what Python's ascii() does to a repr: non-ASCII
// characters as \xNN, \uNNNN or \UNNNNNNNN.
func asciiEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < 0x80:
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, "\\x%02x", r)
		case r < 0x10000:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			fmt.Fprintf(&b, "\\U%08x", r)
		}
	}
	return b.String()
}

// strWindow is s[start:end] for str.find, count, startswith and endswith
// (their optional start and end arguments, as Python adjusts them): the
// window's text, its offset in code points, and false when start is past
// the end of s (Python then finds nothing, not even "").
func strWindow(s string, bounds []jinja.Value) (string, int, bool, error) {
	r := []rune(s)
	n := len(r)
	idx := func(i int, dflt int) (int, error) {
		if i >= len(bounds) || bounds[i].IsNone() {
			return dflt, nil
		}
		v := bounds[i]
		if !isInt(v) {
			return 0, errBadIndex
		}
		b := toBig(v)
		if b.Cmp(big.NewInt(int64(n))) > 0 {
			return n, nil
		}
		x := b.Int64()
		if b.Cmp(big.NewInt(int64(-n))) < 0 {
			x = int64(-n)
		}
		if x < 0 {
			x += int64(n)
		}
		return int(x), nil
	}
	lo, err := idx(0, 0)
	if err != nil {
		return "", 0, false, err
	}
	hi, err := idx(1, n)
	if err != nil {
		return "", 0, false, err
	}
	if len(bounds) > 0 && !bounds[0].IsNone() && isInt(bounds[0]) && toBig(bounds[0]).Cmp(big.NewInt(int64(n))) > 0 {
		return "", 0, false, nil
	}
	if hi < lo {
		return "", lo, hi-lo >= 0, nil
	}
	return string(r[lo:hi]), lo, true, nil
}

// printfOne is one %-conversion of a with its flags, width and precision.
func (st *renderState) printfOne(c byte, a jinja.Value, sp formatSpec) (string, error) {
	switch c {
	case 's', 'r', 'a':
		str := st.str
		if c != 's' {
			str = st.repr
		}
		text, err := str(a)
		if err != nil {
			return "", err
		}
		if c == 'a' {
			text = asciiEscape(text)
		}
		if sp.precision >= 0 {
			if r := []rune(text); len(r) > sp.precision {
				text = string(r[:sp.precision])
			}
		}
		sp.zero = false
		return sp.pad("", text, '>'), nil
	case 'c':
		switch {
		case a.IsString() && utf8.RuneCountInString(a.AsString()) == 1:
			sp.zero = false
			return sp.pad("", a.AsString(), '>'), nil
		case isInt(a):
			n := toBig(a)
			if !n.IsInt64() || n.Int64() < 0 || n.Int64() > 0x10FFFF {
				return "", fmt.Errorf("OverflowError: %%c arg not in range(0x110000)")
			}
			sp.zero = false
			return sp.pad("", string(rune(n.Int64())), '>'), nil
		}
		return "", fmt.Errorf("TypeError: %%c requires int or char")
	case 'd', 'i', 'u', 'o', 'x', 'X':
		var n *big.Int
		switch {
		case isInt(a):
			n = toBig(a)
		case a.IsFloat() && (c == 'd' || c == 'i' || c == 'u'):
			x := a.AsFloat()
			if math.IsInf(x, 0) || math.IsNaN(x) {
				return "", fmt.Errorf("OverflowError: cannot convert float %s to integer", pyFloat(x, false))
			}
			n, _ = big.NewFloat(x).Int(nil)
		case c == 'd' || c == 'i' || c == 'u':
			return "", fmt.Errorf("TypeError: %%%c format: a real number is required, not %s", c, pyTypeName(a))
		default:
			return "", fmt.Errorf("TypeError: %%%c format: an integer is required, not %s", c, pyTypeName(a))
		}
		if err := digitLimit(bigValueOrInt(n)); err != nil {
			return "", err
		}
		base, prefix := 10, ""
		switch c {
		case 'o':
			base, prefix = 8, "0o"
		case 'x':
			base, prefix = 16, "0x"
		case 'X':
			base, prefix = 16, "0X"
		}
		digits := new(big.Int).Abs(n).Text(base)
		if c == 'X' {
			digits = strings.ToUpper(digits)
		}
		if !sp.alt {
			prefix = ""
		}
		for len(digits) < sp.precision {
			digits = "0" + digits
		}
		if sp.zero {
			sp.align, sp.fill = '=', '0'
		}
		return sp.pad(sp.signOf(n.Sign() < 0)+prefix, digits, '>'), nil
	case 'e', 'E', 'f', 'F', 'g', 'G':
		if !isNum(a) {
			return "", fmt.Errorf("TypeError: must be real number, not %s", pyTypeName(a))
		}
		x, err := toFloat(a)
		if err != nil {
			return "", err
		}
		sp.typ = c
		if sp.zero {
			sp.align, sp.fill, sp.zero = '=', '0', false
			if math.IsInf(x, 0) || math.IsNaN(x) {
				sp.align, sp.fill = '>', ' '
			}
		}
		if sp.align == 0 {
			sp.align = '>'
		}
		return formatFloat(x, sp)
	}
	return "", fmt.Errorf("ValueError: unsupported format character '%c' (0x%x)", c, c)
}
