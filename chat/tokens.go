package chat

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokKind int

const (
	tName tokKind = iota
	tInt
	tFloat
	tString
	tOp // operators and punctuation
)

type token struct {
	kind tokKind
	s    string // name, operator, or decoded string value
	i    int64
	f    float64
	big  string // an int literal past int64: its digits (i is unset)
	line int
}

func (t token) is(kind tokKind, s string) bool { return t.kind == kind && t.s == s }

var ops3 = []string{}
var ops2 = []string{"//", "**", "==", "!=", "<=", ">="}

const ops1 = "+-*/%~<>=()[]{},.:|"

// lexTag tokenizes a tag's contents starting at start until its closer
// ("}}" for expressions, "%}" for statements) at bracket depth 0, as jinja2's
// lexer does. It returns the tokens, the position after the closer and the
// closer's modifier ('-', '+' or 0).
func lexTag(src string, start int, isExpr bool, line int, name string) ([]token, int, byte, error) {
	closer := "%}"
	if isExpr {
		closer = "}}"
	}
	errf := func(l int, format string, a ...any) error {
		return &TemplateError{Name: name, Line: l, Msg: sprintf(format, a...)}
	}
	var toks []token
	depth := 0
	i := start
	for i < len(src) {
		c := src[i]
		if c == '\n' {
			line++
			i++
			continue
		}
		if c == ' ' || c == '\t' || c == '\r' {
			i++
			continue
		}
		if depth == 0 {
			if strings.HasPrefix(src[i:], closer) {
				return toks, i + 2, 0, nil
			}
			if (c == '-' || c == '+') && strings.HasPrefix(src[i+1:], closer) {
				if c == '+' && isExpr {
					return nil, 0, 0, errf(line, "unexpected '+' before }}")
				}
				return toks, i + 3, c, nil
			}
		}
		switch {
		case c == '\'' || c == '"':
			s, n, nl, err := decodePyString(src[i:])
			if err != nil {
				return nil, 0, 0, errf(line, "%v", err)
			}
			// adjacent string literals concatenate, as in Python
			if len(toks) > 0 && toks[len(toks)-1].kind == tString {
				toks[len(toks)-1].s += s
			} else {
				toks = append(toks, token{kind: tString, s: s, line: line})
			}
			line += nl
			i += n
		case c >= '0' && c <= '9':
			j := i
			isFloat := false
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '_') {
				j++
			}
			if j+1 < len(src) && src[j] == '.' && src[j+1] >= '0' && src[j+1] <= '9' {
				isFloat = true
				j++
				for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '_') {
					j++
				}
			}
			if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
				k := j + 1
				if k < len(src) && (src[k] == '+' || src[k] == '-') {
					k++
				}
				if k < len(src) && src[k] >= '0' && src[k] <= '9' {
					isFloat = true
					j = k
					for j < len(src) && src[j] >= '0' && src[j] <= '9' {
						j++
					}
				}
			}
			lit := strings.ReplaceAll(src[i:j], "_", "")
			if isFloat {
				f, err := strconv.ParseFloat(lit, 64)
				if err != nil {
					return nil, 0, 0, errf(line, "bad number %q", src[i:j])
				}
				toks = append(toks, token{kind: tFloat, f: f, s: src[i:j], line: line})
			} else {
				n, err := strconv.ParseInt(lit, 10, 64)
				t := token{kind: tInt, i: n, s: src[i:j], line: line}
				if err != nil {
					// Python's ints are unbounded (see bigint.go)
					if len(lit) > maxIntDigits {
						return nil, 0, 0, errf(line, "integer literal of more than %d digits", maxIntDigits)
					}
					t.big = strings.TrimLeft(lit, "0")
				}
				toks = append(toks, t)
			}
			i = j
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(src) && (src[j] == '_' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' || src[j] >= '0' && src[j] <= '9') {
				j++
			}
			toks = append(toks, token{kind: tName, s: src[i:j], line: line})
			i = j
		default:
			op := ""
			for _, o := range ops2 {
				if strings.HasPrefix(src[i:], o) {
					op = o
					break
				}
			}
			if op == "" && strings.IndexByte(ops1, c) >= 0 {
				op = string(c)
			}
			if op == "" {
				r, _ := utf8.DecodeRuneInString(src[i:])
				return nil, 0, 0, errf(line, "unexpected character %q in tag", r)
			}
			switch op {
			case "(", "[", "{":
				depth++
			case ")", "]", "}":
				if depth == 0 {
					return nil, 0, 0, errf(line, "unbalanced %q in tag", op)
				}
				depth--
			}
			toks = append(toks, token{kind: tOp, s: op, line: line})
			i += len(op)
		}
	}
	kind := "statement {% ... %}"
	if isExpr {
		kind = "expression {{ ... }}"
	}
	return nil, 0, 0, errf(line, "unclosed %s", kind)
}

// decodePyString decodes a quoted literal with Python's escapes, returning
// the value, bytes consumed and newlines crossed.
func decodePyString(s string) (string, int, int, error) {
	q := s[0]
	var b strings.Builder
	nl := 0
	i := 1
	for i < len(s) {
		c := s[i]
		if c == q {
			return b.String(), i + 1, nl, nil
		}
		if c == '\n' {
			nl++
		}
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			i++
			continue
		}
		e := s[i+1]
		i += 2
		switch e {
		case '\n':
			nl++ // line continuation
		case '\\', '\'', '"':
			b.WriteByte(e)
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if i+n > len(s) {
				return "", 0, 0, errorf("truncated \\%c escape in string literal", e)
			}
			v, err := strconv.ParseUint(s[i:i+n], 16, 32)
			if err != nil || v > utf8.MaxRune {
				return "", 0, 0, errorf("bad \\%c escape in string literal", e)
			}
			b.WriteRune(rune(v))
			i += n
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i - 1
			k := j
			for k < len(s) && k < j+3 && s[k] >= '0' && s[k] <= '7' {
				k++
			}
			v, _ := strconv.ParseUint(s[j:k], 8, 32)
			b.WriteRune(rune(v))
			i = k
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return "", 0, 0, errorf("unterminated string literal")
}
