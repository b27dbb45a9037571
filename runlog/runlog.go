// Package runlog reports training progress: one JSON line per logged step in
// the run folder (read by tools and the web UI, so its keys are stable) and,
// on a terminal, a progress bar redrawn in place; plain lines otherwise.
package runlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"gotune/ckpt"
)

// FileName is the per-step log inside the run folder.
const FileName = "trainer_log.jsonl"

// Display chooses how progress is shown on Options.Out.
type Display int

const (
	Auto  Display = iota // Bar on a terminal, Plain otherwise
	Bar                  // one line redrawn in place
	Plain                // one line per logged step
	Quiet                // nothing on Out
)

// ParseDisplay maps the config's progress setting ("auto", "bar", "plain",
// "none") to a Display.
func ParseDisplay(s string) (Display, error) {
	switch s {
	case "", "auto":
		return Auto, nil
	case "bar":
		return Bar, nil
	case "plain":
		return Plain, nil
	case "none":
		return Quiet, nil
	}
	return Auto, fmt.Errorf("progress %q: want auto, bar, plain or none", s)
}

// Options configures a Logger. Zero values pick the real thing: os.Stderr,
// time.Now, ReadMem, the terminal's width.
type Options struct {
	Dir       string    // run folder for trainer_log.jsonl; "" writes no file
	JSON      io.Writer // receives the JSON lines instead of Dir's file
	Out       io.Writer // human-readable progress; nil means os.Stderr
	Display   Display
	Total     int // total optimizer steps of the run
	StartStep int // the step resumed from (0 for a fresh run)
	Now       func() time.Time
	Mem       func() (Mem, error)
	Width     int // terminal columns; 0 asks the terminal (80 if unknown)
	// Sink, when set, also receives each value the JSON log records, by
	// its trainer_log.jsonl key (report_to: tensorboard writes them out).
	Sink func(step int, keys []string, values []float64)
	// DeviceMem, when set, reports the training device's memory in use and
	// its peak (bytes), logged as device_mem_mb and device_mem_peak_mb.
	DeviceMem func() (inUse, peak int64)
}

// Step is what the trainer reports at a logged step.
type Step struct {
	Step     int // optimizer steps completed
	Epoch    float64
	Loss     float64
	LR       float64
	GradNorm float64
	Tokens   int64 // tokens trained on since the previous Log call
	// Extra are a stage's own metrics (the preference stages' rewards/…,
	// logps/…), logged after the common ones under their keys.
	Extra []Value
}

// Value is one named metric.
type Value struct {
	Key   string
	Value float64
}

// Logger writes the run log. Its methods are safe for concurrent use.
type Logger struct {
	mu       sync.Mutex
	opt      Options
	file     *os.File
	json     io.Writer
	out      io.Writer
	display  Display
	start    time.Time
	last     time.Time // time of the previous Log
	barShown bool
	bar      string // the bar's last frame, redrawn under printed lines
}

// New starts a run log. With Dir set, the JSON log is appended to; on a
// fresh run (StartStep 0) an old log is discarded, on a resumed run the
// lines past StartStep, written by the interrupted run after its last
// checkpoint, are dropped so the log matches the resumed history.
func New(opt Options) (*Logger, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Mem == nil {
		opt.Mem = ReadMem
	}
	if opt.Out == nil {
		opt.Out = os.Stderr
	}
	l := &Logger{opt: opt, json: opt.JSON, out: opt.Out, display: opt.Display}
	if l.display == Auto {
		l.display = Plain
		if IsTerminal(opt.Out) {
			l.display = Bar
		}
	}
	if l.json == nil && opt.Dir != "" {
		path := filepath.Join(opt.Dir, FileName)
		if err := truncateAfter(path, opt.StartStep); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("run log: %w", err)
		}
		l.file, l.json = f, f
	}
	l.start = opt.Now()
	l.last = l.start
	return l, nil
}

// truncateAfter keeps the lines of path whose step is at most step.
func truncateAfter(path string, step int) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("run log: %w", err)
	}
	var keep bytes.Buffer
	if step > 0 {
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var rec struct {
				Step *int `json:"step"`
			}
			// A line that cannot be read (torn by a crash) is dropped too.
			if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.Step == nil || *rec.Step > step {
				continue
			}
			keep.Write(sc.Bytes())
			keep.WriteByte('\n')
		}
	}
	if keep.Len() == len(b) {
		return nil
	}
	if err := ckpt.WriteFileAtomic(path, keep.Bytes(), 0o644); err != nil {
		return fmt.Errorf("run log: %w", err)
	}
	return nil
}

// Log records one step: a JSON line, and the progress display.
func (l *Logger) Log(s Step) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.opt.Now()
	elapsed := now.Sub(l.start).Seconds()
	interval := now.Sub(l.last).Seconds()
	l.last = now
	rate := math.NaN()
	if interval > 0 {
		rate = float64(s.Tokens) / interval
	}
	eta := math.NaN()
	if done := s.Step - l.opt.StartStep; done > 0 && l.opt.Total > 0 {
		eta = max(0, elapsed/float64(done)*float64(l.opt.Total-s.Step))
	}
	mem, memErr := l.opt.Mem()
	rss, peak := math.NaN(), math.NaN()
	if memErr == nil {
		rss, peak = float64(mem.RSS)/(1<<20), float64(mem.Peak)/(1<<20)
	}

	var err error
	if l.json != nil {
		line := make([]byte, 0, 256)
		line = append(line, `{"step":`...)
		line = strconv.AppendInt(line, int64(s.Step), 10)
		line = append(line, `,"total_steps":`...)
		line = strconv.AppendInt(line, int64(l.opt.Total), 10)
		line = appendNum(line, "epoch", s.Epoch, 4)
		line = appendNum(line, "loss", s.Loss, -1)
		line = appendNum(line, "lr", s.LR, -1)
		line = appendNum(line, "grad_norm", s.GradNorm, -1)
		for _, m := range s.Extra {
			line = appendNum(line, m.Key, m.Value, -1)
		}
		line = appendNum(line, "tokens_per_s", rate, 1)
		line = appendNum(line, "elapsed", elapsed, 3)
		line = appendNum(line, "eta_s", eta, 1)
		line = appendNum(line, "mem_rss_mb", rss, 1)
		line = appendNum(line, "mem_peak_mb", peak, 1)
		for _, v := range s.Extra {
			line = appendNum(line, v.Key, v.Value, -1)
		}
		if l.opt.DeviceMem != nil {
			use, top := l.opt.DeviceMem()
			line = appendNum(line, "device_mem_mb", float64(use)/(1<<20), 1)
			line = appendNum(line, "device_mem_peak_mb", float64(top)/(1<<20), 1)
		}
		line = append(line, "}\n"...)
		if _, werr := l.json.Write(line); werr != nil {
			err = fmt.Errorf("run log: %w", werr)
		}
	}

	if l.opt.Sink != nil {
		keys := []string{"loss", "lr", "grad_norm", "epoch", "tokens_per_s", "mem_rss_mb", "mem_peak_mb"}
		vals := []float64{s.Loss, s.LR, s.GradNorm, s.Epoch, rate, rss, peak}
		for _, v := range s.Extra {
			keys, vals = append(keys, v.Key), append(vals, v.Value)
		}
		l.opt.Sink(s.Step, keys, vals)
	}

	switch l.display {
	case Plain:
		fmt.Fprintf(l.out, "step %d/%d | epoch %.2f | loss %s | lr %.3e | grad_norm %s | %s tok/s | elapsed %s | eta %s | rss %s MB\n",
			s.Step, l.opt.Total, s.Epoch, fmtNum(s.Loss, 4), s.LR, fmtNum(s.GradNorm, 3), fmtNum(rate, 0),
			fmtDur(elapsed), fmtDur(eta), fmtNum(rss, 0))
		if len(s.Extra) > 0 {
			var b strings.Builder
			for i, v := range s.Extra {
				if i > 0 {
					b.WriteString(" | ")
				}
				fmt.Fprintf(&b, "%s %s", v.Key, fmtNum(v.Value, 4))
			}
			fmt.Fprintf(l.out, "  %s\n", b.String())
		}
	case Bar:
		// As LLaMA-Factory (the transformers Trainer) shows a logged step:
		// its dict on a line of its own above the bar, so the history of
		// losses stays readable while the bar moves on.
		l.clearBar()
		fmt.Fprintln(l.out, trainerLine(s))
		l.drawBar(s, rate, eta)
	}
	return err
}

// Progress moves the bar for a step that is not logged (no JSON line, and
// nothing in the Plain and Quiet displays). s.Tokens counts the tokens since
// the previous Log, as for Log.
func (l *Logger) Progress(s Step) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.display != Bar {
		return
	}
	now := l.opt.Now()
	rate := math.NaN()
	if interval := now.Sub(l.last).Seconds(); interval > 0 {
		rate = float64(s.Tokens) / interval
	}
	eta := math.NaN()
	if done := s.Step - l.opt.StartStep; done > 0 && l.opt.Total > 0 {
		eta = max(0, now.Sub(l.start).Seconds()/float64(done)*float64(l.opt.Total-s.Step))
	}
	l.drawBar(s, rate, eta)
}

// trainerLine is the transformers Trainer's log line for a step, which
// LLaMA-Factory users know: {'loss': 1.2346, 'grad_norm': 0.5,
// 'learning_rate': 0.0002, 'epoch': 0.5}.
func trainerLine(s Step) string {
	var extra strings.Builder
	for _, v := range s.Extra {
		fmt.Fprintf(&extra, "'%s': %s, ", v.Key, pyFloat(math.Round(v.Value*1e4)/1e4))
	}
	return fmt.Sprintf("{'loss': %s, 'grad_norm': %s, 'learning_rate': %s, %s'epoch': %s}",
		pyFloat(math.Round(s.Loss*1e4)/1e4), pyFloat(s.GradNorm), pyFloat(s.LR), extra.String(), pyFloat(math.Round(s.Epoch*100)/100))
}

// pyFloat formats v as Python's repr of a float does (0.5, 2.0, 2e-05, nan).
func pyFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "nan"
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	}
	if a := math.Abs(v); a != 0 && (a < 1e-4 || a >= 1e16) {
		m := strconv.FormatFloat(v, 'e', -1, 64) // 2e-05, as Python
		return m
	}
	t := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.Contains(t, ".") {
		t += ".0"
	}
	return t
}

// clearBar removes the bar from the screen before a line is printed.
func (l *Logger) clearBar() {
	if l.barShown {
		fmt.Fprint(l.out, "\r\x1b[K")
		l.barShown = false
	}
}

func (l *Logger) drawBar(s Step, rate, eta float64) {
	width := l.opt.Width
	if width <= 0 {
		width = termWidth(l.out)
	}
	tail := fmt.Sprintf(" %d/%d loss %s lr %.2e %s tok/s ETA %s", s.Step, l.opt.Total,
		fmtNum(s.Loss, 4), s.LR, fmtNum(rate, 0), fmtDur(eta))
	frac := 0.0
	if l.opt.Total > 0 {
		frac = min(1, max(0, float64(s.Step)/float64(l.opt.Total)))
	}
	pct := fmt.Sprintf(" %3.0f%%", frac*100)
	barW := min(40, width-1-len(tail)-len(pct)-2)
	var line string
	if barW >= 5 {
		filled := int(frac * float64(barW))
		line = "[" + strings.Repeat("=", filled) + strings.Repeat(" ", barW-filled) + "]" + pct + tail
	} else {
		line = strings.TrimLeft(pct+tail, " ")
	}
	if len(line) > width-1 {
		line = line[:max(width-1, 0)]
	}
	l.bar = line
	// \r returns to column 0; \x1b[K clears what a longer previous line left.
	fmt.Fprintf(l.out, "\r%s\x1b[K", line)
	l.barShown = true
}

// EvalMetrics logs named evaluation values of a step (GRPO's held-out
// reward) as one JSON line, like Eval.
func (l *Logger) EvalMetrics(step int, ms []Value) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keys []string
	var values []float64
	var text []string
	line := strconv.AppendInt([]byte(`{"step":`), int64(step), 10)
	for _, m := range ms {
		line = appendNum(line, m.Key, m.Value, -1)
		keys, values = append(keys, m.Key), append(values, m.Value)
		text = append(text, m.Key+" "+fmtNum(m.Value, 4))
	}
	line = appendNum(line, "elapsed", l.opt.Now().Sub(l.start).Seconds(), 3)
	line = append(line, "}\n"...)
	if l.json != nil {
		if _, err := l.json.Write(line); err != nil {
			return fmt.Errorf("run log: %w", err)
		}
	}
	if l.opt.Sink != nil {
		l.opt.Sink(step, keys, values)
	}
	l.printLine(fmt.Sprintf("step %d: %s", step, strings.Join(text, ", ")))
	return nil
}

// Eval records an evaluation result as its own JSON line.
func (l *Logger) Eval(step int, loss float64) error { return l.EvalWith(step, loss, nil) }

// EvalWith is Eval with a stage's own evaluation metrics (keys as they
// are logged, eval_rewards/accuracies, …) on the same line.
func (l *Logger) EvalWith(step int, loss float64, extra []Value) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.json != nil {
		line := strconv.AppendInt([]byte(`{"step":`), int64(step), 10)
		line = appendNum(line, "eval_loss", loss, -1)
		for _, v := range extra {
			line = appendNum(line, v.Key, v.Value, -1)
		}
		line = appendNum(line, "elapsed", l.opt.Now().Sub(l.start).Seconds(), 3)
		line = append(line, "}\n"...)
		if _, err := l.json.Write(line); err != nil {
			return fmt.Errorf("run log: %w", err)
		}
	}
	if l.opt.Sink != nil {
		keys, vals := []string{"eval_loss"}, []float64{loss}
		for _, v := range extra {
			keys, vals = append(keys, v.Key), append(vals, v.Value)
		}
		l.opt.Sink(step, keys, vals)
	}
	msg := fmt.Sprintf("step %d: eval loss %s", step, fmtNum(loss, 4))
	for _, v := range extra {
		msg += fmt.Sprintf(", %s %s", v.Key, fmtNum(v.Value, 4))
	}
	l.printLine(msg)
	return nil
}

// Printf prints a message without garbling the progress bar.
func (l *Logger) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.printLine(strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

// printLine prints msg above the bar and draws the bar again below it, so
// the bar, with the last step's loss, stays on screen to the end.
func (l *Logger) printLine(msg string) {
	switch l.display {
	case Quiet:
		return
	case Bar:
		shown := l.barShown
		l.clearBar()
		fmt.Fprintln(l.out, msg)
		if shown {
			fmt.Fprintf(l.out, "\r%s\x1b[K", l.bar)
			l.barShown = true
		}
		return
	}
	fmt.Fprintln(l.out, msg)
}

// Close ends the progress line, leaving the last frame of the bar on the
// screen, and syncs and closes the JSON log file.
func (l *Logger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.barShown {
		fmt.Fprintln(l.out)
		l.barShown = false
	}
	if l.file == nil {
		return nil
	}
	err := l.file.Sync()
	if cerr := l.file.Close(); err == nil {
		err = cerr
	}
	l.file = nil
	if err != nil {
		return fmt.Errorf("run log: %w", err)
	}
	return nil
}

// appendNum appends ,"key":value; non-finite values become null because
// JSON has no NaN. digits < 0 means the shortest exact form.
func appendNum(b []byte, key string, v float64, digits int) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	if digits >= 0 {
		p := math.Pow(10, float64(digits))
		v = math.Round(v*p) / p
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

func fmtNum(v float64, digits int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', digits, 64)
}

// fmtDur formats seconds as 1h02m03s, 4m05s or 6s.
func fmtDur(sec float64) string {
	if math.IsNaN(sec) || math.IsInf(sec, 0) || sec < 0 {
		return "-"
	}
	s := int64(math.Round(sec))
	h, m := s/3600, s/60%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm%02ds", h, m, s%60)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s%60)
	}
	return fmt.Sprintf("%ds", s)
}
