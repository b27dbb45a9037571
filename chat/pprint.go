package chat

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/ardanlabs/jinja"
)

// jinja2's pprint filter: Python's pprint.pformat (width 80, indent 1,
// dicts sorted by key), which writes a value on one line when its repr
// fits and otherwise one item per line, long strings cut at spaces into
// adjacent literals.

const pprintWidth = 80

func runeLen(s string) int { return utf8.RuneCountInString(s) }

// sortedKeys are d's keys sorted as Python's sorted() sorts them, or an
// error where they do not compare (pprint would then order them by type
// name and identity, which gotune cannot reproduce).
func pprintKeys(d *jinja.Dict) ([]string, error) {
	keys := append([]string(nil), d.Keys...)
	var err error
	sort.SliceStable(keys, func(i, j int) bool {
		c, e := pyCompare("<", origKey(d, keys[i]), origKey(d, keys[j]))
		if e != nil && err == nil {
			err = fmt.Errorf("pprint of a dict whose keys do not compare is not supported")
		}
		return c < 0
	})
	return keys, err
}

// pprintRepr is pprint's _safe_repr: repr with dicts sorted.
func pprintRepr(b *strings.Builder, v jinja.Value) error {
	switch {
	case isNamespace(v) || isView(v):
		writeRepr(b, v)
	case v.IsDict():
		d := v.AsDict()
		keys, err := pprintKeys(d)
		if err != nil {
			return err
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := pprintRepr(b, origKey(d, k)); err != nil {
				return err
			}
			b.WriteString(": ")
			if err := pprintRepr(b, d.Data[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case v.IsList():
		items := v.AsList().Items
		open, close := "[", "]"
		if isTuple(v) {
			open, close = "(", ")"
			if len(items) == 1 {
				close = ",)"
			}
		}
		b.WriteString(open)
		for i, it := range items {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := pprintRepr(b, it); err != nil {
				return err
			}
		}
		b.WriteString(close)
	default:
		if err := digitLimit(v); err != nil {
			return err
		}
		writeRepr(b, v)
	}
	return nil
}

func pprintReprString(v jinja.Value) (string, error) {
	var b strings.Builder
	err := pprintRepr(&b, v)
	return b.String(), err
}

// pprintFormat is PrettyPrinter._format.
func pprintFormat(b *strings.Builder, v jinja.Value, indent, allowance, level int) error {
	rep, err := pprintReprString(v)
	if err != nil {
		return err
	}
	if runeLen(rep) <= pprintWidth-indent-allowance || isNamespace(v) || isView(v) {
		b.WriteString(rep)
		return nil
	}
	switch {
	case v.IsDict():
		d := v.AsDict()
		keys, err := pprintKeys(d)
		if err != nil {
			return err
		}
		b.WriteByte('{')
		ind := indent + 1
		for i, k := range keys {
			last := i == len(keys)-1
			krep, err := pprintReprString(origKey(d, k))
			if err != nil {
				return err
			}
			b.WriteString(krep)
			b.WriteString(": ")
			a := 1
			if last {
				a = allowance + 1
			}
			if err := pprintFormat(b, d.Data[k], ind+runeLen(krep)+2, a, level+1); err != nil {
				return err
			}
			if !last {
				b.WriteString(",\n" + strings.Repeat(" ", ind))
			}
		}
		b.WriteByte('}')
		return nil
	case v.IsList():
		items := v.AsList().Items
		open, close := "[", "]"
		if isTuple(v) {
			open, close = "(", ")"
			if len(items) == 1 {
				close = ",)"
			}
		}
		b.WriteString(open)
		ind := indent + 1
		for i, it := range items {
			if i > 0 {
				b.WriteString(",\n" + strings.Repeat(" ", ind))
			}
			a := 1
			if i == len(items)-1 {
				a = allowance + runeLen(close)
			}
			if err := pprintFormat(b, it, ind, a, level+1); err != nil {
				return err
			}
		}
		b.WriteString(close)
		return nil
	case v.IsString():
		pprintStr(b, v.AsString(), indent, allowance, level)
		return nil
	}
	b.WriteString(rep)
	return nil
}

// pprintStr is PrettyPrinter._pprint_str: a string too long for its line
// as adjacent literals, each line of the text cut after whitespace runs.
func pprintStr(b *strings.Builder, s string, indent, allowance, level int) {
	if level == 1 {
		indent++
		allowance++
	}
	var chunks []string
	maxWidth1, maxWidth := pprintWidth-indent, pprintWidth-indent
	lines := pySplitLinesKeep(s, true)
	rep := ""
	for i, line := range lines {
		rep = pyQuote(line)
		if i == len(lines)-1 {
			maxWidth1 -= allowance
		}
		if runeLen(rep) <= maxWidth1 {
			chunks = append(chunks, rep)
			continue
		}
		parts := pprintParts(line)
		maxWidth2 := maxWidth
		current := ""
		for j, part := range parts {
			candidate := current + part
			if j == len(parts)-1 && i == len(lines)-1 {
				maxWidth2 -= allowance
			}
			if runeLen(pyQuote(candidate)) > maxWidth2 {
				if current != "" {
					chunks = append(chunks, pyQuote(current))
				}
				current = part
			} else {
				current = candidate
			}
		}
		if current != "" {
			chunks = append(chunks, pyQuote(current))
		}
	}
	if len(chunks) == 1 {
		b.WriteString(rep)
		return
	}
	if level == 1 {
		b.WriteByte('(')
	}
	for i, c := range chunks {
		if i > 0 {
			b.WriteString("\n" + strings.Repeat(" ", indent))
		}
		b.WriteString(c)
	}
	if level == 1 {
		b.WriteByte(')')
	}
}

// pprintParts is re.findall(r'\S*\s*', line) without its final empty
// match: runs of non-space then space.
func pprintParts(line string) []string {
	var parts []string
	r := []rune(line)
	for i := 0; i < len(r); {
		j := i
		for j < len(r) && !isPySpace(r[j]) {
			j++
		}
		for j < len(r) && isPySpace(r[j]) {
			j++
		}
		parts = append(parts, string(r[i:j]))
		i = j
	}
	return parts
}

func installPprint(st *renderState, def func(string, fn)) {
	def("__f_pprint", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewString(""), nil
		}
		if err := st.check(args[0]); err != nil {
			return jinja.Value{}, err
		}
		var b strings.Builder
		if err := pprintFormat(&b, args[0], 0, 0, 1); err != nil {
			return jinja.Value{}, err
		}
		return jinja.NewString(b.String()), st.room(b.Len(), "pprint")
	})
}
