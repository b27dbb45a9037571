package reward

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// extractor finds the answer in a completion; ok is false when there is
// none (the completion is wrong, not the reward broken).
type extractor func(completion string) (answer string, ok bool)

func compile(pattern string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", pattern, err)
	}
	return re, nil
}

var numberRE = regexp.MustCompile(`[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+`)

func newExtractor(kind, pattern, field string) (extractor, error) {
	switch kind {
	case "", "last_number":
		return lastNumber, nil
	case "boxed":
		return lastBoxed, nil
	case "text":
		return func(c string) (string, bool) { return strings.TrimSpace(c), true }, nil
	case "regex":
		re, err := compile(pattern)
		if err != nil {
			return nil, err
		}
		if re.NumSubexp() < 1 {
			return nil, fmt.Errorf("pattern %q has no group around the answer", pattern)
		}
		g := 1
		if i := re.SubexpIndex("answer"); i > 0 {
			g = i
		}
		// The last match: answers come at the end, after any reasoning
		// that may mention other candidates.
		return func(c string) (string, bool) {
			all := re.FindAllStringSubmatch(c, -1)
			if len(all) == 0 {
				return "", false
			}
			return all[len(all)-1][g], true
		}, nil
	case "json":
		path := strings.Split(field, ".")
		return func(c string) (string, bool) { return jsonField(c, path) }, nil
	}
	return nil, fmt.Errorf("extract %q is not one of last_number, boxed, regex, json, text", kind)
}

func lastNumber(c string) (string, bool) {
	all := numberRE.FindAllString(c, -1)
	if len(all) == 0 {
		return "", false
	}
	return strings.TrimRight(all[len(all)-1], ","), true
}

// lastBoxed is the content of the last \boxed{…}, braces balanced.
func lastBoxed(c string) (string, bool) {
	i := strings.LastIndex(c, `\boxed{`)
	if i < 0 {
		return "", false
	}
	start := i + len(`\boxed{`)
	depth := 1
	for j := start; j < len(c); j++ {
		switch c[j] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return c[start:j], true
			}
		}
	}
	return "", false
}

// jsonField finds the first JSON object in c that has the dotted path and
// returns the value there (a string's text, or the JSON of anything else).
func jsonField(c string, path []string) (string, bool) {
	for i := strings.IndexByte(c, '{'); i >= 0; {
		dec := json.NewDecoder(strings.NewReader(c[i:]))
		var v any
		if dec.Decode(&v) == nil {
			if s, ok := walkPath(v, path); ok {
				return s, true
			}
		}
		next := strings.IndexByte(c[i+1:], '{')
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return "", false
}

func walkPath(v any, path []string) (string, bool) {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = m[k]; !ok {
			return "", false
		}
	}
	if s, ok := v.(string); ok {
		return s, true
	}
	b, err := json.Marshal(v)
	return string(b), err == nil
}

// columnText is a dataset column as text: a string's content, a number's
// digits, anything else compact JSON.
func columnText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) == nil {
		return b.String()
	}
	return string(raw)
}

// sameAnswer compares an extracted answer with the expected one: as numbers
// when both are numbers (so 72, 72.0 and 1,000 vs 1000 agree), otherwise as
// whitespace-trimmed text. An expected answer written GSM8K-style (working,
// then "#### 72") compares its final part.
func sameAnswer(got, want string) bool {
	if _, after, ok := strings.Cut(want, "####"); ok {
		want = after
	}
	got, want = strings.TrimSpace(got), strings.TrimSpace(want)
	if a, ok := parseNumber(got); ok {
		if b, ok := parseNumber(want); ok {
			return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
		}
	}
	return got == want
}

func parseNumber(s string) (float64, bool) {
	s = strings.TrimSuffix(strings.ReplaceAll(strings.TrimPrefix(s, "$"), ",", ""), ".")
	x, err := strconv.ParseFloat(s, 64)
	return x, err == nil && !math.IsNaN(x) && !math.IsInf(x, 0)
}

type match struct {
	name    string
	extract extractor
	column  string
}

func (m *match) Name() string { return m.name }

func (m *match) Score(_ context.Context, samples []Sample) ([]float64, error) {
	out := make([]float64, len(samples))
	for i, s := range samples {
		raw, ok := s.Columns[m.column]
		if !ok {
			return nil, sampleError(m.name, i, s, "the dataset record has no column %q to compare with", m.column)
		}
		if got, ok := m.extract(s.Completion); ok && sameAnswer(got, columnText(raw)) {
			out[i] = 1
		}
	}
	return out, nil
}

// format scores 1 when its pattern matches the completion.
type format struct {
	name string
	re   *regexp.Regexp
}

func (f *format) Name() string { return f.name }

func (f *format) Score(_ context.Context, samples []Sample) ([]float64, error) {
	out := make([]float64, len(samples))
	for i, s := range samples {
		if f.re.MatchString(s.Completion) {
			out[i] = 1
		}
	}
	return out, nil
}

// length is DAPO's soft overlong punishment.
type length struct {
	name       string
	max, cache int
}

func (l *length) Name() string { return l.name }

func (l *length) Score(_ context.Context, samples []Sample) ([]float64, error) {
	out := make([]float64, len(samples))
	free := l.max - l.cache
	for i, s := range samples {
		switch {
		case s.Tokens <= free:
		case s.Tokens <= l.max:
			out[i] = float64(free-s.Tokens) / float64(l.cache)
		default:
			out[i] = -1
		}
	}
	return out, nil
}
