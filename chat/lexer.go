package chat

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The template source is lexed here rather than by the rendering library
// because transformers' whitespace rules (trim_blocks, lstrip_blocks, "-" and
// "+" markers, one trailing newline dropped) apply to the raw text between
// tags, and the library's own trimming reaches past expression tags. We apply
// the rules exactly as jinja2's lexer does and hand the library text that
// needs no further trimming.

type segKind int

const (
	segText segKind = iota
	segExpr         // {{ ... }}
	segStmt         // {% ... %}
)

type segment struct {
	kind segKind
	text string // text after whitespace control, or the tag's tokens
	toks []token
	line int
}

// TemplateError is a problem in the template source or a failure while
// rendering it; Line is 1-based (0 when unknown).
type TemplateError struct {
	Name string
	Line int
	Msg  string
}

func (e *TemplateError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("chat template %s: line %d: %s", e.Name, e.Line, e.Msg)
	}
	return fmt.Sprintf("chat template %s: %s", e.Name, e.Msg)
}

// isPySpace mirrors Python's str.isspace, which jinja2's "-" markers use.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

func rstripPy(s string) string { return strings.TrimRightFunc(s, isPySpace) }
func lstripPy(s string) string { return strings.TrimLeftFunc(s, isPySpace) }

// normalizeNewlines converts \r\n and \r to \n and drops one trailing newline
// (jinja2's keep_trailing_newline=False).
func normalizeNewlines(src string) string {
	if strings.ContainsRune(src, '\r') {
		src = strings.ReplaceAll(src, "\r\n", "\n")
		src = strings.ReplaceAll(src, "\r", "\n")
	}
	return strings.TrimSuffix(src, "\n")
}

type lexer struct {
	src  string
	name string
	pos  int
	line int
	segs []segment
	// whitespace control carried from the previous tag's closer
	stripNext    bool // "-" closer: strip all leading whitespace of next text
	trimNL       bool // trim_blocks: drop one leading newline of next text
	lineStarting bool // previous match ended with a newline
}

func lex(name, src string) ([]segment, error) {
	lx := &lexer{src: normalizeNewlines(src), name: name, line: 1, lineStarting: true}
	if err := lx.run(); err != nil {
		return nil, err
	}
	return lx.segs, nil
}

func (lx *lexer) errf(line int, format string, a ...any) error {
	return &TemplateError{Name: lx.name, Line: line, Msg: fmt.Sprintf(format, a...)}
}

// nextOpener finds the next "{{", "{%" or "{#" at or after pos.
func (lx *lexer) nextOpener(from int) int {
	for i := from; i+1 < len(lx.src); i++ {
		if lx.src[i] == '{' {
			switch lx.src[i+1] {
			case '{', '%', '#':
				return i
			}
		}
	}
	return -1
}

func (lx *lexer) emitText(text string, line int, opener string, mod byte) {
	if lx.stripNext {
		text = lstripPy(text)
	} else if lx.trimNL {
		text = strings.TrimPrefix(text, "\n")
	}
	lx.stripNext, lx.trimNL = false, false
	switch {
	case mod == '-':
		text = rstripPy(text)
	case mod != '+' && (opener == "{%" || opener == "{#"):
		// lstrip_blocks: drop the indentation before a block or comment tag
		// when only whitespace precedes it on its line.
		l := strings.LastIndexByte(text, '\n') + 1
		if l > 0 || lx.lineStarting {
			rest := text[l:]
			if strings.TrimFunc(rest, func(r rune) bool { return r != '\n' && isPySpace(r) }) == "" {
				text = text[:l]
			}
		}
	}
	if text != "" {
		lx.segs = append(lx.segs, segment{kind: segText, text: text, line: line})
	}
}

func (lx *lexer) advance(to int) {
	lx.line += strings.Count(lx.src[lx.pos:to], "\n")
	lx.pos = to
}

func (lx *lexer) run() error {
	for lx.pos < len(lx.src) {
		i := lx.nextOpener(lx.pos)
		if i < 0 {
			lx.emitText(lx.src[lx.pos:], lx.line, "", 0)
			lx.advance(len(lx.src))
			return nil
		}
		opener := lx.src[i : i+2]
		var mod byte
		if i+2 < len(lx.src) && (lx.src[i+2] == '-' || lx.src[i+2] == '+') {
			mod = lx.src[i+2]
		}
		textLine := lx.line
		lx.emitText(lx.src[lx.pos:i], textLine, opener, mod)
		lx.advance(i)
		tagLine := lx.line
		start := i + 2
		if mod != 0 {
			start++
		}
		switch opener {
		case "{#":
			end := strings.Index(lx.src[start:], "#}")
			if end < 0 {
				return lx.errf(tagLine, "unclosed comment {# ... #}")
			}
			end += start
			closeMod := byte(0)
			if end > start && (lx.src[end-1] == '-' || lx.src[end-1] == '+') {
				closeMod = lx.src[end-1]
			}
			lx.advance(end + 2)
			lx.afterClose(closeMod, true)
		default:
			toks, endPos, closeMod, err := lexTag(lx.src, start, opener == "{{", tagLine, lx.name)
			if err != nil {
				return err
			}
			kind := segStmt
			if opener == "{{" {
				kind = segExpr
			}
			lx.advance(endPos)
			if kind == segStmt && len(toks) == 1 && toks[0].kind == tName && toks[0].s == "raw" {
				if err := lx.raw(tagLine, closeMod); err != nil {
					return err
				}
				continue
			}
			lx.segs = append(lx.segs, segment{kind: kind, toks: toks, line: tagLine})
			lx.afterClose(closeMod, kind == segStmt)
		}
	}
	return nil
}

// afterClose applies a closer's whitespace rules to the following text.
func (lx *lexer) afterClose(mod byte, block bool) {
	lx.lineStarting = false
	switch {
	case mod == '-':
		lx.stripNext = true
		// the closer regex also consumed the whitespace; line_starting is
		// whether that whitespace ended in a newline
		j := lx.pos
		for j < len(lx.src) {
			r, n := utf8.DecodeRuneInString(lx.src[j:])
			if !isPySpace(r) {
				break
			}
			j += n
		}
		lx.lineStarting = j > lx.pos && lx.src[j-1] == '\n'
	case block && mod != '+':
		lx.trimNL = true
		lx.lineStarting = strings.HasPrefix(lx.src[lx.pos:], "\n")
	}
}

// raw copies everything up to {% endraw %} verbatim.
func (lx *lexer) raw(line int, openMod byte) error {
	// jinja2's raw opener takes no block suffix: trim_blocks leaves the
	// newline after {% raw %} in place ({% raw -%} still strips)
	lx.afterClose(openMod, false)
	from := lx.pos
	for {
		i := lx.nextOpener(from)
		if i < 0 {
			return lx.errf(line, "unclosed {%% raw %%} block")
		}
		if lx.src[i+1] != '%' {
			from = i + 2
			continue
		}
		j := i + 2
		var mod byte
		if j < len(lx.src) && (lx.src[j] == '-' || lx.src[j] == '+') {
			mod = lx.src[j]
			j++
		}
		rest := strings.TrimLeft(lx.src[j:], " \t\n")
		if !strings.HasPrefix(rest, "endraw") {
			from = i + 2
			continue
		}
		k := len(lx.src) - len(rest) + len("endraw")
		k += len(lx.src[k:]) - len(strings.TrimLeft(lx.src[k:], " \t\n"))
		closeMod := byte(0)
		if k < len(lx.src) && (lx.src[k] == '-' || lx.src[k] == '+') {
			closeMod = lx.src[k]
			k++
		}
		if !strings.HasPrefix(lx.src[k:], "%}") {
			return lx.errf(lx.line, "malformed {%% endraw %%} tag")
		}
		lx.emitText(lx.src[lx.pos:i], lx.line, "{%", mod)
		lx.advance(k + 2)
		lx.afterClose(closeMod, true)
		return nil
	}
}
