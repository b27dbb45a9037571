package tokenizer

import (
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// preTokenizer splits a piece into smaller pieces and passes each to emit.
type preTokenizer interface {
	split(n nstr, emit func(nstr))
}

type seqPreTokenizer []preTokenizer

func (s seqPreTokenizer) split(n nstr, emit func(nstr)) {
	s.run(0, n, emit)
}

func (s seqPreTokenizer) run(k int, n nstr, emit func(nstr)) {
	if k == len(s) {
		emit(n)
		return
	}
	if k == len(s)-1 {
		s[k].split(n, emit)
		return
	}
	s[k].split(n, func(m nstr) { s.run(k+1, m, emit) })
}

// behavior says what happens to the pattern's matches (HF's
// SplitDelimiterBehavior).
type behavior int

const (
	removed behavior = iota
	isolated
	mergedWithPrevious
	mergedWithNext
	contiguous
)

// matcher finds pattern matches in a piece of text.
type matcher interface {
	matches(s string, fn func(i, j int))
}

// splitPreTokenizer is HF's Split: a pattern, a behavior and invert.
type splitPreTokenizer struct {
	m        matcher
	behavior behavior
	invert   bool
}

type part struct {
	i, j  int
	match bool
}

func (p splitPreTokenizer) split(n nstr, emit func(nstr)) {
	if n.s == "" {
		return
	}
	if p.behavior == isolated && !p.invert {
		// Fast path for the common case: no intermediate slice.
		last := 0
		p.m.matches(n.s, func(i, j int) {
			if i > last {
				emit(n.slice(last, i))
			}
			if j > i {
				emit(n.slice(i, j))
			}
			last = j
		})
		if last < len(n.s) {
			emit(n.slice(last, len(n.s)))
		}
		return
	}
	var parts []part
	last := 0
	p.m.matches(n.s, func(i, j int) {
		if i > last {
			parts = append(parts, part{last, i, p.invert})
		}
		parts = append(parts, part{i, j, !p.invert})
		last = j
	})
	if last < len(n.s) {
		parts = append(parts, part{last, len(n.s), p.invert})
	}
	for _, q := range applyBehavior(parts, p.behavior) {
		if q.j > q.i {
			emit(n.slice(q.i, q.j))
		}
	}
}

// applyBehavior turns (range, is-match) parts into the kept ranges, following
// HF's NormalizedString::split fold for each behavior.
func applyBehavior(parts []part, b behavior) []part {
	var out []part
	prevMatch := false
	switch b {
	case isolated:
		return parts
	case removed:
		for _, q := range parts {
			if !q.match {
				out = append(out, q)
			}
		}
		return out
	case contiguous:
		for _, q := range parts {
			if q.match == prevMatch && len(out) > 0 {
				out[len(out)-1].j = q.j
			} else {
				out = append(out, q)
			}
			prevMatch = q.match
		}
	case mergedWithPrevious:
		for _, q := range parts {
			if q.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].j = q.j
			} else {
				out = append(out, q)
			}
			prevMatch = q.match
		}
	case mergedWithNext:
		for k := len(parts) - 1; k >= 0; k-- {
			q := parts[k]
			if q.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].i = q.i
			} else {
				out = append(out, q)
			}
			prevMatch = q.match
		}
		for a, z := 0, len(out)-1; a < z; a, z = a+1, z-1 {
			out[a], out[z] = out[z], out[a]
		}
	}
	return out
}

type literalMatcher string

func (l literalMatcher) matches(s string, fn func(i, j int)) {
	forEachMatch(s, string(l), nil, fn)
}

type regexMatcher struct{ re *regexp2.Regexp }

// matches reports empty matches too: HF's Split splits at them.
func (r regexMatcher) matches(s string, fn func(i, j int)) { regexMatches(r.re, s, true, fn) }

// runeMatcher matches single characters, as HF's char-predicate patterns.
type runeMatcher func(rune) bool

func (f runeMatcher) matches(s string, fn func(i, j int)) {
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if f(r) {
			fn(i, i+w)
		}
		i += w
	}
}

// byteLevelPreTokenizer is HF's ByteLevel pre-tokenizer minus the byte to
// character mapping, which the BPE model does on raw bytes instead.
type byteLevelPreTokenizer struct {
	addPrefixSpace bool
	re             matcher // nil when use_regex is false
}

func (b byteLevelPreTokenizer) split(n nstr, emit func(nstr)) {
	if b.addPrefixSpace && !strings.HasPrefix(n.s, " ") {
		n = n.prepend(" ")
	}
	if b.re == nil {
		if n.s != "" {
			emit(n)
		}
		return
	}
	splitPreTokenizer{m: b.re, behavior: isolated}.split(n, emit)
}

type prependScheme int

const (
	prependAlways prependScheme = iota
	prependFirst
	prependNever
)

type metaspacePreTokenizer struct {
	replacement string
	scheme      prependScheme
	splitPieces bool
}

func (m metaspacePreTokenizer) split(n nstr, emit func(nstr)) {
	if strings.Contains(n.s, " ") {
		n = replaceNormalizer{literal: " ", content: m.replacement}.normalize(n)
	}
	switch m.scheme {
	case prependAlways:
		if !strings.HasPrefix(n.s, m.replacement) {
			n = n.prepend(m.replacement)
		}
	case prependFirst:
		if !strings.HasPrefix(n.s, m.replacement) && n.start {
			n = n.prepend(m.replacement)
		}
	}
	if !m.splitPieces {
		if n.s != "" {
			emit(n)
		}
		return
	}
	splitPreTokenizer{m: literalMatcher(m.replacement), behavior: mergedWithNext}.split(n, emit)
}

// Character classes shared by the hand-written GPT-2/Llama-3/Qwen2 splitters.
const (
	clsOther = iota
	clsLetter
	clsNumber
	clsSpace // White_Space, which is what \s means in Oniguruma and Rust
)

var asciiClass = func() (t [128]uint8) {
	for c := 0; c < 128; c++ {
		r := rune(c)
		switch {
		case unicode.IsLetter(r):
			t[c] = clsLetter
		case unicode.IsNumber(r):
			t[c] = clsNumber
		case unicode.IsSpace(r):
			t[c] = clsSpace
		}
	}
	return t
}()

// classAt returns the class and width of the character at s[i].
func classAt(s string, i int) (uint8, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return asciiClass[c], 1
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	switch {
	case r == utf8.RuneError && w == 1:
		return clsOther, 1
	case unicode.IsLetter(r):
		return clsLetter, w
	case unicode.IsNumber(r):
		return clsNumber, w
	case unicode.IsSpace(r):
		return clsSpace, w
	}
	return clsOther, w
}

// runOf returns the end of the run of characters of class cls starting at i.
func runOf(s string, i int, cls uint8) int {
	for i < len(s) {
		c, w := classAt(s, i)
		if c != cls {
			break
		}
		i += w
	}
	return i
}

func isCRLF(c byte) bool { return c == '\r' || c == '\n' }

// gpt2Matcher is the GPT-2 split regex
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// written out by hand: every position starts a match, so scanning is a
// sequence of anchored matches.
type gpt2Matcher struct{}

func (gpt2Matcher) matches(s string, fn func(i, j int)) {
	for i := 0; i < len(s); {
		j := gpt2At(s, i)
		fn(i, j)
		i = j
	}
}

func contraction(s string, i int, fold bool) int {
	if s[i] != '\'' || i+1 >= len(s) {
		return 0
	}
	c := s[i+1]
	if fold && c >= 'A' && c <= 'Z' {
		c += 'a' - 'A'
	}
	switch c {
	case 's', 't', 'm', 'd':
		return 2
	case 'r', 'v', 'l':
		if i+2 < len(s) {
			d := s[i+2]
			if fold && d >= 'A' && d <= 'Z' {
				d += 'a' - 'A'
			}
			if (c == 'r' || c == 'v') && d == 'e' || c == 'l' && d == 'l' {
				return 3
			}
		}
	}
	// Oniguruma's case folding also maps U+017F (long s) to 's'.
	if fold && strings.HasPrefix(s[i+1:], "ſ") {
		return 3
	}
	return 0
}

func gpt2At(s string, i int) int {
	if n := contraction(s, i, false); n > 0 {
		return i + n
	}
	c0, w0 := classAt(s, i)
	if s[i] == ' ' && i+1 < len(s) {
		c1, w1 := classAt(s, i+1)
		if c1 != clsSpace {
			return runOf(s, i+1+w1, c1)
		}
	}
	if c0 != clsSpace {
		return runOf(s, i+w0, c0)
	}
	return spaceTail(s, i, runOf(s, i+w0, clsSpace))
}

// spaceTail resolves \s+(?!\S)|\s+ for the whitespace run s[i:j].
func spaceTail(s string, i, j int) int {
	if j == len(s) {
		return j
	}
	// Give back the last character so the next match can start with it,
	// unless the run is a single character.
	_, w := utf8.DecodeLastRuneInString(s[i:j])
	if j-w > i {
		return j - w
	}
	return j
}

// llama3Matcher is the Llama-3 split regex (maxDigits 3) and the Qwen2 one
// (maxDigits 1):
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
type llama3Matcher struct{ maxDigits int }

func (m llama3Matcher) matches(s string, fn func(i, j int)) {
	for i := 0; i < len(s); {
		j := m.at(s, i)
		fn(i, j)
		i = j
	}
}

func (m llama3Matcher) at(s string, i int) int {
	if n := contraction(s, i, true); n > 0 {
		return i + n
	}
	c0, w0 := classAt(s, i)
	switch c0 {
	case clsLetter:
		return runOf(s, i+w0, clsLetter)
	case clsNumber:
		j := i + w0
		for k := 1; k < m.maxDigits && j < len(s); k++ {
			c, w := classAt(s, j)
			if c != clsNumber {
				break
			}
			j += w
		}
		return j
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+ with a one-character prefix.
	if !isCRLF(s[i]) && i+w0 < len(s) {
		if c1, w1 := classAt(s, i+w0); c1 == clsLetter {
			return runOf(s, i+w0+w1, clsLetter)
		}
	}
	// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	start := -1
	if c0 == clsOther {
		start = i + w0
	} else if s[i] == ' ' && i+1 < len(s) {
		if c1, w1 := classAt(s, i+1); c1 == clsOther {
			start = i + 1 + w1
		}
	}
	if start >= 0 {
		j := runOf(s, start, clsOther)
		for j < len(s) && isCRLF(s[j]) {
			j++
		}
		return j
	}
	// c0 is whitespace here.
	j := runOf(s, i+w0, clsSpace)
	// \s*[\r\n]+ : up to and including the last CR/LF of the run.
	for k := j - 1; k >= i; k-- {
		if isCRLF(s[k]) {
			return k + 1
		}
	}
	return spaceTail(s, i, j)
}

// Known split patterns that have a hand-written matcher.
const (
	patGPT2   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	patLlama3 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patQwen2  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// compileSplitRegex returns a hand-written matcher for the known patterns and
// a regexp2 matcher otherwise.
func compileSplitRegex(pattern string) (matcher, error) {
	switch pattern {
	case patGPT2:
		return gpt2Matcher{}, nil
	case patLlama3:
		return llama3Matcher{maxDigits: 3}, nil
	case patQwen2:
		return llama3Matcher{maxDigits: 1}, nil
	}
	re, err := compileRegex(pattern)
	if err != nil {
		return nil, err
	}
	return regexMatcher{re}, nil
}

// compileRegex compiles a tokenizer.json pattern and refuses one that
// backtracks catastrophically. regexp2, like the Oniguruma engine behind the
// reference tokenizers, backtracks: with (a+)+$ a 26-character prompt takes
// ten seconds, doubling with each character. Such a pattern is found by
// probing it with runs of the characters it names, under a match timeout;
// the timeout then stays on as a backstop for inputs the probes missed.
func compileRegex(pattern string) (*regexp2.Regexp, error) {
	re, err := regexp2.Compile(pattern, regexp2.Unicode)
	if err != nil {
		return nil, err
	}
	re.MatchTimeout = probeTimeout
	for _, probe := range regexProbes(pattern) {
		runes := []rune(probe)
		m, err := re.FindRunesMatch(runes)
		for err == nil && m != nil {
			m, err = re.FindNextMatch(m)
		}
		if err != nil {
			return nil, fmt.Errorf("the pattern backtracks catastrophically: matching %d characters (%.12q…) took over %v", len(runes), probe, probeTimeout)
		}
	}
	re.MatchTimeout = matchTimeout
	return re, nil
}

const (
	// probeTimeout bounds each probe; a well-behaved pattern matches the
	// probes in microseconds.
	probeTimeout = 250 * time.Millisecond
	// matchTimeout bounds one match at run time.
	matchTimeout = 5 * time.Second
	probeLen     = 28
)

// regexProbes are runs of one character (each character the pattern names
// literally, and a few classes' representatives) ending in characters that
// force a failing match to backtrack.
func regexProbes(pattern string) []string {
	chars := map[rune]bool{'a': true, 'A': true, '0': true, ' ': true, '\n': true, '.': true, '_': true, 'é': true}
	for _, r := range pattern {
		if r != '\\' && len(chars) < 64 {
			chars[r] = true
		}
	}
	var probes []string
	for c := range chars {
		run := strings.Repeat(string(c), probeLen)
		for _, end := range []string{"", "!", "\x00", " ", "a"} {
			probes = append(probes, run+end)
		}
	}
	sort.Strings(probes) // map order must not decide which probe reports
	return probes
}

func isNumeric(r rune) bool   { return unicode.IsNumber(r) }
func isSpaceRune(r rune) bool { return unicode.IsSpace(r) }

// isPunctuation is HF's is_punc: ASCII punctuation or Unicode category P.
func isPunctuation(r rune) bool {
	if r < utf8.RuneSelf {
		return r > ' ' && r < 0x7F && !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}
	return unicode.IsPunct(r)
}
