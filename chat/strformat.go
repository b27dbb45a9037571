package chat

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ardanlabs/jinja"
)

// Python's str.format as jinja2's sandbox runs it: replacement fields
// {name.attr[key]!conv:spec} (attributes and items through jinja2's
// getattr, which falls back to items), nested fields inside the spec, and
// the format-spec mini-language for str, int and float.

// formatSpec is a parsed [[fill]align][sign][#][0][width][,|_][.precision][type].
type formatSpec struct {
	fill      rune
	align     byte // 0 when not given
	sign      byte
	alt       bool
	zero      bool
	width     int
	grouping  byte
	precision int // -1 when not given
	typ       byte
}

func parseFormatSpec(s string) (formatSpec, error) {
	sp := formatSpec{fill: ' ', precision: -1}
	isAlign := func(c byte) bool { return c == '<' || c == '>' || c == '^' || c == '=' }
	if r, n := utf8.DecodeRuneInString(s); n > 0 && n < len(s) && isAlign(s[n]) {
		sp.fill, sp.align, s = r, s[n], s[n+1:]
	} else if len(s) > 0 && isAlign(s[0]) {
		sp.align, s = s[0], s[1:]
	}
	if len(s) > 0 && (s[0] == '+' || s[0] == '-' || s[0] == ' ') {
		sp.sign, s = s[0], s[1:]
	}
	if len(s) > 0 && s[0] == '#' {
		sp.alt, s = true, s[1:]
	}
	if len(s) > 0 && s[0] == '0' {
		sp.zero, s = true, s[1:]
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i > 0 {
		w, err := strconv.Atoi(s[:i])
		if err != nil || w > 1<<20 {
			return sp, fmt.Errorf("ValueError: Too many decimal digits in format string")
		}
		sp.width, s = w, s[i:]
	}
	if len(s) > 0 && (s[0] == ',' || s[0] == '_') {
		sp.grouping, s = s[0], s[1:]
	}
	if len(s) > 0 && s[0] == '.' {
		j := 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == 1 {
			return sp, fmt.Errorf("ValueError: Format specifier missing precision")
		}
		p, err := strconv.Atoi(s[1:j])
		if err != nil || p > 1<<16 {
			return sp, fmt.Errorf("ValueError: Too many decimal digits in format string")
		}
		sp.precision, s = p, s[j:]
	}
	if len(s) > 1 {
		return sp, fmt.Errorf("ValueError: Invalid format specifier")
	}
	if len(s) == 1 {
		sp.typ = s[0]
	}
	return sp, nil
}

// pad places body (after sign/prefix) in the spec's width.
func (sp formatSpec) pad(sign, body string, defAlign byte) string {
	align, fill := sp.align, string(sp.fill)
	if sp.zero && align == 0 {
		align, fill = '=', "0"
		if sp.fill != ' ' {
			fill = string(sp.fill)
		}
	}
	if align == 0 {
		align = defAlign
	}
	n := sp.width - utf8.RuneCountInString(sign) - utf8.RuneCountInString(body)
	if n <= 0 {
		return sign + body
	}
	switch align {
	case '<':
		return sign + body + strings.Repeat(fill, n)
	case '^':
		return strings.Repeat(fill, n/2) + sign + body + strings.Repeat(fill, n-n/2)
	case '=':
		return sign + strings.Repeat(fill, n) + body
	}
	return strings.Repeat(fill, n) + sign + body
}

// group inserts sep every every digits from the right of digits.
func group(digits string, sep byte, every int) string {
	if sep == 0 || len(digits) <= every {
		return digits
	}
	var b strings.Builder
	first := len(digits) % every
	if first > 0 {
		b.WriteString(digits[:first])
	}
	for i := first; i < len(digits); i += every {
		if b.Len() > 0 {
			b.WriteByte(sep)
		}
		b.WriteString(digits[i : i+every])
	}
	return b.String()
}

func (sp formatSpec) signOf(neg bool) string {
	switch {
	case neg:
		return "-"
	case sp.sign == '+':
		return "+"
	case sp.sign == ' ':
		return " "
	}
	return ""
}

// pyFormat is Python's format(v, spec).
func pyFormat(v jinja.Value, spec string) (string, error) {
	if spec == "" {
		if err := digitLimit(v); err != nil {
			return "", err
		}
		return pyStr(v), nil
	}
	sp, err := parseFormatSpec(spec)
	if err != nil {
		return "", err
	}
	switch {
	case v.IsString():
		return formatStr(v.AsString(), sp)
	case isInt(v):
		switch sp.typ {
		case 'e', 'E', 'f', 'F', 'g', 'G', '%':
			f, err := toFloat(v)
			if err != nil {
				return "", err
			}
			return formatFloat(f, sp)
		}
		return formatInt(toBig(v), sp)
	case v.IsFloat():
		return formatFloat(v.AsFloat(), sp)
	}
	return "", fmt.Errorf("TypeError: unsupported format string passed to %s.__format__", pyTypeName(v))
}

func formatStr(s string, sp formatSpec) (string, error) {
	switch {
	case sp.typ != 0 && sp.typ != 's':
		return "", fmt.Errorf("ValueError: Unknown format code '%c' for object of type 'str'", sp.typ)
	case sp.sign != 0:
		return "", fmt.Errorf("ValueError: Sign not allowed in string format specifier")
	case sp.alt:
		return "", fmt.Errorf("ValueError: Alternate form (#) not allowed in string format specifier")
	case sp.grouping != 0:
		return "", fmt.Errorf("ValueError: Cannot specify '%c' with 's'.", sp.grouping)
	case sp.align == '=':
		return "", fmt.Errorf("ValueError: '=' alignment not allowed in string format specifier")
	}
	if sp.precision >= 0 {
		if r := []rune(s); len(r) > sp.precision {
			s = string(r[:sp.precision])
		}
	}
	if sp.zero && sp.align == 0 {
		sp.align, sp.zero = '<', false
		if sp.fill == ' ' {
			sp.fill = '0'
		}
	}
	return sp.pad("", s, '<'), nil
}

func formatInt(n *big.Int, sp formatSpec) (string, error) {
	if sp.precision >= 0 {
		return "", fmt.Errorf("ValueError: Precision not allowed in integer format specifier")
	}
	neg := n.Sign() < 0
	abs := new(big.Int).Abs(n)
	var digits, prefix string
	every := 3
	switch sp.typ {
	case 0, 'd', 'n':
		if len(abs.String()) > maxIntDigits {
			return "", fmt.Errorf("ValueError: Exceeds the limit (%d digits) for integer string conversion", maxIntDigits)
		}
		digits = abs.String()
	case 'b':
		digits, prefix, every = abs.Text(2), "0b", 4
	case 'o':
		digits, prefix, every = abs.Text(8), "0o", 4
	case 'x':
		digits, prefix, every = abs.Text(16), "0x", 4
	case 'X':
		digits, prefix, every = strings.ToUpper(abs.Text(16)), "0X", 4
	case 'c':
		if sp.sign != 0 {
			return "", fmt.Errorf("ValueError: Sign not allowed with integer format specifier 'c'")
		}
		if !n.IsInt64() || n.Int64() < 0 || n.Int64() > 0x10FFFF {
			return "", fmt.Errorf("OverflowError: %%c arg not in range(0x110000)")
		}
		return sp.pad("", string(rune(n.Int64())), '<'), nil
	default:
		return "", fmt.Errorf("ValueError: Unknown format code '%c' for object of type 'int'", sp.typ)
	}
	if sp.grouping == ',' && every == 4 {
		return "", fmt.Errorf("ValueError: Cannot specify ',' with '%c'.", sp.typ)
	}
	if !sp.alt {
		prefix = ""
	}
	body := digits
	if sp.zero && sp.align == 0 && sp.grouping != 0 {
		// zero padding runs through the grouping, as Python pads it
		w := sp.width - len(sp.signOf(neg)) - len(prefix)
		d := len(body)
		for d+(d-1)/every < w {
			d++
		}
		body = strings.Repeat("0", d-len(body)) + body
	}
	return sp.pad(sp.signOf(neg)+prefix, group(body, sp.grouping, every), '>'), nil
}

func formatFloat(f float64, sp formatSpec) (string, error) {
	if sp.typ == 'n' {
		sp.typ = 'g'
	}
	neg := math.Signbit(f) && !math.IsNaN(f)
	a := math.Abs(f)
	prec := sp.precision
	var body string
	switch {
	case math.IsInf(a, 0) || math.IsNaN(a):
		body = "inf"
		if math.IsNaN(a) {
			body = "nan"
		}
		if sp.typ == 'E' || sp.typ == 'F' || sp.typ == 'G' {
			body = strings.ToUpper(body)
		}
		if sp.typ == '%' {
			body += "%"
		}
		sp.zero = false
	case sp.typ == 'f' || sp.typ == 'F' || sp.typ == '%':
		if prec < 0 {
			prec = 6
		}
		x := a
		if sp.typ == '%' {
			x *= 100
		}
		body = strconv.FormatFloat(x, 'f', prec, 64)
		if sp.alt && prec == 0 {
			body += "."
		}
		if sp.typ == '%' {
			body += "%"
		}
	case sp.typ == 'e' || sp.typ == 'E':
		if prec < 0 {
			prec = 6
		}
		body = strconv.FormatFloat(a, 'e', prec, 64)
		if sp.typ == 'E' {
			body = strings.ToUpper(body)
		}
	case sp.typ == 'g' || sp.typ == 'G':
		if prec < 0 {
			prec = 6
		}
		if prec == 0 {
			prec = 1
		}
		body = strconv.FormatFloat(a, 'g', prec, 64)
		if sp.typ == 'G' {
			body = strings.ToUpper(body)
		}
	case sp.typ == 0:
		if prec < 0 {
			body = pyFloat(a, false)
			break
		}
		if prec == 0 {
			prec = 1
		}
		// CPython: 'g' that keeps a digit after the point in fixed
		// notation, so it takes the exponent one digit sooner
		e := strconv.FormatFloat(a, 'e', prec-1, 64)
		exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
		if exp < -4 || exp >= prec-1 {
			body = trimExpZeros(e)
			break
		}
		body = strconv.FormatFloat(a, 'f', prec-1-exp, 64)
		if strings.Contains(body, ".") {
			body = strings.TrimRight(strings.TrimRight(body, "0"), ".")
		}
		if !strings.Contains(body, ".") {
			body += ".0"
		}
	default:
		return "", fmt.Errorf("ValueError: Unknown format code '%c' for object of type 'float'", sp.typ)
	}
	if sp.grouping != 0 && !strings.ContainsAny(body, "ni") {
		intPart, rest := body, ""
		if i := strings.IndexAny(body, ".e%"); i >= 0 {
			intPart, rest = body[:i], body[i:]
		}
		body = group(intPart, sp.grouping, 3) + rest
	}
	return sp.pad(sp.signOf(neg), body, '>'), nil
}

// trimExpZeros turns Go's 1.000e+02 into Python's 1e+02 for the 'g'-like
// default format.
func trimExpZeros(s string) string {
	i := strings.IndexByte(s, 'e')
	if i < 0 {
		return s
	}
	m := s[:i]
	if strings.Contains(m, ".") {
		m = strings.TrimRight(strings.TrimRight(m, "0"), ".")
	}
	return m + s[i:]
}

// formatField resolves a replacement field's name: an argument (auto
// numbered, by index or by keyword), then .attr and [key] parts.
func formatField(name string, args []jinja.Value, kwargs map[string]jinja.Value, auto *int) (jinja.Value, error) {
	end := strings.IndexAny(name, ".[")
	if end < 0 {
		end = len(name)
	}
	first, rest := name[:end], name[end:]
	var v jinja.Value
	switch n, err := strconv.Atoi(first); {
	case first == "":
		if *auto < 0 {
			return v, fmt.Errorf("ValueError: cannot switch from manual field specification to automatic field numbering")
		}
		if *auto >= len(args) {
			return v, fmt.Errorf("IndexError: Replacement index %d out of range for positional args tuple", *auto)
		}
		v = args[*auto]
		*auto++
	case err == nil:
		if *auto > 0 {
			return v, fmt.Errorf("ValueError: cannot switch from automatic field numbering to manual field specification")
		}
		*auto = -1
		if n >= len(args) {
			return v, fmt.Errorf("IndexError: Replacement index %d out of range for positional args tuple", n)
		}
		v = args[n]
	default:
		var ok bool
		if v, ok = kwargs[first]; !ok {
			return v, fmt.Errorf("KeyError: %s", pyRepr(jinja.NewString(first)))
		}
	}
	for rest != "" {
		var key jinja.Value
		switch rest[0] {
		case '.':
			j := strings.IndexAny(rest[1:], ".[")
			if j < 0 {
				j = len(rest) - 1
			}
			key, rest = jinja.NewString(rest[1:1+j]), rest[1+j:]
		case '[':
			j := strings.IndexByte(rest, ']')
			if j < 0 {
				return v, fmt.Errorf("ValueError: Missing ']' in format string")
			}
			k := rest[1:j]
			if n, err := strconv.Atoi(k); err == nil && n >= 0 && !strings.HasPrefix(k, "+") {
				key = jinja.NewInt(int64(n))
			} else {
				key = jinja.NewString(k)
			}
			rest = rest[j+1:]
			if rest != "" && rest[0] != '.' && rest[0] != '[' {
				return v, fmt.Errorf("ValueError: Only '.' or '[' may follow ']' in format field specifier")
			}
		default:
			return v, fmt.Errorf("ValueError: Only '.' or '[' may follow ']' in format field specifier")
		}
		if v.IsUndefined() {
			return v, fmt.Errorf("UndefinedError: an undefined value has no attributes or items")
		}
		var err error
		if v, err = item(v, key); err != nil {
			return v, err
		}
	}
	return v, nil
}
