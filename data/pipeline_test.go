package data

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sftFiles(t *testing.T, dir string) Config {
	t.Helper()
	var a, b strings.Builder
	for i := 0; i < 70; i++ {
		fmt.Fprintf(&a, `{"instruction":"question number %d about cats","output":"answer %d: cats sleep a lot"}`+"\n", i, i)
	}
	a.WriteString("{broken\n")
	a.WriteString(`{"instruction":"dup","output":"N/A"}` + "\n")
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&b, `{"messages":[{"role":"user","content":"ask %d on dogs"},{"role":"assistant","content":"dogs %d bark"}]}`+"\n", i, i)
	}
	writeFile(t, dir, "cats.jsonl", a.String())
	writeFile(t, dir, "dogs.jsonl", b.String())
	writeFile(t, dir, "dataset_info.json", `{"cats":{"file_name":"cats.jsonl"},"dogs":{"file_name":"dogs.jsonl","formatting":"sharegpt","columns":{"messages":"messages"},"tags":{"role_tag":"role","content_tag":"content","user_tag":"user","assistant_tag":"assistant"}}}`)
	info, err := LoadDatasetInfo(dir)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := info.Resolve([]string{"cats", "dogs"})
	if err != nil {
		t.Fatal(err)
	}
	// The broken line is skipped on request (skip_invalid_json).
	return Config{Datasets: specs, SkipInvalidJSON: true, Clean: DefaultClean(), ValSize: 0.1, Mix: MixConfig{Seed: 1}, Encode: EncodeOptions{CutoffLen: 256}}
}

func TestPrepareCache(t *testing.T) {
	dir := t.TempDir()
	cfg := sftFiles(t, dir)
	enc := testEncoder(cfg.Encode)
	cacheDir := filepath.Join(dir, "cache")
	c, err := Prepare(cfg, enc, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Len() != 100 || len(c.Train()) != 90 || len(c.Val()) != 10 {
		t.Fatalf("cache: %d samples, %d train, %d val", c.Len(), len(c.Train()), len(c.Val()))
	}
	// Every cached sample equals encoding its example directly.
	var direct SampleSlice
	err = walk(cfg, newReport(cfg), func(d int, ex *Example) error {
		ss, _, err := enc.Encode(ex, d)
		direct = append(direct, ss...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range direct {
		got := c.Sample(i)
		if !reflect.DeepEqual(got.InputIDs, direct[i].InputIDs) || !reflect.DeepEqual(got.Labels, direct[i].Labels) || got.Source != direct[i].Source {
			t.Fatalf("cached sample %d differs", i)
		}
	}
	rep := c.Report()
	if rep.Sources[0].Bad != 1 || rep.Sources[0].Filtered[ReasonPlaceholder] != 1 || rep.Sources[1].Samples != 30 {
		t.Errorf("stored report: %+v %+v", rep.Sources[0], rep.Sources[1])
	}
	// Same inputs: the same file is reused.
	c2, err := Prepare(cfg, enc, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Path() != c.Path() {
		t.Errorf("unchanged inputs gave a new cache %s", c2.Path())
	}
	c2.Close()
	// Any input change gives a new key: config, template/tokenizer, data file.
	key, _ := CacheKey(cfg, enc)
	cfg2 := cfg
	cfg2.Encode.CutoffLen = 128
	enc2 := *enc
	enc2.Fingerprint = "other"
	k2, _ := CacheKey(cfg2, enc)
	k3, _ := CacheKey(cfg, &enc2)
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(dir, "dogs.jsonl"), later, later)
	k4, _ := CacheKey(cfg, enc)
	if key == k2 || key == k3 || key == k4 || k2 == k3 {
		t.Errorf("cache keys do not change with inputs: %s %s %s %s", key, k2, k3, k4)
	}
	entries, _ := os.ReadDir(cacheDir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestCacheRejectsCorruption(t *testing.T) {
	dir := t.TempDir()
	cfg := sftFiles(t, dir)
	c, err := Prepare(cfg, testEncoder(cfg.Encode), dir)
	if err != nil {
		t.Fatal(err)
	}
	path := c.Path()
	c.Close()
	good, _ := os.ReadFile(path)
	for name, mutate := range map[string]func([]byte) []byte{
		"truncated":    func(b []byte) []byte { return b[:len(b)-10] },
		"bad magic":    func(b []byte) []byte { b[0] = 'X'; return b },
		"huge tokens":  func(b []byte) []byte { b[24] = 0xFF; b[31] = 0x7F; return b },
		"bad offsets":  func(b []byte) []byte { b[len(b)-len(b)/3] ^= 0xFF; return b },
		"header only":  func(b []byte) []byte { return b[:64] },
		"shorter file": func(b []byte) []byte { return b[:10] },
	} {
		p := filepath.Join(dir, "bad.gtdc")
		os.WriteFile(p, mutate(append([]byte(nil), good...)), 0o644)
		if c, err := OpenCache(p); err == nil {
			// Flipping a byte may land in token data, which is valid; the
			// structural cases must fail.
			c.Close()
			if name != "bad offsets" {
				t.Errorf("%s: corrupt cache accepted", name)
			}
		}
	}
}

func TestPreparePreference(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "p.jsonl", `{"prompt":"q1","chosen":"yes","rejected":"no"}`+"\n"+`{"prompt":"q2","chosen":"fine","rejected":"bad"}`+"\n")
	cfg := Config{Datasets: []Spec{{Name: "p", Path: p}}, Stage: "dpo"}
	c, err := Prepare(cfg, testEncoder(EncodeOptions{}), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Paired() || c.Len() != 2 {
		t.Fatalf("paired %v len %d", c.Paired(), c.Len())
	}
	s := c.Sample(1)
	if squeeze(trainedText(s)) != ".fine<E>\n" || squeeze(trainedText(Sample{Labels: s.RejectedLabels})) != ".bad<E>\n" {
		t.Errorf("pair %q / %q", trainedText(s), trainedText(Sample{Labels: s.RejectedLabels}))
	}
}

func TestInspectReport(t *testing.T) {
	dir := t.TempDir()
	cfg := sftFiles(t, dir)
	rep, err := Inspect(cfg, testEncoder(cfg.Encode), InspectOptions{Samples: 2})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text, false); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	for _, want := range []string{
		"cats", "dogs", "after mixing: 90 train, 10 validation",
		"bad records (skipped)", "invalid JSON line", "removed by filters", ReasonPlaceholder,
		"cats.jsonl:71", // the broken line
		"[[answer 0: cats sleep a lot<|im_end|>\n]]", "length histogram",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	var colored bytes.Buffer
	rep.WriteText(&colored, true)
	if !strings.Contains(colored.String(), "\x1b[32m") {
		t.Error("color report has no color")
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	tot := back.Totals()
	if tot.Samples != 100 || tot.Bad != 1 || back.Train != 90 || len(back.Rendered) != 2 || tot.Trained == 0 || tot.Trained >= tot.Tokens {
		t.Errorf("JSON report: %+v", tot)
	}
	// Without a tokenizer the report still works, in characters.
	rep, err = Inspect(cfg, nil, InspectOptions{})
	if err != nil || rep.Unit != "chars" || rep.Totals().Samples != 100 {
		t.Errorf("inspect without encoder: %v %+v", err, rep)
	}
}

func TestDatasetInfoErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "x.jsonl", "")
	writeFile(t, dir, "dataset_info.json", `{"remote":{"hf_hub_url":"a/b"},"badfmt":{"file_name":"x.jsonl","formatting":"csv"},"badcol":{"file_name":"x.jsonl","columns":{"wat":"x"}},"gone":{"file_name":"missing.jsonl"}}`)
	info, err := LoadDatasetInfo(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"remote": "remote datasets", "badfmt": "unknown formatting", "badcol": "unknown column key",
		"gone": "missing.jsonl", "nope": "not in",
	} {
		if _, err := info.Resolve([]string{name}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", name, err, want)
		}
	}
	if s, err := info.Resolve([]string{"x.jsonl"}); err != nil || s[0].Path != filepath.Join(dir, "x.jsonl") {
		t.Errorf("plain path: %v %v", s, err)
	}
	writeFile(t, dir, "dataset_info.json", `[1,2]`)
	if _, err := LoadDatasetInfo(dir); err == nil {
		t.Error("malformed dataset_info.json accepted")
	}
}

// TestTrainSummary: the summary training prints before it starts says,
// per dataset, what was read, skipped, filtered (by which filter) and kept.
func TestTrainSummary(t *testing.T) {
	dir := t.TempDir()
	cfg := sftFiles(t, dir)
	c, err := Prepare(cfg, testEncoder(cfg.Encode), filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b strings.Builder
	if err := c.Report().WriteSummary(&b); err != nil {
		t.Fatal(err)
	}
	got := strings.ReplaceAll(b.String(), dir, "DIR")
	golden := filepath.Join("testdata", "train_summary.txt")
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("summary differs from %s:\n%s", golden, got)
	}
}

// A flipped bit in token data used to be read as a valid (possibly
// out-of-vocabulary) token; the checksum catches it.
func TestCacheChecksumCatchesTokenDamage(t *testing.T) {
	dir := t.TempDir()
	cfg := sftFiles(t, dir)
	c, err := Prepare(cfg, testEncoder(cfg.Encode), dir)
	if err != nil {
		t.Fatal(err)
	}
	maxID := -1
	for i := range c.Len() {
		for _, id := range c.Sample(i).InputIDs {
			maxID = max(maxID, int(id))
		}
	}
	if c.MaxTokenID() != maxID || maxID < 0 {
		t.Errorf("MaxTokenID %d, want %d", c.MaxTokenID(), maxID)
	}
	path := c.Path()
	c.Close()
	b, _ := os.ReadFile(path)
	b[headerSize+2] ^= 0x40 // the first token's id grows by 1<<22
	p := filepath.Join(dir, "damaged.gtdc")
	os.WriteFile(p, b, 0o644)
	if c, err := OpenCache(p); err == nil || !strings.Contains(err.Error(), "checksum") {
		if c != nil {
			c.Close()
		}
		t.Fatalf("damaged token accepted: %v", err)
	}
}

// TestTruncationReported: samples cut to cutoff_len, and the trained tokens
// they lose, are counted per dataset and said before training and by
// inspect, not lost without a word.
func TestTruncationReported(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("a long answer ", 12)
	writeFile(t, dir, "qa.jsonl", `{"instruction":"short one","output":"yes"}`+"\n"+
		`{"instruction":"long one","output":"`+long+`"}`+"\n"+
		`{"instruction":"short two","output":"no"}`+"\n")
	cfg := Config{Datasets: []Spec{{Name: "qa", Path: filepath.Join(dir, "qa.jsonl")}}, Mix: MixConfig{Seed: 1},
		Encode: EncodeOptions{CutoffLen: 80}}
	enc := testEncoder(cfg.Encode)
	r, err := enc.Render(&Example{Kind: KindChat, Messages: []Message{{Role: RoleUser, Content: "long one"}, {Role: RoleAssistant, Content: long}}})
	if err != nil {
		t.Fatal(err)
	}
	lost := 0
	for i, tr := range r.Trained {
		if tr && i >= 80 {
			lost++
		}
	}
	if lost == 0 {
		t.Fatal("the long sample loses nothing: test is wrong")
	}
	c, err := Prepare(cfg, enc, filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.Report().Sources[0]
	if s.Truncated != 1 || s.TruncatedTrained != int64(lost) {
		t.Errorf("truncated %d samples, %d trained tokens; want 1, %d", s.Truncated, s.TruncatedTrained, lost)
	}
	var b strings.Builder
	c.Report().WriteSummary(&b)
	want := fmt.Sprintf("qa: 1 of 3 samples cut to cutoff_len, losing %d trained tokens", lost)
	if !strings.Contains(b.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, b.String())
	}
	rep, err := Inspect(cfg, enc, InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	rep.WriteText(&text, false)
	if !strings.Contains(text.String(), want) {
		t.Errorf("inspect lacks %q:\n%s", want, text.String())
	}
}
