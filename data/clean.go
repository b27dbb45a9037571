package data

import (
	"hash/fnv"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"
)

// CleanConfig selects the filters applied before tokenization. The zero
// value removes nothing; DefaultClean is what `gotune data` uses.
type CleanConfig struct {
	Dedup         bool    `json:"dedup"`          // exact duplicates after normalization
	NearDedup     bool    `json:"near_dedup"`     // MinHash LSH near-duplicates
	NearThreshold float64 `json:"near_threshold"` // estimated Jaccard similarity at or above which a record is a near-duplicate
	MinChars      int     `json:"min_chars,omitempty"`
	MaxChars      int     `json:"max_chars,omitempty"`
	// Answer length divided by prompt length, in characters, for chat
	// examples; 0 disables a bound.
	MinRatio         float64  `json:"min_ratio,omitempty"`
	MaxRatio         float64  `json:"max_ratio,omitempty"`
	DropPlaceholders bool     `json:"drop_placeholders"` // empty or placeholder answers ("N/A", "<nooutput>", …)
	Scripts          []string `json:"scripts,omitempty"` // keep only records in these scripts (see DetectScript); language codes like "en", "zh" are accepted
}

// DefaultClean removes exact and near duplicates (Jaccard ≥ 0.85) and
// placeholder answers.
func DefaultClean() CleanConfig {
	return CleanConfig{Dedup: true, NearDedup: true, NearThreshold: 0.85, DropPlaceholders: true}
}

// Filter reasons, as counted in reports.
const (
	ReasonDuplicate     = "exact duplicate"
	ReasonNearDuplicate = "near duplicate"
	ReasonTooShort      = "shorter than min_chars"
	ReasonTooLong       = "longer than max_chars"
	ReasonRatioLow      = "answer/prompt ratio below min_ratio"
	ReasonRatioHigh     = "answer/prompt ratio above max_ratio"
	ReasonPlaceholder   = "empty or placeholder answer"
	ReasonScript        = "script/language not selected"
)

// Cleaner applies a CleanConfig to a stream of examples; it remembers what
// it has seen, so duplicates are found across files and datasets. The first
// occurrence is kept.
type Cleaner struct {
	cfg     CleanConfig
	seen    *wordTable // normalized-text hashes (never 0)
	lsh     *minhashLSH
	scripts map[string]bool
}

// NewCleaner prepares a Cleaner.
func NewCleaner(cfg CleanConfig) *Cleaner {
	c := &Cleaner{cfg: cfg}
	if cfg.Dedup {
		c.seen = &wordTable{}
	}
	if cfg.NearDedup {
		t := cfg.NearThreshold
		if t <= 0 || t >= 1 {
			t = 0.85
		}
		c.lsh = newMinhashLSH(t)
	}
	if len(cfg.Scripts) > 0 {
		c.scripts = map[string]bool{}
		for _, s := range cfg.Scripts {
			c.scripts[scriptOfLanguage(s)] = true
		}
	}
	return c
}

// Check returns why ex should be removed, or "" to keep it. A kept example
// is remembered for later duplicate checks.
func (c *Cleaner) Check(ex *Example) string {
	prompt, answer := splitText(ex)
	total := utf8.RuneCountInString(prompt) + utf8.RuneCountInString(answer)
	if c.cfg.DropPlaceholders && ex.Kind != KindText && isPlaceholder(answer) {
		return ReasonPlaceholder
	}
	if c.cfg.MinChars > 0 && total < c.cfg.MinChars {
		return ReasonTooShort
	}
	if c.cfg.MaxChars > 0 && total > c.cfg.MaxChars {
		return ReasonTooLong
	}
	if ex.Kind == KindChat && (c.cfg.MinRatio > 0 || c.cfg.MaxRatio > 0) {
		p := float64(utf8.RuneCountInString(prompt))
		r := float64(utf8.RuneCountInString(answer)) / math.Max(p, 1)
		if c.cfg.MinRatio > 0 && r < c.cfg.MinRatio {
			return ReasonRatioLow
		}
		if c.cfg.MaxRatio > 0 && r > c.cfg.MaxRatio {
			return ReasonRatioHigh
		}
	}
	if c.scripts != nil && !c.scripts[DetectScript(prompt+" "+answer)] {
		return ReasonScript
	}
	if c.seen == nil && c.lsh == nil {
		return ""
	}
	norm := normalize(prompt + "\x00" + answer)
	if c.seen != nil {
		h := fnv.New64a()
		h.Write([]byte(norm))
		k := h.Sum64() | 1
		if _, dup := c.seen.find(k>>1, func(w uint64) bool { return w == k }); dup {
			return ReasonDuplicate
		}
		c.seen.insert(k>>1, k, func(w uint64) uint64 { return w >> 1 })
	}
	if c.lsh != nil && c.lsh.seenOrAdd(norm) {
		return ReasonNearDuplicate
	}
	return ""
}

// Close releases the duplicate detectors' memory.
func (c *Cleaner) Close() {
	if c.seen != nil {
		c.seen.free()
	}
	if c.lsh != nil {
		c.lsh.free()
	}
}

// splitText flattens an example into the text the user wrote as prompt
// (system, user, tool turns) and as answer (assistant turns).
func splitText(ex *Example) (prompt, answer string) {
	if ex.Kind == KindText {
		return "", ex.Text
	}
	var p, a strings.Builder
	for _, m := range ex.Messages {
		if m.Role == RoleAssistant {
			writeAnswer(&a, m)
		} else {
			p.WriteString(m.Content)
			p.WriteByte('\n')
		}
	}
	if ex.Kind == KindPreference {
		// Only the chosen answer: two pairs sharing a prompt and chosen
		// answer but differing in the rejected one are still duplicates
		// for training purposes only when everything matches, so include both.
		if ex.Chosen != nil {
			writeAnswer(&a, *ex.Chosen)
		}
		a.WriteString("\x01")
		if ex.Rejected != nil {
			writeAnswer(&a, *ex.Rejected)
		}
	}
	return p.String(), a.String()
}

func writeAnswer(b *strings.Builder, m Message) {
	b.WriteString(m.Reasoning)
	b.WriteString(m.Content)
	for _, c := range m.ToolCalls {
		b.WriteString(c.Name)
		b.Write(c.Arguments)
	}
	b.WriteByte('\n')
}

// normalize lowercases, drops punctuation and collapses white space, so
// copies differing only in case, spacing or punctuation hash the same.
func normalize(s string) string {
	b := make([]byte, 0, len(s))
	space := true
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf { // ASCII fast path: most training text
			i++
			switch {
			case 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == 0:
				b = append(b, c)
				space = false
			case 'A' <= c && c <= 'Z':
				b = append(b, c+'a'-'A')
				space = false
			default: // white space, punctuation, symbols, controls
				if !space {
					b = append(b, ' ')
					space = true
				}
			}
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b = utf8.AppendRune(b, unicode.ToLower(r))
			space = false
		case unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r):
			if !space {
				b = append(b, ' ')
				space = true
			}
		}
	}
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return string(b)
}

var placeholders = map[string]bool{
	"": true, "n/a": true, "na": true, "none": true, "null": true, "nan": true, "nil": true,
	"<noinput>": true, "<nooutput>": true, "no output": true, "no input": true, "todo": true,
	"tbd": true, "...": true, "…": true, "-": true, "?": true, "placeholder": true, "empty": true,
	"<empty>": true, "[empty]": true, "answer": true, "output": true, "response": true,
}

func isPlaceholder(answer string) bool {
	s := strings.ToLower(strings.TrimSpace(answer))
	if placeholders[s] || strings.HasPrefix(s, "lorem ipsum") {
		return true
	}
	// An answer that is nothing but the placeholder repeated (one per turn)
	for _, line := range strings.Split(s, "\n") {
		if !placeholders[strings.TrimSpace(line)] {
			return false
		}
	}
	return true
}

// DetectScript names the writing system most of the letters in s belong to:
// "latin", "han" (Chinese), "japanese" (kana present), "hangul", "cyrillic",
// "arabic", "devanagari", "greek", "hebrew", "thai", or "other"/"none". It is
// a script detector, not a language identifier: English and French are both
// "latin".
func DetectScript(s string) string {
	counts := map[string]int{}
	kana := 0
	letters := 0
	for _, r := range s {
		if !unicode.IsLetter(r) {
			continue
		}
		letters++
		switch {
		case r < 0x250 || unicode.Is(unicode.Latin, r):
			counts["latin"]++
		case unicode.Is(unicode.Han, r):
			counts["han"]++
		case unicode.Is(unicode.Hiragana, r) || unicode.Is(unicode.Katakana, r):
			kana++
		case unicode.Is(unicode.Hangul, r):
			counts["hangul"]++
		case unicode.Is(unicode.Cyrillic, r):
			counts["cyrillic"]++
		case unicode.Is(unicode.Arabic, r):
			counts["arabic"]++
		case unicode.Is(unicode.Devanagari, r):
			counts["devanagari"]++
		case unicode.Is(unicode.Greek, r):
			counts["greek"]++
		case unicode.Is(unicode.Hebrew, r):
			counts["hebrew"]++
		case unicode.Is(unicode.Thai, r):
			counts["thai"]++
		default:
			counts["other"]++
		}
	}
	if letters == 0 {
		return "none"
	}
	// Japanese mixes kanji and kana; any real share of kana decides it.
	if kana > 0 && kana*5 >= letters {
		return "japanese"
	}
	counts["japanese"] = kana
	best, n := "other", 0
	for _, name := range []string{"latin", "han", "japanese", "hangul", "cyrillic", "arabic", "devanagari", "greek", "hebrew", "thai", "other"} {
		if counts[name] > n {
			best, n = name, counts[name]
		}
	}
	return best
}

func scriptOfLanguage(code string) string {
	switch strings.ToLower(code) {
	case "zh", "zh-cn", "zh-tw", "chinese":
		return "han"
	case "ja", "jp":
		return "japanese"
	case "ko":
		return "hangul"
	case "ru", "uk", "bg", "sr", "be", "kk":
		return "cyrillic"
	case "ar", "fa", "ur":
		return "arabic"
	case "hi", "mr", "ne":
		return "devanagari"
	case "el":
		return "greek"
	case "he", "iw", "yi":
		return "hebrew"
	case "th":
		return "thai"
	case "en", "fr", "de", "es", "it", "pt", "nl", "sv", "pl", "cs", "tr", "vi", "id", "ro", "da", "fi", "no", "hu":
		return "latin"
	}
	return strings.ToLower(code)
}
