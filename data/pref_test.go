package data

import (
	"strings"
	"testing"
)

// Stage dpo: the report counts the pairs kept and those dropped because
// chosen equals rejected or because the prompt leaves no answer token
// within cutoff_len.
func TestPreferenceReportCountsPairs(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("word ", 40)
	p := writeFile(t, dir, "p.jsonl", strings.Join([]string{
		`{"prompt":"q1","chosen":"yes","rejected":"no"}`,
		`{"prompt":"q2","chosen":"same","rejected":"same"}`,
		`{"prompt":"` + long + `","chosen":"fine","rejected":"bad"}`,
		`{"prompt":"q3","chosen":"good","rejected":"poor"}`,
	}, "\n")+"\n")
	cfg := Config{Datasets: []Spec{{Name: "p", Path: p}}, Stage: "dpo", Encode: EncodeOptions{CutoffLen: 24}}
	c, err := Prepare(cfg, testEncoder(cfg.Encode), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Len() != 2 {
		t.Errorf("%d pairs kept, want 2", c.Len())
	}
	tot := c.Report().Totals()
	if tot.Identical != 1 || tot.Dropped[DropPromptFills] != 1 {
		t.Errorf("identical %d, prompt fills %d; want 1 and 1 (%+v)", tot.Identical, tot.Dropped[DropPromptFills], tot)
	}
	var sum, text strings.Builder
	if err := c.Report().WriteSummary(&sum); err != nil {
		t.Fatal(err)
	}
	if err := c.Report().WriteText(&text, false); err != nil {
		t.Fatal(err)
	}
	want := "pairs: 2 kept; dropped: 1 with chosen == rejected, 1 whose prompt fills cutoff_len"
	for _, out := range []string{sum.String(), text.String()} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// Stage kto keeps both labels and stores them with the samples; a record
// without a label is refused, naming the column.
func TestKTOLabelsReachTheCache(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "kto.json", `[
 {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi!"}], "label": true},
 {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Go away."}], "label": false},
 {"messages": [{"role": "user", "content": "Say bye"}, {"role": "assistant", "content": "Bye!"}], "label": true},
 {"messages": [{"role": "user", "content": "Say what"}, {"role": "assistant", "content": "What!"}]}]`)
	writeFile(t, dir, "dataset_info.json", `{
 "kto": {"file_name": "kto.json", "formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"},
         "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}`)
	specs, err := ResolveDatasets(dir, "kto")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Datasets: specs, Stage: "kto"}
	c, err := Prepare(cfg, testEncoder(cfg.Encode), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Len() != 3 || c.Paired() {
		t.Fatalf("%d samples (paired %v), want 3 unpaired", c.Len(), c.Paired())
	}
	bad := 0
	for i := range c.Len() {
		s := c.Sample(i)
		if s.Undesirable != c.Undesirable(i) || s.Source != 0 {
			t.Errorf("sample %d: label %v / %v, source %d", i, s.Undesirable, c.Undesirable(i), s.Source)
		}
		if s.Undesirable {
			bad++
			if !strings.Contains(trainedText(s), "Go away.") {
				t.Errorf("the undesirable sample is %q", trainedText(s))
			}
		}
	}
	if bad != 1 {
		t.Errorf("%d undesirable samples, want 1", bad)
	}
	rep := c.Report()
	if rep.Totals().Undesirable != 1 || len(rep.Issues) != 1 || !strings.Contains(rep.Issues[0].String(), `field "label": stage kto needs each answer labelled`) {
		t.Errorf("undesirable %d, issues %v", rep.Totals().Undesirable, rep.Issues)
	}
	var sum strings.Builder
	rep.WriteSummary(&sum)
	if !strings.Contains(sum.String(), "kto: 2 desirable, 1 undesirable answers") {
		t.Errorf("summary:\n%s", sum.String())
	}
}

// Without dataset_info.json, a KTO file labels its answers in a field
// "label", as TRL's unpaired preference data does.
func TestKTOLabelFieldByDefault(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "k.jsonl", `{"messages":[{"role":"user","content":"Say hi"},{"role":"assistant","content":"Hi!"}],"label":true}
{"messages":[{"role":"user","content":"Say hi"},{"role":"assistant","content":"Go away."}],"label":false}
`)
	cfg := Config{Datasets: []Spec{{Name: "k", Path: p}}, Stage: "kto"}
	c, err := Prepare(cfg, testEncoder(cfg.Encode), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Len() != 2 || c.Undesirable(0) == c.Undesirable(1) {
		t.Errorf("%d samples, labels %v %v", c.Len(), c.Undesirable(0), c.Undesirable(1))
	}
}
