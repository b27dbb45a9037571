package data

import (
	"slices"
	"strings"
	"testing"
)

// Stage dpo: the report counts the pairs kept, those truncated, and those
// dropped because chosen equals rejected. A pair whose prompt alone fills
// cutoff_len is kept with its prompt cut, as LLaMA-Factory cuts it.
func TestPreferenceReportCountsPairs(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("word ", 40)
	p := writeFile(t, dir, "p.jsonl", strings.Join([]string{
		`{"prompt":"q1","chosen":"yes","rejected":"no"}`,
		`{"prompt":"q2","chosen":"same","rejected":"same"}`,
		`{"prompt":"` + long + `","chosen":"fine","rejected":"bad"}`,
		`{"prompt":"q3","chosen":"good","rejected":"poor"}`,
	}, "\n")+"\n")
	cfg := Config{Datasets: []Spec{{Name: "p", Path: p}}, Stage: "dpo", Encode: EncodeOptions{CutoffLen: 64}}
	c, err := Prepare(cfg, testEncoder(cfg.Encode), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Len() != 3 {
		t.Errorf("%d pairs kept, want 3", c.Len())
	}
	tot := c.Report().Totals()
	if tot.Identical != 1 || tot.Truncated != 1 || tot.Dropped[DropPromptFills] != 0 {
		t.Errorf("identical %d, truncated %d, prompt fills %d; want 1, 1 and 0 (%+v)", tot.Identical, tot.Truncated, tot.Dropped[DropPromptFills], tot)
	}
	var sum, text strings.Builder
	if err := c.Report().WriteSummary(&sum); err != nil {
		t.Fatal(err)
	}
	if err := c.Report().WriteText(&text, false); err != nil {
		t.Fatal(err)
	}
	want := "pairs: 3 kept, 1 of them truncated to cutoff_len; dropped: 1 with chosen == rejected, 0 whose prompt fills cutoff_len"
	for _, out := range []string{sum.String(), text.String()} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// ShareCutoff gives LLaMA-Factory's infer_seqlen lengths (worked by hand
// from its three cases).
func TestShareCutoff(t *testing.T) {
	for _, tc := range []struct{ src, tgt, cut, wantSrc, wantTgt int }{
		{10, 5, 100, 10, 5},  // both fit
		{219, 6, 24, 18, 6},  // short answer: kept whole, the prompt cut
		{3, 50, 20, 3, 17},   // short prompt: kept whole, the answer cut
		{30, 20, 20, 12, 8},  // both long: 20·20/50 = 8 for the answer
		{25, 15, 30, 19, 11}, // int(30·0.375) = int(11.25) = 11
		{1000, 2, 4, 4, 0},   // int(4·2/1002) = 0: no answer left
		{7, 3, 9, 6, 3},      // 2·3 < 9
		{0, 40, 16, 0, 16},   // no prompt (train_on_prompt)
	} {
		s, g := ShareCutoff(tc.src, tc.tgt, tc.cut)
		if s != tc.wantSrc || g != tc.wantTgt {
			t.Errorf("ShareCutoff(%d, %d, %d) = %d, %d; want %d, %d", tc.src, tc.tgt, tc.cut, s, g, tc.wantSrc, tc.wantTgt)
		}
	}
}

// A pair whose prompt is longer than cutoff_len keeps the first tokens of
// its prompt and both answers whole: LLaMA-Factory's layout, the prompt
// cut to cutoff_len minus the longer answer, for both rows.
func TestPairLongPromptLayout(t *testing.T) {
	long := strings.Repeat("word ", 40)
	ex := Example{Kind: KindPreference, Messages: msgs(RoleUser, long), Chosen: &Message{Role: RoleAssistant, Content: "fine"},
		Rejected: &Message{Role: RoleAssistant, Content: "bad"}}
	enc := testEncoder(EncodeOptions{CutoffLen: 24})
	ss, drop, err := enc.Encode(&ex, 0)
	if err != nil || drop != "" || len(ss) != 1 {
		t.Fatalf("samples %d, drop %q, err %v", len(ss), drop, err)
	}
	s := ss[0]
	// Prompt: <im_start> "user\n" long <im_end> "\n" <im_start>
	// "assistant\n" = 219 tokens; the longer answer "fine" <im_end> "\n"
	// = 6 tokens, under half of 24, so it stays whole and the prompt keeps
	// its first 24 − 6 = 18 tokens.
	prompt := append([]int32{1}, byteIDs("user\n"+long[:12])...)
	wantC := append(append([]int32(nil), prompt...), append(byteIDs("fine"), 2, 10+'\n')...)
	wantR := append(append([]int32(nil), prompt...), append(byteIDs("bad"), 2, 10+'\n')...)
	if !slices.Equal(s.InputIDs, wantC) || !slices.Equal(s.RejectedIDs, wantR) {
		t.Errorf("chosen %v\nwant   %v\nrejected %v\nwant     %v", s.InputIDs, wantC, s.RejectedIDs, wantR)
	}
	if got := trainedText(s); got != strings.Repeat(".", 18)+"fine<E>\n" {
		t.Errorf("chosen labels %q", got)
	}
	if got := trainedText(Sample{Labels: s.RejectedLabels}); got != strings.Repeat(".", 18)+"bad<E>\n" {
		t.Errorf("rejected labels %q", got)
	}
	if s.Cut != 2*(219-18) || s.CutTrained != 0 {
		t.Errorf("cut %d tokens (%d trained), want %d (0)", s.Cut, s.CutTrained, 2*(219-18))
	}
}

// A KTO answer after a long prompt is kept the same way, its prompt cut;
// only the last assistant turn is the answer.
func TestKTOLongPromptLayout(t *testing.T) {
	long := strings.Repeat("word ", 40)
	ex := Example{Kind: KindChat, KTO: true, Undesirable: true, Messages: msgs(RoleUser, "hi", RoleAssistant, "yo", RoleUser, long, RoleAssistant, "ok")}
	enc := testEncoder(EncodeOptions{CutoffLen: 20})
	ss, drop, err := enc.Encode(&ex, 0)
	if err != nil || drop != "" || len(ss) != 1 {
		t.Fatalf("samples %d, drop %q, err %v", len(ss), drop, err)
	}
	s := ss[0]
	// The answer "ok" <im_end> "\n" (4 tokens) stays whole; the prompt
	// keeps its first 16 tokens, <im_start> "user\nhi" <im_end> "\n"
	// <im_start> "assis"; the earlier answer "yo" would not be trained.
	if got := trainedText(s); got != strings.Repeat(".", 16)+"ok<E>\n" || len(s.InputIDs) != 20 || !s.Undesirable {
		t.Errorf("labels %q (%d tokens, undesirable %v)", got, len(s.InputIDs), s.Undesirable)
	}
	if want := append([]int32{1}, byteIDs("user\nhi")...); !slices.Equal(s.InputIDs[:len(want)], want) {
		t.Errorf("prompt starts %v, want %v", s.InputIDs[:len(want)], want)
	}
}

func byteIDs(s string) []int32 {
	out := make([]int32, len(s))
	for i := range len(s) {
		out[i] = int32(s[i]) + 10
	}
	return out
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
	if !strings.Contains(sum.String(), "kto: 2 desirable, 1 undesirable answers, 0 of them truncated to cutoff_len") {
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
