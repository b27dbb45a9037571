package plot

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden SVG files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./plot -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./plot -update rewrites it after checking the picture)\ngot:\n%s", name, got)
	}
}

func TestReadLog(t *testing.T) {
	recs, err := ReadLog("testdata/trainer_log.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 10 {
		t.Fatalf("%d records, want 10", len(recs))
	}
	if r := recs[4]; r.Step != 4 || r.EvalLoss != 2.05 || !math.IsNaN(r.Loss) || !math.IsNaN(r.LR) {
		t.Errorf("eval line read as %+v", r)
	}
	if r := recs[5]; !math.IsNaN(r.GradNorm) || r.Loss != 1.4 {
		t.Errorf("null grad_norm read as %+v", r)
	}
	if got := Points(recs, "eval_loss"); len(got) != 2 || got[1] != (Point{8, 1.7}) {
		t.Errorf("eval points %v", got)
	}
	if got := Points(recs, "grad_norm"); len(got) != 7 {
		t.Errorf("%d grad_norm points, want 7 (null left out)", len(got))
	}
}

func TestReadLogTornAndBadLines(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "log.jsonl")
	// The trainer is writing the third line right now.
	os.WriteFile(p, []byte("{\"step\":1,\"loss\":2}\n{\"step\":2,\"loss\":1.5}\n{\"step\":3,\"lo"), 0o644)
	recs, err := ReadLog(p)
	if err != nil || len(recs) != 2 {
		t.Errorf("torn last line: %d records, %v", len(recs), err)
	}
	os.WriteFile(p, []byte("{\"step\":1,\"loss\":2}\nnot json\n"), 0o644)
	if _, err := ReadLog(p); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Errorf("a bad line in the middle: %v, want an error naming line 2", err)
	}
	if recs, err := ReadLog(filepath.Join(dir, "missing")); err != nil || len(recs) != 0 {
		t.Errorf("missing log: %v %v", recs, err)
	}
}

func TestTicksAreRoundAndCover(t *testing.T) {
	for _, c := range []struct{ lo, hi float64 }{{0, 1}, {0.93, 2.51}, {1, 60}, {1e-5, 2e-4}, {1200, 1330}, {-3, 7}} {
		ts := ticks(c.lo, c.hi, 5)
		if ts[0] > c.lo || ts[len(ts)-1] < c.hi {
			t.Errorf("ticks %v do not cover [%g, %g]", ts, c.lo, c.hi)
		}
		if len(ts) < 3 || len(ts) > 12 {
			t.Errorf("[%g, %g]: %d ticks", c.lo, c.hi, len(ts))
		}
		step := ts[1] - ts[0]
		m := step / math.Pow(10, math.Floor(math.Log10(step)))
		if math.Abs(m-1) > 1e-6 && math.Abs(m-2) > 1e-6 && math.Abs(m-5) > 1e-6 {
			t.Errorf("[%g, %g]: step %g is not 1, 2 or 5 × 10^k", c.lo, c.hi, step)
		}
	}
}

func TestChartGolden(t *testing.T) {
	recs, err := ReadLog("testdata/trainer_log.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	// Two runs overlaid: the second is the first shifted, as a rerun with
	// other settings would be.
	other := make([]Record, len(recs))
	for i, r := range recs {
		r.Loss *= 0.8
		other[i] = r
	}
	golden(t, "loss_two_runs.svg", MetricChart("loss", []string{"runs/a", "runs/<b>"}, [][]Record{recs, other}).SVG())
	golden(t, "lr.svg", MetricChart("lr", []string{"runs/a"}, [][]Record{recs}).SVG())
	golden(t, "empty.svg", MetricChart("eval_loss", []string{"runs/new"}, [][]Record{nil}).SVG())
}

func TestChartEscapesNames(t *testing.T) {
	svg := MetricChart("loss", []string{`<script>&"`}, [][]Record{{{Step: 1, Loss: 1}}}).SVG()
	if bytes.Contains(svg, []byte("<script>")) || !bytes.Contains(svg, []byte("&lt;script&gt;&amp;")) {
		t.Errorf("run name not escaped: %s", svg)
	}
}

func TestWriteRunCharts(t *testing.T) {
	dir := t.TempDir()
	b, _ := os.ReadFile("testdata/trainer_log.jsonl")
	os.WriteFile(filepath.Join(dir, "trainer_log.jsonl"), b, 0o644)
	files, err := WriteRunCharts(dir)
	if err != nil || len(files) != 2 {
		t.Fatalf("wrote %v, %v; want the loss and eval loss charts", files, err)
	}
	loss, _ := os.ReadFile(filepath.Join(dir, LossFile))
	if bytes.Count(loss, []byte("<polyline")) != 2 || !bytes.Contains(loss, []byte("smoothed")) {
		t.Errorf("training_loss.svg lacks the raw and smoothed curves")
	}
	golden(t, "training_loss.svg", bytes.ReplaceAll(loss, []byte(filepath.Base(dir)), []byte("RUN")))
	eval, _ := os.ReadFile(filepath.Join(dir, EvalLossFile))
	if !bytes.Contains(eval, []byte("<polyline")) {
		t.Errorf("training_eval_loss.svg has no curve")
	}
	// Without eval lines only the loss chart is written.
	dir2 := t.TempDir()
	os.WriteFile(filepath.Join(dir2, "trainer_log.jsonl"), []byte("{\"step\":1,\"loss\":2}\n{\"step\":2,\"loss\":1}\n"), 0o644)
	if files, err := WriteRunCharts(dir2); err != nil || len(files) != 1 {
		t.Errorf("no eval: wrote %v, %v", files, err)
	}
}

func TestSmooth(t *testing.T) {
	pts := []Point{{1, 4}, {2, 4}, {3, 4}}
	for _, p := range Smooth(pts, 0.9) {
		if math.Abs(p.Y-4) > 1e-12 {
			t.Errorf("a constant series smoothed to %v", p.Y)
		}
	}
	s := Smooth([]Point{{1, 0}, {2, 10}}, 0.5)
	if s[0].Y != 0 || math.Abs(s[1].Y-10.0*0.5/0.75) > 1e-12 {
		t.Errorf("smoothed %v", s)
	}
}

// Stage dpo's log: training_rewards.svg holds the chosen and rejected
// rewards and the margin in one chart and the accuracy in a second one
// below it with its own axis; training_loss.svg is still written, and no
// grpo reward chart.
func TestWriteRunChartsRewards(t *testing.T) {
	dir := t.TempDir()
	var log strings.Builder
	for s := 1; s <= 5; s++ {
		f := float64(s)
		fmt.Fprintf(&log, `{"step":%d,"loss":%g,"rewards/chosen":%g,"rewards/rejected":%g,"rewards/accuracies":%g,"rewards/margins":%g,"logps/chosen":-12,"kl":null,"note":"x"}`+"\n",
			s, 0.7-0.1*f, 0.2*f, -0.3*f, 0.5+0.1*f, 0.5*f)
	}
	log.WriteString(`{"step":5,"eval_loss":0.3,"eval_rewards/accuracies":1}` + "\n")
	os.WriteFile(filepath.Join(dir, "trainer_log.jsonl"), []byte(log.String()), 0o644)
	files, err := WriteRunCharts(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	if want := []string{LossFile, RewardsFile, EvalLossFile}; !slices.Equal(names, want) {
		t.Fatalf("wrote %v, want %v", names, want)
	}
	svg, _ := os.ReadFile(filepath.Join(dir, RewardsFile))
	for _, name := range []string{"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} {
		re := regexp.MustCompile(`data-name="` + name + `"><polyline [^>]*points="([^"]*)"`)
		m := re.FindSubmatch(svg)
		if m == nil || len(strings.Fields(string(m[1]))) != 5 {
			t.Errorf("%s: no curve of 5 points in %s", name, RewardsFile)
		}
	}
	if n := bytes.Count(svg, []byte("<svg ")); n != 3 {
		t.Errorf("%d svg elements, want the outer one and two charts", n)
	}
	if !bytes.Contains(svg, []byte(`<svg y="360" `)) {
		t.Errorf("the accuracy chart is not below the rewards chart")
	}

	// The log's values read back, and the extra keys reach the UI's JSON.
	recs, err := ReadLog(filepath.Join(dir, "trainer_log.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := recs[1].Value("rewards/margins"); !ok || v != 1 {
		t.Errorf("rewards/margins of step 2: %v %v", v, ok)
	}
	if got := Present(recs); !slices.Equal(got, []string{"loss", "eval_loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"}) {
		t.Errorf("present %v", got)
	}
	b, _ := json.Marshal(recs[0])
	if !bytes.Contains(b, []byte(`"rewards/chosen":0.2`)) || bytes.Contains(b, []byte("note")) {
		t.Errorf("record JSON %s", b)
	}
}

// Stage kto logs no pair accuracy: the rewards file has one chart.
func TestWriteRunChartsKTORewards(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "trainer_log.jsonl"), []byte(`{"step":1,"loss":0.5,"rewards/chosen":0.1,"rewards/rejected":-0.1,"rewards/margins":0.2,"kl":0}
{"step":2,"loss":0.4,"rewards/chosen":0.3,"rewards/rejected":-0.2,"rewards/margins":0.5,"kl":0.1}
`), 0o644)
	if _, err := WriteRunCharts(dir); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(filepath.Join(dir, RewardsFile))
	if err != nil || bytes.Count(svg, []byte("<svg ")) != 2 || bytes.Contains(svg, []byte("accuracies")) {
		t.Errorf("%v:\n%s", err, svg)
	}
	if _, err := os.Stat(filepath.Join(dir, RewardFile)); err == nil {
		t.Errorf("a kto run wrote grpo's %s", RewardFile)
	}
}
