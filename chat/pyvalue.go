package chat

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ardanlabs/jinja"
)

// toValue converts a Go/JSON value into a template value, keeping object
// key order (jinja.FromGoValue would sort map keys and break tojson).
func toValue(v any) (jinja.Value, error) {
	switch x := v.(type) {
	case nil:
		return jinja.None(), nil
	case jinja.Value:
		return x, nil
	case bool:
		return jinja.NewBool(x), nil
	case int:
		return jinja.NewInt(int64(x)), nil
	case int64:
		return jinja.NewInt(x), nil
	case int32:
		return jinja.NewInt(int64(x)), nil
	case uint64:
		if x > math.MaxInt64 {
			return bigValue(new(big.Int).SetUint64(x)), nil
		}
		return jinja.NewInt(int64(x)), nil
	case uint:
		return toValue(uint64(x))
	case uint32:
		return jinja.NewInt(int64(x)), nil
	case float64:
		return jinja.NewFloat(x), nil
	case float32:
		return jinja.NewFloat(float64(x)), nil
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if n, err := x.Int64(); err == nil {
				return jinja.NewInt(n), nil
			}
			// Python's json keeps every integer exact
			if b, ok := new(big.Int).SetString(s, 10); ok && b.BitLen() <= maxBigBits {
				return bigValue(b), nil
			}
		}
		f, err := x.Float64()
		if err != nil {
			return jinja.Value{}, fmt.Errorf("number %s: %w", s, err)
		}
		return jinja.NewFloat(f), nil
	case string:
		return jinja.NewString(x), nil
	case json.RawMessage:
		d, err := DecodeJSON(x)
		if err != nil {
			return jinja.Value{}, err
		}
		return toValue(d)
	case Message:
		return toValue(x.Fields)
	case Object:
		d := jinja.NewDict()
		dd := d.AsDict()
		for _, f := range x {
			fv, err := toValue(f.Value)
			if err != nil {
				return jinja.Value{}, fmt.Errorf("%s: %w", f.Key, err)
			}
			dd.Set(f.Key, fv)
		}
		return d, nil
	case map[string]any:
		d := jinja.NewDict()
		dd := d.AsDict()
		for _, k := range sortedKeys(x) {
			fv, err := toValue(x[k])
			if err != nil {
				return jinja.Value{}, fmt.Errorf("%s: %w", k, err)
			}
			dd.Set(k, fv)
		}
		return d, nil
	case []any:
		items := make([]jinja.Value, len(x))
		for i, e := range x {
			ev, err := toValue(e)
			if err != nil {
				return jinja.Value{}, fmt.Errorf("[%d]: %w", i, err)
			}
			items[i] = ev
		}
		return jinja.NewList(items), nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		items := make([]jinja.Value, rv.Len())
		for i := range items {
			ev, err := toValue(rv.Index(i).Interface())
			if err != nil {
				return jinja.Value{}, fmt.Errorf("[%d]: %w", i, err)
			}
			items[i] = ev
		}
		return jinja.NewList(items), nil
	case reflect.String:
		return jinja.NewString(rv.String()), nil
	}
	return jinja.Value{}, fmt.Errorf("unsupported value type %T", v)
}

// pyStr is Python's str() of a value, which is what jinja2 prints.
func pyStr(v jinja.Value) string {
	switch {
	case v.IsUndefined():
		return ""
	case v.IsString():
		return v.AsString()
	}
	return pyRepr(v)
}

// pyRepr is Python's repr().
func pyRepr(v jinja.Value) string {
	var b strings.Builder
	writeRepr(&b, v)
	return b.String()
}

func writeRepr(b *strings.Builder, v jinja.Value) {
	switch {
	case v.IsUndefined():
		b.WriteString("Undefined") // repr(Undefined); str() of it is "" (pyStr)
	case v.IsNone():
		b.WriteString("None")
	case v.IsBool():
		if v.AsBool() {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case v.IsInt():
		b.WriteString(strconv.FormatInt(v.AsInt(), 10))
	case v.IsFloat():
		b.WriteString(pyFloat(v.AsFloat(), false))
	case v.IsString():
		b.WriteString(pyQuote(v.AsString()))
	case v.IsList():
		items := v.AsList().Items
		open, close := byte('['), byte(']')
		kind := listKind(v)
		switch kind {
		case "tuple", groupKind:
			open, close = '(', ')'
		case "list":
		default:
			// dict_items([('a', 1)])
			b.WriteString(kind + "(")
			defer b.WriteByte(')')
		}
		b.WriteByte(open)
		for i, it := range items {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, it)
		}
		if len(items) == 1 && open == '(' {
			b.WriteByte(',')
		}
		b.WriteByte(close)
	case v.IsDict():
		d := v.AsDict()
		if isNamespace(v) {
			b.WriteString("<Namespace ")
			defer b.WriteByte('>')
		}
		b.WriteByte('{')
		for i, k := range d.Keys {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, origKey(d, k))
			b.WriteString(": ")
			writeRepr(b, d.Data[k])
		}
		b.WriteByte('}')
	case isBig(v):
		b.WriteString(strings.TrimPrefix(v.AsCallable().Name, bigPrefix))
	case v.IsCallable():
		fmt.Fprintf(b, "<function %s>", v.AsCallable().Name)
	}
}

// pyQuote is repr() of a str.
func pyQuote(s string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(q):
			b.WriteByte('\\')
			b.WriteByte(q)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == ' ' || unicode.IsPrint(r) && r != utf8.RuneError:
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// pyFloat is Python's float repr (json selects Infinity/NaN spellings).
func pyFloat(f float64, json bool) string {
	switch {
	case math.IsInf(f, 1):
		if json {
			return "Infinity"
		}
		return "inf"
	case math.IsInf(f, -1):
		if json {
			return "-Infinity"
		}
		return "-inf"
	case math.IsNaN(f):
		if json {
			return "NaN"
		}
		return "nan"
	}
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	// shortest round-trip digits, then Python's choice of notation:
	// fixed for 1e-4 <= |f| < 1e16, scientific otherwise.
	e := strconv.FormatFloat(f, 'e', -1, 64)
	mant, expS, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expS)
	if exp >= -4 && exp < 16 {
		s := strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.ContainsAny(s, ".") {
			s += ".0"
		}
		return s
	}
	sign := "+"
	if exp < 0 {
		sign = "-"
		exp = -exp
	}
	return fmt.Sprintf("%se%s%02d", mant, sign, exp)
}

// jsonOpts are json.dumps' formatting arguments as transformers' tojson
// passes them (ensure_ascii=False always).
type jsonOpts struct {
	indent   string // "" with hasIndent=false means compact one-line
	hasInd   bool
	itemSep  string
	keySep   string
	sortKeys bool
	ascii    bool // ensure_ascii: non-ASCII characters as \uXXXX escapes
	max      int  // bytes of text; 0: no bound
}

// jsonDumps is Python's json.dumps(v, ensure_ascii=False, ...).
func jsonDumps(b *strings.Builder, v jinja.Value, o *jsonOpts, level int) error {
	if o.max > 0 && b.Len() > o.max {
		return fmt.Errorf("text would be larger than %d bytes", o.max)
	}
	if level > maxValueDepth {
		return fmt.Errorf("value nested deeper than %d levels", maxValueDepth)
	}
	newline := func(l int) {
		if o.hasInd {
			b.WriteByte('\n')
			for range l {
				b.WriteString(o.indent)
			}
		}
	}
	switch {
	case v.IsNone():
		b.WriteString("null")
	case v.IsBool():
		if v.AsBool() {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case v.IsInt():
		b.WriteString(strconv.FormatInt(v.AsInt(), 10))
	case v.IsFloat():
		b.WriteString(pyFloat(v.AsFloat(), true))
	case v.IsString():
		o.str(b, v.AsString())
	case v.IsList():
		items := v.AsList().Items
		if len(items) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, it := range items {
			if i > 0 {
				b.WriteString(o.itemSep)
			}
			newline(level + 1)
			if err := jsonDumps(b, it, o, level+1); err != nil {
				return err
			}
		}
		newline(level)
		b.WriteByte(']')
	case isNamespace(v):
		return fmt.Errorf("TypeError: Object of type Namespace is not JSON serializable")
	case v.IsDict():
		d := v.AsDict()
		if d.Len() == 0 {
			b.WriteString("{}")
			return nil
		}
		keys := d.Keys
		if o.sortKeys {
			// json.dumps sorts the Python keys: mixed kinds raise
			keys = append([]string(nil), keys...)
			var err error
			sort.SliceStable(keys, func(i, j int) bool {
				c, e := pyCompare("<", origKey(d, keys[i]), origKey(d, keys[j]))
				if e != nil && err == nil {
					err = e
				}
				return c < 0
			})
			if err != nil {
				return err
			}
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(o.itemSep)
			}
			newline(level + 1)
			text, err := jsonKey(origKey(d, k))
			if err != nil {
				return err
			}
			o.str(b, text)
			b.WriteString(o.keySep)
			if err := jsonDumps(b, d.Data[k], o, level+1); err != nil {
				return err
			}
		}
		newline(level)
		b.WriteByte('}')
	case isBig(v):
		s, err := bigText(v)
		if err != nil {
			return err
		}
		b.WriteString(s)
	case v.IsUndefined():
		return fmt.Errorf("TypeError: Object of type Undefined is not JSON serializable")
	default:
		return fmt.Errorf("TypeError: Object of type function is not JSON serializable")
	}
	return nil
}

func (o *jsonOpts) str(b *strings.Builder, s string) {
	if !o.ascii {
		jsonString(b, s)
		return
	}
	var t strings.Builder
	jsonString(&t, s)
	for _, r := range t.String() {
		switch {
		case r < 0x80:
			b.WriteRune(r)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			fmt.Fprintf(b, `\u%04x`, r)
		}
	}
}

// jsonString escapes as json.dumps with ensure_ascii=False: only the quote,
// backslash and control characters are escaped.
func jsonString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if c < 0x20 {
				fmt.Fprintf(b, `\u%04x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}

// jsonKey is the text json.dumps writes for a dict key: str as it is,
// True/False/None as true/false/null, numbers as their repr.
func jsonKey(k jinja.Value) (string, error) {
	switch {
	case k.IsString():
		return k.AsString(), nil
	case k.IsBool():
		if k.AsBool() {
			return "true", nil
		}
		return "false", nil
	case k.IsNone():
		return "null", nil
	case isBig(k):
		return bigText(k)
	case k.IsInt():
		return strconv.FormatInt(k.AsInt(), 10), nil
	case k.IsFloat():
		f := k.AsFloat()
		switch {
		case math.IsNaN(f):
			return "NaN", nil
		case math.IsInf(f, 1):
			return "Infinity", nil
		case math.IsInf(f, -1):
			return "-Infinity", nil
		}
		return pyFloat(f, false), nil
	}
	return "", fmt.Errorf("TypeError: keys must be str, int, float, bool or None, not %s", pyTypeName(k))
}
