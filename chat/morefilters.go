package chat

import (
	"fmt"
	"html"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ardanlabs/jinja"
	"golang.org/x/text/cases"
)

// jinja2's remaining text filters (truncate, filesizeformat, striptags,
// urlencode, xmlattr, forceescape) and the str methods casefold and
// istitle, as jinja2 3.1.2 and Python define them.

var (
	htmlComment = regexp.MustCompile(`(?s)<!--.*?-->`)
	htmlTag     = regexp.MustCompile(`(?s)<.*?>`)
)

// truncateLeeway is jinja2's default policy "truncate.leeway".
const truncateLeeway = 5

// pyLen is Python's len() of a value, or its TypeError.
func pyLen(v jinja.Value) (int, error) {
	switch {
	case v.IsString():
		return utf8.RuneCountInString(v.AsString()), nil
	case v.IsList():
		return v.AsList().Len(), nil
	case v.IsDict() && !isNamespace(v):
		return len(v.AsDict().Keys), nil
	case v.IsUndefined():
		return 0, nil
	}
	return 0, fmt.Errorf("TypeError: object of type '%s' has no len()", pyTypeName(v))
}

// markupEscape is markupsafe's escape of str(v).
func markupEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// urlQuote is jinja2's url_quote: UTF-8 bytes, letters, digits and _.-~
// kept (and '/' outside query strings), the rest %XX; spaces are '+' in
// query strings.
func urlQuote(s string, forQS bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == '-', c == '~':
			b.WriteByte(c)
		case c == '/' && !forQS:
			b.WriteByte(c)
		case c == ' ' && forQS:
			b.WriteByte('+')
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// pyIsTitle is Python's str.istitle().
func pyIsTitle(s string) bool {
	cased, prevCased := false, false
	for _, r := range s {
		switch {
		case unicode.IsUpper(r) || unicode.IsTitle(r):
			if prevCased {
				return false
			}
			prevCased, cased = true, true
		case unicode.IsLower(r):
			if !prevCased {
				return false
			}
			prevCased, cased = true, true
		default:
			prevCased = false
		}
	}
	return cased
}

func installMoreFilters(st *renderState, def func(string, fn)) {
	def("__f_truncate", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewString(""), nil
		}
		length := int64(255)
		if v, ok := kwOrArg(args, kwargs, 1, "length"); ok {
			length = libInt(v)
		}
		kill, _ := kwOrArg(args, kwargs, 2, "killwords")
		end := "..."
		if v, ok := kwOrArg(args, kwargs, 3, "end"); ok {
			end = pyStr(v)
		}
		leeway := int64(truncateLeeway)
		if v, ok := kwOrArg(args, kwargs, 4, "leeway"); ok && !v.IsNone() {
			leeway = libInt(v)
		}
		endLen := int64(utf8.RuneCountInString(end))
		if length < endLen {
			return jinja.Value{}, fmt.Errorf("AssertionError: expected length >= %d, got %d", endLen, length)
		}
		if leeway < 0 {
			return jinja.Value{}, fmt.Errorf("AssertionError: expected leeway >= 0, got %d", leeway)
		}
		v := args[0]
		n, err := pyLen(v)
		if err != nil {
			return jinja.Value{}, err
		}
		if int64(n) <= length+leeway {
			return v, nil
		}
		if !v.IsString() {
			return jinja.Value{}, fmt.Errorf("TypeError: can only concatenate %s (not \"str\") to %s", pyTypeName(v), pyTypeName(v))
		}
		r := []rune(v.AsString())
		cut := string(r[:length-endLen])
		if !kill.IsTruthy() {
			if i := strings.LastIndex(cut, " "); i >= 0 {
				cut = cut[:i]
			}
		}
		return jinja.NewString(cut + end), nil
	})
	def("__f_filesizeformat", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewString(""), nil
		}
		var size float64
		switch v := args[0]; {
		case isNum(v):
			f, err := toFloat(v)
			if err != nil {
				return jinja.Value{}, err
			}
			size = f
		case v.IsString():
			f, ok := pyParseFloat(v.AsString())
			if !ok {
				return jinja.Value{}, fmt.Errorf("ValueError: could not convert string to float: %s", pyRepr(v))
			}
			size = f
		case v.IsUndefined():
			return jinja.Value{}, fmt.Errorf("UndefinedError: float of an undefined value")
		default:
			return jinja.Value{}, fmt.Errorf("TypeError: float() argument must be a string or a real number, not '%s'", pyTypeName(v))
		}
		binary, _ := kwOrArg(args, kwargs, 1, "binary")
		base := 1000.0
		prefixes := []string{"kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"}
		if binary.IsTruthy() {
			base = 1024
			prefixes = []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"}
		}
		switch {
		case size == 1:
			return jinja.NewString("1 Byte"), nil
		case size < base:
			i, err := floatToInt(size)
			if err != nil {
				return jinja.Value{}, err
			}
			return jinja.NewString(pyStr(i) + " Bytes"), nil
		}
		for i, p := range prefixes {
			// Python's float(base ** (i + 2)), correctly rounded
			pow := new(big.Int).Exp(big.NewInt(int64(base)), big.NewInt(int64(i+2)), nil)
			unit, _ := new(big.Float).SetInt(pow).Float64()
			if size < unit || i == len(prefixes)-1 {
				return jinja.NewString(strconv.FormatFloat(base*size/unit, 'f', 1, 64) + " " + p), nil
			}
		}
		return jinja.Value{}, fmt.Errorf("filesizeformat: unreachable")
	})
	def("__f_striptags", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewString(""), nil
		}
		s, err := st.str(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		s = htmlTag.ReplaceAllString(htmlComment.ReplaceAllString(s, ""), "")
		words := pySplit(s, nil, -1, false)
		return jinja.NewString(html.UnescapeString(strings.Join(words, " "))), nil
	})
	def("__f_urlencode", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewString(""), nil
		}
		v := args[0]
		if v.IsString() || notIterable(v) {
			s, err := st.str(v)
			return jinja.NewString(urlQuote(s, false)), err
		}
		var pairs []jinja.Value
		if v.IsDict() {
			pairs = dictView(v.AsDict(), "items").AsList().Items
		} else {
			items, err := pySeq(v)
			if err != nil {
				return jinja.Value{}, err
			}
			pairs = items
		}
		parts := make([]string, 0, len(pairs))
		for _, p := range pairs {
			kv, err := pySeq(p)
			if err != nil {
				return jinja.Value{}, err
			}
			if len(kv) != 2 {
				return jinja.Value{}, fmt.Errorf("ValueError: not enough values to unpack (expected 2, got %d)", len(kv))
			}
			k, err := st.str(kv[0])
			if err != nil {
				return jinja.Value{}, err
			}
			val, err := st.str(kv[1])
			if err != nil {
				return jinja.Value{}, err
			}
			parts = append(parts, urlQuote(k, true)+"="+urlQuote(val, true))
		}
		return jinja.NewString(strings.Join(parts, "&")), nil
	})
	def("__f_xmlattr", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 || !args[0].IsDict() {
			v := jinja.Undefined()
			if len(args) > 0 {
				v = args[0]
			}
			return jinja.Value{}, fmt.Errorf("AttributeError: '%s' object has no attribute 'items'", pyTypeName(v))
		}
		d := args[0].AsDict()
		var attrs []string
		for _, k := range d.Keys {
			val := d.Data[k]
			if val.IsNone() || val.IsUndefined() {
				continue
			}
			ks, err := st.str(origKey(d, k))
			if err != nil {
				return jinja.Value{}, err
			}
			vs, err := st.str(val)
			if err != nil {
				return jinja.Value{}, err
			}
			attrs = append(attrs, markupEscape(ks)+`="`+markupEscape(vs)+`"`)
		}
		rv := strings.Join(attrs, " ")
		autospace, ok := kwOrArg(args, kwargs, 1, "autospace")
		if (!ok || autospace.IsTruthy()) && rv != "" {
			rv = " " + rv
		}
		return jinja.NewString(rv), nil
	})
	def("__f_forceescape", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewString(""), nil
		}
		s, err := st.str(args[0])
		if err != nil {
			return jinja.Value{}, err
		}
		out := markupEscape(s)
		return jinja.NewString(out), st.room(len(out), "forceescape")
	})
}

// pyCasefold is Python's str.casefold(): Unicode full case folding.
func pyCasefold(s string) string { return cases.Fold().String(s) }
