package data

import (
	"encoding/json"
	"fmt"
	"io"
	"math/bits"
	"sort"
	"strings"
)

// SourceStats is what one dataset contributed and lost on the way.
type SourceStats struct {
	Name       string         `json:"name"`
	Files      int            `json:"files"`
	Bytes      int64          `json:"bytes"`
	Formats    map[string]int `json:"formats"` // detected/declared format → files
	Records    int            `json:"records"` // read
	Bad        int            `json:"bad"`     // skipped as malformed or invalid
	BadReasons map[string]int `json:"bad_reasons,omitempty"`
	// InvalidJSON counts records skipped as not well-formed JSON (part of
	// Bad); a broken JSON array counts once, its unread rest not at all.
	InvalidJSON int            `json:"invalid_json,omitempty"`
	Filtered    map[string]int `json:"filtered,omitempty"` // removed by cleaning, per filter
	Kept        int            `json:"kept"`               // examples after validation and cleaning
	Dropped     map[string]int `json:"dropped,omitempty"`  // examples lost while encoding
	Samples     int            `json:"samples"`            // tokenized samples
	Mixed       int            `json:"mixed"`              // samples in the mixed order
	Tokens      int64          `json:"tokens"`
	Trained     int64          `json:"trained_tokens"`
	Turns       int            `json:"turns"`
	ToolCalls   int            `json:"tool_calls"`
	Reasoning   int            `json:"with_reasoning"` // examples with reasoning text
	MaxLen      int            `json:"max_len"`
	// Truncated counts samples cut to cutoff_len; TruncatedTrained the
	// trained tokens they lost.
	Truncated        int   `json:"truncated,omitempty"`
	TruncatedTrained int64 `json:"truncated_trained_tokens,omitempty"`
	// Identical counts preference pairs skipped because the chosen answer
	// equals the rejected one (part of Bad); Undesirable the KTO samples
	// labelled undesirable (part of Samples).
	Identical   int `json:"pairs_identical,omitempty"`
	Undesirable int `json:"undesirable,omitempty"`
}

// Segment is a run of rendered text that is, or is not, trained.
type Segment struct {
	Text    string `json:"text"`
	Trained bool   `json:"trained"`
}

// RenderedSample shows one example as the model will see it.
type RenderedSample struct {
	Loc      Loc       `json:"loc"`
	Source   string    `json:"source"`
	Tokens   int       `json:"tokens"`
	Trained  int       `json:"trained"`
	Segments []Segment `json:"segments"`
}

// Report is the result of Inspect (and is stored with a prepared cache).
type Report struct {
	Stage   string         `json:"stage"`
	Unit    string         `json:"unit"` // "tokens", or "chars" without a tokenizer
	Sources []*SourceStats `json:"sources"`
	Issues  []Issue        `json:"issues,omitempty"` // the first few, all are counted
	// Removed lists the first few well-formed records the filters removed,
	// so what deduplication and the other filters took can be checked.
	Removed   []Issue          `json:"removed,omitempty"`
	Histogram []HistogramBin   `json:"length_histogram"`
	Train     int              `json:"train"`
	Val       int              `json:"val"`
	Rendered  []RenderedSample `json:"rendered,omitempty"`

	hist       [40]int
	trainOrder []int
	valOrder   []int
}

// HistogramBin counts samples with Lo ≤ length < Hi.
type HistogramBin struct {
	Lo    int `json:"lo"`
	Hi    int `json:"hi"`
	Count int `json:"count"`
}

func newReport(cfg Config) *Report {
	r := &Report{Stage: or(cfg.Stage, "sft"), Unit: "tokens"}
	for _, s := range cfg.Datasets {
		r.source(s.Name)
	}
	return r
}

func (r *Report) source(name string) *SourceStats {
	for _, s := range r.Sources {
		if s.Name == name {
			return s
		}
	}
	s := &SourceStats{Name: name, Formats: map[string]int{}, BadReasons: map[string]int{}, Filtered: map[string]int{}, Dropped: map[string]int{}}
	r.Sources = append(r.Sources, s)
	return s
}

func (s *SourceStats) count(ex *Example) {
	s.Turns += len(ex.Messages)
	reasoning := false
	for _, m := range ex.Messages {
		s.ToolCalls += len(m.ToolCalls)
		reasoning = reasoning || m.Reasoning != ""
	}
	if ex.Chosen != nil && ex.Chosen.Reasoning != "" {
		reasoning = true
	}
	if reasoning {
		s.Reasoning++
	}
}

// addSample counts an encoded sample: its length and what truncation cut.
func (r *Report) addSample(d int, smp Sample) {
	r.addLength(d, len(smp.InputIDs), smp.Trained())
	s := r.Sources[d]
	if smp.Undesirable {
		s.Undesirable++
	}
	if smp.Cut > 0 {
		s.Truncated++
		s.TruncatedTrained += int64(smp.CutTrained)
	}
}

func (r *Report) addLength(d, n, trained int) {
	s := r.Sources[d]
	s.Samples++
	s.Tokens += int64(n)
	s.Trained += int64(trained)
	s.MaxLen = max(s.MaxLen, n)
	r.hist[bits.Len(uint(n))]++
	r.Histogram = r.Histogram[:0]
	for k, c := range r.hist {
		if c > 0 {
			lo := 0
			if k > 0 {
				lo = 1 << (k - 1)
			}
			r.Histogram = append(r.Histogram, HistogramBin{Lo: lo, Hi: 1 << k, Count: c})
		}
	}
}

func renderedSample(ex *Example, r Rendered) RenderedSample {
	rs := RenderedSample{Loc: ex.Loc, Source: ex.Source, Tokens: len(r.IDs)}
	// Segments grow token by token: appending to a string each time copied
	// the segment so far, quadratic in the record's length (a 400k-character
	// record took 15 s). Builders keep it linear.
	var texts []*strings.Builder
	add := func(text string, trained bool) {
		if n := len(rs.Segments); n > 0 && rs.Segments[n-1].Trained == trained {
			texts[n-1].WriteString(text)
			return
		}
		b := &strings.Builder{}
		b.WriteString(text)
		texts = append(texts, b)
		rs.Segments = append(rs.Segments, Segment{Trained: trained})
	}

	pos := 0
	for i, o := range r.Offsets {
		if r.Trained[i] {
			rs.Trained++
		}
		if o[1] <= o[0] || o[0] < pos {
			if o[1] <= o[0] {
				add(fmt.Sprintf("⟨%d⟩", r.IDs[i]), r.Trained[i])
			}
			continue
		}
		if o[0] > pos {
			add(r.Text[pos:o[0]], false)
		}
		add(r.Text[o[0]:o[1]], r.Trained[i])
		pos = o[1]
	}
	if pos < len(r.Text) {
		add(r.Text[pos:], false)
	}
	for i, b := range texts {
		rs.Segments[i].Text = b.String()
	}
	return rs
}

// Totals sums the per-source counts.
func (r *Report) Totals() SourceStats {
	t := SourceStats{Name: "total", BadReasons: map[string]int{}, Filtered: map[string]int{}, Dropped: map[string]int{}}
	for _, s := range r.Sources {
		t.Files += s.Files
		t.Bytes += s.Bytes
		t.Records += s.Records
		t.Bad += s.Bad
		t.InvalidJSON += s.InvalidJSON
		t.Kept += s.Kept
		t.Samples += s.Samples
		t.Mixed += s.Mixed
		t.Tokens += s.Tokens
		t.Trained += s.Trained
		t.Turns += s.Turns
		t.ToolCalls += s.ToolCalls
		t.Reasoning += s.Reasoning
		t.MaxLen = max(t.MaxLen, s.MaxLen)
		t.Truncated += s.Truncated
		t.TruncatedTrained += s.TruncatedTrained
		t.Identical += s.Identical
		t.Undesirable += s.Undesirable
		for k, v := range s.BadReasons {
			t.BadReasons[k] += v
		}
		for k, v := range s.Filtered {
			t.Filtered[k] += v
		}
		for k, v := range s.Dropped {
			t.Dropped[k] += v
		}
	}
	return t
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// WriteSummary writes what training prints before it starts: per dataset,
// records read, skipped as bad, removed by each filter and kept, so nothing
// the data loses goes unsaid.
func (r *Report) WriteSummary(w io.Writer) error {
	var b strings.Builder
	r.table(&b)
	t := r.Totals()
	for _, s := range r.Sources {
		if s.InvalidJSON > 0 {
			fmt.Fprintf(&b, "%s: skipped %d records that are not valid JSON (skip_invalid_json)\n", s.Name, s.InvalidJSON)
		}
	}
	r.truncation(&b)
	r.preference(&b)
	perSource := func(title string, get func(*SourceStats) map[string]int) {
		if len(get(&t)) == 0 {
			return
		}
		fmt.Fprintf(&b, "%s\n", title)
		for _, s := range r.Sources {
			m := get(s)
			for _, k := range sortedByCount(m) {
				fmt.Fprintf(&b, "  %-20s %8d  %s\n", clip(s.Name, 20), m[k], k)
			}
		}
	}
	perSource("bad records (skipped)", func(s *SourceStats) map[string]int { return s.BadReasons })
	perSource("removed by filters", func(s *SourceStats) map[string]int { return s.Filtered })
	perSource("dropped while encoding", func(s *SourceStats) map[string]int { return s.Dropped })
	if len(r.Removed) > 0 {
		fmt.Fprintf(&b, "first records removed by filters\n")
		for _, is := range r.Removed[:min(len(r.Removed), 5)] {
			fmt.Fprintf(&b, "  %s\n", is)
		}
	}
	fmt.Fprintf(&b, "after mixing: %d train, %d validation\n", r.Train, r.Val)
	_, err := io.WriteString(w, b.String())
	return err
}

// preference counts what a preference stage trains on: pairs kept, those
// of them truncated (prompt and answers shared out within cutoff_len as
// LLaMA-Factory does) and those dropped (chosen equal to rejected, or no
// answer token left), or KTO's desirable and undesirable answers.
func (r *Report) preference(b *strings.Builder) {
	t := r.Totals()
	switch r.Stage {
	case "rm", "dpo", "orpo", "simpo", "cpo", "ipo":
		fmt.Fprintf(b, "pairs: %d kept, %d of them truncated to cutoff_len; dropped: %d with chosen == rejected, %d whose prompt fills cutoff_len\n",
			t.Samples, t.Truncated, t.Identical, t.Dropped[DropPromptFills])
	case "kto":
		fmt.Fprintf(b, "kto: %d desirable, %d undesirable answers, %d of them truncated to cutoff_len; %d dropped whose prompt fills cutoff_len\n",
			t.Samples-t.Undesirable, t.Undesirable, t.Truncated, t.Dropped[DropPromptFills])
		if t.Samples > 0 && (t.Undesirable == 0 || t.Undesirable == t.Samples) {
			fmt.Fprintf(b, "kto: every answer has the same label; KTO learns from both kinds\n")
		}
	}
}

// truncation says, per dataset, how many samples were cut to cutoff_len
// and how many trained tokens that lost.
func (r *Report) truncation(b *strings.Builder) {
	for _, s := range r.Sources {
		if s.Truncated > 0 {
			fmt.Fprintf(b, "%s: %d of %d samples cut to cutoff_len, losing %d trained %s (raise cutoff_len to keep them)\n",
				s.Name, s.Truncated, s.Samples, s.TruncatedTrained, r.Unit)
		}
	}
}

func (r *Report) table(b *strings.Builder) {
	fmt.Fprintf(b, "%-20s %8s %8s %8s %8s %8s %12s %8s\n", "source", "records", "bad", "filtered", "kept", "samples", r.Unit, "trained")
	row := func(s SourceStats) {
		filtered := 0
		for _, v := range s.Filtered {
			filtered += v
		}
		fmt.Fprintf(b, "%-20s %8d %8d %8d %8d %8d %12d %7.1f%%\n", clip(s.Name, 20), s.Records, s.Bad, filtered, s.Kept, s.Samples, s.Tokens, pct(s.Trained, s.Tokens))
	}
	for _, s := range r.Sources {
		row(*s)
	}
	if len(r.Sources) > 1 {
		row(r.Totals())
	}
}

func sortedByCount(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || (m[keys[i]] == m[keys[j]] && keys[i] < keys[j]) })
	return keys
}

// WriteText writes the human report. With color, trained text in rendered
// samples is green; without, it is wrapped in [[ ]].
func (r *Report) WriteText(w io.Writer, color bool) error {
	var b strings.Builder
	t := r.Totals()
	fmt.Fprintf(&b, "Dataset report (stage %s)\n\n", r.Stage)
	r.table(&b)
	if t.Samples > 0 {
		fmt.Fprintf(&b, "\nmean length %.1f %s, max %d; %d turns, %d tool calls, %d examples with reasoning\n",
			float64(t.Tokens)/float64(t.Samples), r.Unit, t.MaxLen, t.Turns, t.ToolCalls, t.Reasoning)
	}
	fmt.Fprintf(&b, "after mixing: %d train, %d validation", r.Train, r.Val)
	if len(r.Sources) > 1 && r.Train+r.Val > 0 {
		var parts []string
		for _, s := range r.Sources {
			parts = append(parts, fmt.Sprintf("%s %.1f%%", s.Name, 100*float64(s.Mixed)/float64(r.Train+r.Val)))
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	b.WriteString("\n")
	if len(r.Histogram) > 0 {
		fmt.Fprintf(&b, "\nlength histogram (%s)\n", r.Unit)
		most := 0
		for _, h := range r.Histogram {
			most = max(most, h.Count)
		}
		for _, h := range r.Histogram {
			bar := strings.Repeat("█", (h.Count*40+most-1)/most)
			fmt.Fprintf(&b, "  %6d–%-6d %8d %s\n", h.Lo, h.Hi-1, h.Count, bar)
		}
	}
	section := func(title string, m map[string]int) {
		if len(m) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n%s\n", title)
		for _, k := range sortedByCount(m) {
			fmt.Fprintf(&b, "  %8d  %s\n", m[k], k)
		}
	}
	if t.Truncated > 0 {
		b.WriteString("\n")
		r.truncation(&b)
	}
	var pb strings.Builder
	if r.preference(&pb); pb.Len() > 0 {
		b.WriteString("\n" + pb.String())
	}
	section("bad records (skipped)", t.BadReasons)
	section("removed by filters", t.Filtered)
	section("dropped while encoding", t.Dropped)
	if len(r.Issues) > 0 {
		fmt.Fprintf(&b, "\nfirst problems\n")
		for _, is := range r.Issues {
			fmt.Fprintf(&b, "  %s\n", is)
		}
	}
	if len(r.Removed) > 0 {
		fmt.Fprintf(&b, "\nfirst records removed by filters\n")
		for _, is := range r.Removed {
			fmt.Fprintf(&b, "  %s\n", is)
		}
	}
	for _, s := range r.Rendered {
		fmt.Fprintf(&b, "\n--- %s (%s): %d tokens, %d trained ", s.Loc, s.Source, s.Tokens, s.Trained)
		if color {
			b.WriteString("(trained text in green) ---\n")
		} else {
			b.WriteString("(trained text in [[ ]]) ---\n")
		}
		for _, seg := range s.Segments {
			switch {
			case !seg.Trained:
				b.WriteString(seg.Text)
			case color:
				b.WriteString("\x1b[32m" + seg.Text + "\x1b[0m")
			default:
				b.WriteString("[[" + seg.Text + "]]")
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func clip(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
