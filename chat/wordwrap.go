package chat

import (
	"fmt"
	"strings"

	"github.com/ardanlabs/jinja"
	"github.com/dlclark/regexp2"
)

// jinja2's wordwrap: Python's textwrap.wrap of each line (expand_tabs and
// replace_whitespace off, whitespace dropped at line ends), joined by the
// wrap string.

// textwrapSep is textwrap's wordsep_re: whitespace runs, em-dashes, and
// words split after their hyphens (it needs look-behind, which Go's
// regexp lacks).
var textwrapSep = func() *regexp2.Regexp {
	ws := `[\t\n\x0b\x0c\r ]`
	nws := `[^\t\n\x0b\x0c\r ]`
	wp := `[\w!"'&.,?]`
	lt := `[^\d\W]`
	return regexp2.MustCompile(`(`+ws+`+|(?<=`+wp+`)-{2,}(?=\w)|`+nws+`+?(?:-(?:(?<=`+lt+`{2}-)|(?<=`+lt+`-`+lt+`-))(?=`+lt+`-?`+lt+`)|(?=`+ws+`|\z)|(?<=`+wp+`)(?=-{2,}\w)))`, regexp2.Unicode)
}()

var textwrapSimpleSep = regexp2.MustCompile(`([\t\n\x0b\x0c\r ]+)`, regexp2.Unicode)

// textwrapChunks is textwrap's _split: the matches and the text between
// them, empty pieces dropped.
func textwrapChunks(text string, hyphens bool) [][]rune {
	re := textwrapSimpleSep
	if hyphens {
		re = textwrapSep
	}
	r := []rune(text)
	var chunks [][]rune
	last := 0
	m, _ := re.FindRunesMatch(r)
	for m != nil {
		if m.Index > last {
			chunks = append(chunks, r[last:m.Index])
		}
		if m.Length > 0 {
			chunks = append(chunks, r[m.Index:m.Index+m.Length])
		}
		last = m.Index + m.Length
		m, _ = re.FindNextMatch(m)
	}
	if last < len(r) {
		chunks = append(chunks, r[last:])
	}
	return chunks
}

func blankChunk(c []rune) bool {
	for _, r := range c {
		if !isPySpace(r) {
			return false
		}
	}
	return true
}

// textwrapWrap is textwrap.wrap(text, width, break_long_words,
// break_on_hyphens) with the defaults jinja2 leaves.
func textwrapWrap(text string, width int, breakLong, hyphens bool) []string {
	chunks := textwrapChunks(text, hyphens)
	// chunks are taken from the front
	var lines []string
	for len(chunks) > 0 {
		var cur [][]rune
		curLen := 0
		if blankChunk(chunks[0]) && len(lines) > 0 {
			chunks = chunks[1:]
		}
		for len(chunks) > 0 && curLen+len(chunks[0]) <= width {
			cur = append(cur, chunks[0])
			curLen += len(chunks[0])
			chunks = chunks[1:]
		}
		if len(chunks) > 0 && len(chunks[0]) > width {
			// _handle_long_word
			spaceLeft := width - curLen
			if width < 1 {
				spaceLeft = 1
			}
			if breakLong {
				end := spaceLeft
				chunk := chunks[0]
				if hyphens && len(chunk) > spaceLeft {
					hyphen := -1
					for i := min(spaceLeft, len(chunk)) - 1; i >= 0; i-- {
						if chunk[i] == '-' {
							hyphen = i
							break
						}
					}
					if hyphen > 0 && strings.Trim(string(chunk[:hyphen]), "-") != "" {
						end = hyphen + 1
					}
				}
				cur = append(cur, chunk[:end])
				chunks[0] = chunk[end:]
			} else if len(cur) == 0 {
				cur = append(cur, chunks[0])
				chunks = chunks[1:]
			}
		}
		if len(cur) > 0 && blankChunk(cur[len(cur)-1]) {
			cur = cur[:len(cur)-1]
		}
		if len(cur) > 0 {
			var b strings.Builder
			for _, c := range cur {
				b.WriteString(string(c))
			}
			lines = append(lines, b.String())
		}
	}
	return lines
}

func installWordwrap(st *renderState, def func(string, fn)) {
	def("__f_wordwrap", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.NewString(""), nil
		}
		v := args[0]
		switch {
		case v.IsUndefined():
			return jinja.Value{}, fmt.Errorf("UndefinedError: wordwrap of an undefined value")
		case !v.IsString():
			return jinja.Value{}, fmt.Errorf("AttributeError: '%s' object has no attribute 'splitlines'", pyTypeName(v))
		}
		width := int64(79)
		if w, ok := kwOrArg(args, kwargs, 1, "width"); ok {
			if !isInt(w) {
				return jinja.Value{}, fmt.Errorf("TypeError: '<=' not supported between instances of 'int' and '%s'", pyTypeName(w))
			}
			width = libInt(w)
		}
		if width <= 0 {
			return jinja.Value{}, fmt.Errorf("ValueError: invalid width %d (must be > 0)", width)
		}
		width = min(width, int64(st.maxOut)+1)
		breakLong := true
		if b, ok := kwOrArg(args, kwargs, 2, "break_long_words"); ok {
			breakLong = b.IsTruthy()
		}
		wrap := "\n"
		if w, ok := kwOrArg(args, kwargs, 3, "wrapstring"); ok && !w.IsNone() {
			wrap = pyStr(w)
		}
		hyphens := true
		if h, ok := kwOrArg(args, kwargs, 4, "break_on_hyphens"); ok {
			hyphens = h.IsTruthy()
		}
		lines := pySplitLines(v.AsString())
		paras := make([]string, len(lines))
		for i, l := range lines {
			paras[i] = strings.Join(textwrapWrap(l, int(width), breakLong, hyphens), wrap)
		}
		out := strings.Join(paras, wrap)
		return jinja.NewString(out), st.room(len(out), "wordwrap")
	})
}
