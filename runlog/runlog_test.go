package runlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeClock advances by the given steps, one per call after the first.
type fakeClock struct {
	t     time.Time
	steps []time.Duration
}

func (c *fakeClock) now() time.Time {
	if len(c.steps) > 0 {
		defer func() { c.t = c.t.Add(c.steps[0]); c.steps = c.steps[1:] }()
	}
	return c.t
}

func fakeMem() (Mem, error) { return Mem{RSS: 512 << 20, Peak: 768<<20 + 512<<10}, nil }

func TestJSONLines(t *testing.T) {
	var js, out bytes.Buffer
	clock := &fakeClock{t: time.Unix(1000, 0), steps: []time.Duration{2 * time.Second, 4 * time.Second, time.Second}}
	l, err := New(Options{JSON: &js, Out: &out, Display: Quiet, Total: 100, Now: clock.now, Mem: fakeMem})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Log(Step{Step: 10, Epoch: 0.123456, Loss: 2.5, LR: 2e-4, GradNorm: 0.75, Tokens: 4096}); err != nil {
		t.Fatal(err)
	}
	if err := l.Log(Step{Step: 20, Epoch: 0.25, Loss: math.NaN(), LR: 1.5e-4, GradNorm: math.Inf(1), Tokens: 1000}); err != nil {
		t.Fatal(err)
	}
	want := `{"step":10,"total_steps":100,"epoch":0.1235,"loss":2.5,"lr":0.0002,"grad_norm":0.75,"tokens_per_s":2048,"elapsed":2,"eta_s":18,"mem_rss_mb":512,"mem_peak_mb":768.5}
{"step":20,"total_steps":100,"epoch":0.25,"loss":null,"lr":0.00015,"grad_norm":null,"tokens_per_s":250,"elapsed":6,"eta_s":24,"mem_rss_mb":512,"mem_peak_mb":768.5}
`
	if js.String() != want {
		t.Fatalf("JSON lines:\n%s\nwant:\n%s", js.String(), want)
	}
	for i, line := range strings.Split(strings.TrimSpace(js.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v", i+1, err)
		}
	}
	if out.Len() != 0 {
		t.Errorf("quiet display wrote %q", out.String())
	}
}

func TestETAAfterResume(t *testing.T) {
	var js bytes.Buffer
	clock := &fakeClock{t: time.Unix(0, 0), steps: []time.Duration{10 * time.Second}}
	l, _ := New(Options{JSON: &js, Display: Quiet, Total: 100, StartStep: 50, Now: clock.now, Mem: fakeMem})
	l.Log(Step{Step: 60})
	// 10 steps in 10 s since the resume, 40 to go.
	if !strings.Contains(js.String(), `"eta_s":40,`) {
		t.Fatalf("line %s; want eta_s 40", js.String())
	}
}

func TestMemoryUnavailable(t *testing.T) {
	var js bytes.Buffer
	l, _ := New(Options{JSON: &js, Display: Quiet, Total: 1, Mem: func() (Mem, error) { return Mem{}, errors.New("no /proc") }})
	l.Log(Step{Step: 1})
	if !strings.Contains(js.String(), `"mem_rss_mb":null,"mem_peak_mb":null}`) {
		t.Fatalf("line %s; want null memory", js.String())
	}
}

func TestPlainLines(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(0, 0), steps: []time.Duration{65 * time.Second}}
	l, _ := New(Options{Out: &out, Display: Plain, Total: 100, Now: clock.now, Mem: fakeMem})
	l.Log(Step{Step: 10, Epoch: 0.5, Loss: 1.23456, LR: 2e-4, GradNorm: 0.5, Tokens: 6500})
	l.Printf("saved checkpoint-%d\n", 10)
	l.Close()
	want := "step 10/100 | epoch 0.50 | loss 1.2346 | lr 2.000e-04 | grad_norm 0.500 | 100 tok/s | elapsed 1m05s | eta 9m45s | rss 512 MB\nsaved checkpoint-10\n"
	if out.String() != want {
		t.Fatalf("plain output:\n%q\nwant:\n%q", out.String(), want)
	}
}

func TestProgressBar(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(0, 0), steps: []time.Duration{time.Second, time.Second, time.Second}}
	l, _ := New(Options{Out: &out, Display: Bar, Width: 100, Total: 4, Now: clock.now, Mem: fakeMem})
	l.Log(Step{Step: 1, Loss: 2, LR: 1e-4, Tokens: 100})
	l.Log(Step{Step: 2, Loss: 1.5, LR: 1e-4, Tokens: 100})
	l.Printf("hello")
	l.Close()
	s := out.String()
	var frames []string
	for _, f := range strings.Split(s, "\r") {
		if strings.HasPrefix(f, "[") {
			frames = append(frames, f)
		}
	}
	if len(frames) < 3 {
		t.Fatalf("output %q: want frames redrawn with \\r", s)
	}
	first := frames[0]
	if !strings.HasPrefix(first, "[==========") || !strings.Contains(first, " 25% 1/4 loss 2.0000 lr 1.00e-04 100 tok/s ETA 3s") {
		t.Errorf("first frame %q", first)
	}
	if !strings.Contains(frames[1], " 50% 2/4 loss 1.5000") {
		t.Errorf("second frame %q", frames[1])
	}
	// The message clears the bar line, prints, and draws the bar again below
	// it: the last frame, with the last step's loss, stays on screen after
	// Close (issue 13.8).
	if !strings.Contains(s, "\r\x1b[Khello\n\r[") {
		t.Errorf("output %q; want the bar cleared, the message, then the bar again", s)
	}
	if last := s[strings.LastIndex(s, "\r")+1:]; !strings.Contains(last, "2/4 loss 1.5000") || !strings.HasSuffix(last, "\x1b[K\n") {
		t.Errorf("the screen ends with %q; want the last frame, kept by a newline", last)
	}
	// Each logged step is a Trainer-style line above the bar.
	for _, want := range []string{"{'loss': 2.0, 'grad_norm': 0.0, 'learning_rate': 0.0001, 'epoch': 0.0}\n", "{'loss': 1.5, "} {
		if !strings.Contains(s, want) {
			t.Errorf("output %q lacks the logged line %q", s, want)
		}
	}
	for _, f := range frames {
		if line := strings.TrimSuffix(strings.TrimSuffix(f, "\x1b[K"), "\n"); len(line) > 99 {
			t.Errorf("frame of %d columns exceeds the width: %q", len(line), line)
		}
	}

	// A narrow terminal drops the bar, then truncates.
	out.Reset()
	l, _ = New(Options{Out: &out, Display: Bar, Width: 30, Total: 4, Mem: fakeMem})
	l.Log(Step{Step: 1, Loss: 2})
	o := out.String()
	if line := strings.TrimSuffix(o[strings.LastIndex(o, "\r")+1:], "\x1b[K"); len(line) != 29 || strings.Contains(line, "[") {
		t.Errorf("narrow frame %q (%d columns), want 29 columns without a bar", line, len(line))
	}
}

func TestLogFileResume(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	old := `{"step":10,"loss":1}
{"step":20,"loss":0.9}
{"step":20,"eval_loss":0.95}
{"step":30,"loss":0.8}
{"step":40,"lo`
	tests := []struct {
		name  string
		start int
		want  string
	}{
		{"resume at 20", 20, "{\"step\":10,\"loss\":1}\n{\"step\":20,\"loss\":0.9}\n{\"step\":20,\"eval_loss\":0.95}\n"},
		{"fresh run", 0, ""},
		{"resume past all", 50, "{\"step\":10,\"loss\":1}\n{\"step\":20,\"loss\":0.9}\n{\"step\":20,\"eval_loss\":0.95}\n{\"step\":30,\"loss\":0.8}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.WriteFile(path, []byte(old), 0o644)
			l, err := New(Options{Dir: dir, Display: Quiet, Total: 100, StartStep: tt.start, Mem: fakeMem})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Log(Step{Step: tt.start + 1, Loss: 0.5}); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(path)
			got, last, _ := strings.Cut(string(b), `{"step":`+strconv.Itoa(tt.start+1)+`,`)
			if got != tt.want || last == "" {
				t.Fatalf("log file:\n%s\nwant kept lines:\n%s", b, tt.want)
			}
		})
	}
}

func TestParseProcStatus(t *testing.T) {
	tests := []struct {
		name, in string
		want     Mem
		err      string
	}{
		{"typical", "Name:\tgotune\nVmPeak:\t 999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\nThreads:\t4\n", Mem{RSS: 1 << 20, Peak: 2 << 20}, ""},
		{"missing", "Name:\tx\nVmRSS:\t1 kB\n", Mem{}, "missing"},
		{"bad unit", "VmRSS:\t1 MB\nVmHWM:\t1 kB\n", Mem{}, `VmRSS: expected "<number> kB"`},
		{"bad number", "VmRSS:\tx kB\nVmHWM:\t1 kB\n", Mem{}, "VmRSS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcStatus(strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestReadMemLive(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc on this system")
	}
	m, err := ReadMem()
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS == 0 || m.Peak < m.RSS {
		t.Fatalf("implausible memory %+v", m)
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) || IsTerminal(&bytes.Buffer{}) {
		t.Error("a file or buffer was taken for a terminal")
	}
	if d, err := ParseDisplay("none"); err != nil || d != Quiet {
		t.Errorf("ParseDisplay(none) = %v, %v", d, err)
	}
	if _, err := ParseDisplay("fancy"); err == nil {
		t.Error("ParseDisplay(fancy) succeeded")
	}
}

// Steps between logging_steps move the bar (with their own loss) without a
// log line; the final logged step's loss is what stays on screen (issue 13.8).
func TestBarMovesBetweenLoggedSteps(t *testing.T) {
	var out, js bytes.Buffer
	clock := &fakeClock{t: time.Unix(0, 0), steps: []time.Duration{time.Second}}
	l, _ := New(Options{Out: &out, JSON: &js, Display: Bar, Width: 120, Total: 3, Now: clock.now, Mem: fakeMem})
	l.Progress(Step{Step: 1, Loss: 3.25, LR: 1e-3, Tokens: 10})
	if !strings.Contains(out.String(), " 1/3 loss 3.2500") || strings.Contains(out.String(), "{'loss'") || js.Len() != 0 {
		t.Errorf("after Progress: screen %q, json %q", out.String(), js.String())
	}
	l.Progress(Step{Step: 2, Loss: 2.5, LR: 1e-3, Tokens: 20})
	l.Log(Step{Step: 3, Loss: 2.25, GradNorm: 0.75, LR: 2.5e-05, Epoch: 1, Tokens: 30})
	l.Printf("saved out")
	l.Close()
	s := out.String()
	if !strings.Contains(s, "{'loss': 2.25, 'grad_norm': 0.75, 'learning_rate': 2.5e-05, 'epoch': 1.0}\n") {
		t.Errorf("no Trainer-style line for the logged step: %q", s)
	}
	if last := s[strings.LastIndex(s, "\r")+1:]; !strings.Contains(last, "100% 3/3 loss 2.2500") {
		t.Errorf("final screen line %q; want the finished bar with the last loss", last)
	}
	if n := strings.Count(js.String(), "\n"); n != 1 {
		t.Errorf("%d JSON lines, want 1 (Progress writes none)", n)
	}
	// Plain and Quiet displays ignore Progress.
	out.Reset()
	l, _ = New(Options{Out: &out, Display: Plain, Total: 3, Mem: fakeMem})
	l.Progress(Step{Step: 1, Loss: 1})
	if out.Len() != 0 {
		t.Errorf("Plain display printed %q for Progress", out.String())
	}
}

func TestPyFloat(t *testing.T) {
	for v, want := range map[float64]string{2: "2.0", 0.5: "0.5", 2e-5: "2e-05", 1e-4: "0.0001", 9.504844339512095e-05: "9.504844339512095e-05", 1.2346: "1.2346", 0: "0.0"} {
		if got := pyFloat(v); got != want {
			t.Errorf("pyFloat(%v) = %q, want %q", v, got, want)
		}
	}
}
