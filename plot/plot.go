// Package plot draws training curves as SVG from a run folder's
// trainer_log.jsonl. The web UI draws its charts with it, and training
// writes training_loss.svg (and training_eval_loss.svg) into every run
// folder with it, so the pictures in the folder and on the page agree.
//
// The SVG is built by hand with fixed number formatting: the same log
// always gives byte-identical output, which the golden tests rely on.
package plot

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gotune/ckpt"
	"gotune/runlog"
)

// Record is one line of trainer_log.jsonl. Values a line does not carry
// (an eval line has no lr; null for NaN) are NaN.
type Record struct {
	Step       int     `json:"step"`
	TotalSteps int     `json:"total_steps,omitempty"`
	Epoch      float64 `json:"epoch"`
	Loss       float64 `json:"loss"`
	EvalLoss   float64 `json:"eval_loss"`
	LR         float64 `json:"lr"`
	GradNorm   float64 `json:"grad_norm"`
	TokensPerS float64 `json:"tokens_per_s"`
	Elapsed    float64 `json:"elapsed"`
	ETA        float64 `json:"eta_s"`
	MemRSS     float64 `json:"mem_rss_mb"`
	MemPeak    float64 `json:"mem_peak_mb"`
	// Reward and EvalReward are stage grpo's mean reward of the sampled
	// completions and of the held-out prompts.
	Reward     float64 `json:"reward"`
	EvalReward float64 `json:"eval_reward"`
	// Extra holds the line's other numeric values by key: the preference
	// stages' rewards/chosen, rewards/accuracies, … (nil when none).
	Extra map[string]float64 `json:"-"`
}

// MarshalJSON writes NaN as null, as the trainer does, since JSON has no NaN.
func (r Record) MarshalJSON() ([]byte, error) {
	b := []byte(`{"step":` + strconv.Itoa(r.Step))
	if r.TotalSteps > 0 {
		b = append(b, `,"total_steps":`+strconv.Itoa(r.TotalSteps)...)
	}
	for _, kv := range []struct {
		k string
		v float64
	}{{"epoch", r.Epoch}, {"loss", r.Loss}, {"eval_loss", r.EvalLoss}, {"lr", r.LR}, {"grad_norm", r.GradNorm},
		{"tokens_per_s", r.TokensPerS}, {"elapsed", r.Elapsed}, {"eta_s", r.ETA}, {"mem_rss_mb", r.MemRSS}, {"mem_peak_mb", r.MemPeak},
		{"reward", r.Reward}, {"eval_reward", r.EvalReward}} {
		if math.IsNaN(kv.v) || math.IsInf(kv.v, 0) {
			continue
		}
		b = append(b, `,"`+kv.k+`":`...)
		b = strconv.AppendFloat(b, kv.v, 'g', -1, 64)
	}
	keys := make([]string, 0, len(r.Extra))
	for k := range r.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the same record, the same bytes
	for _, k := range keys {
		v := r.Extra[k]
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		kb, _ := json.Marshal(k)
		b = append(append(append(b, ','), kb...), ':')
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	return append(b, '}'), nil
}

// ParseRecord reads one log line. Numbers under keys Record has no field
// for go to Extra; null is NaN; other values (strings) are ignored.
func ParseRecord(line []byte) (Record, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(line, &all); err != nil {
		return Record{}, err
	}
	rawStep, ok := all["step"]
	if !ok {
		return Record{}, errors.New(`no "step"`)
	}
	nan := math.NaN()
	r := Record{Epoch: nan, Loss: nan, EvalLoss: nan, LR: nan, GradNorm: nan, TokensPerS: nan, Elapsed: nan, ETA: nan,
		MemRSS: nan, MemPeak: nan, Reward: nan, EvalReward: nan}
	var err error
	if r.Step, err = strconv.Atoi(string(rawStep)); err != nil {
		return Record{}, fmt.Errorf(`"step" %s: want a whole number`, rawStep)
	}
	fields := map[string]*float64{"epoch": &r.Epoch, "loss": &r.Loss, "eval_loss": &r.EvalLoss, "lr": &r.LR,
		"grad_norm": &r.GradNorm, "tokens_per_s": &r.TokensPerS, "elapsed": &r.Elapsed, "eta_s": &r.ETA,
		"mem_rss_mb": &r.MemRSS, "mem_peak_mb": &r.MemPeak, "reward": &r.Reward, "eval_reward": &r.EvalReward}
	for k, raw := range all {
		switch k {
		case "step":
			continue
		case "total_steps":
			if r.TotalSteps, err = strconv.Atoi(string(raw)); err != nil {
				return Record{}, fmt.Errorf(`"total_steps" %s: want a whole number`, raw)
			}
			continue
		}
		// A JSON number is Go float syntax; null and strings do not parse.
		v, err := strconv.ParseFloat(string(raw), 64)
		if f, ok := fields[k]; ok {
			if err == nil {
				*f = v
			}
			continue
		}
		if err == nil {
			if r.Extra == nil {
				r.Extra = map[string]float64{}
			}
			r.Extra[k] = v
		}
	}
	return r, nil
}

// ReadLog reads a trainer_log.jsonl. A missing file is an empty log. A last
// line without its newline is being written right now (or was torn by a
// crash) and is left out; any other unreadable line is an error naming it.
func ReadLog(path string) ([]Record, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if i := bytes.LastIndexByte(b, '\n'); i < len(b)-1 {
		b = b[:i+1]
	}
	var recs []Record
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		r, err := ParseRecord(sc.Bytes())
		if err != nil {
			return recs, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		recs = append(recs, r)
	}
	return recs, sc.Err()
}

// Metrics names the values a chart can show, in the order the UI lists them.
var Metrics = []struct{ Key, Title, Unit string }{
	{"loss", "Training loss", ""},
	{"eval_loss", "Eval loss", ""},
	{"lr", "Learning rate", ""},
	{"grad_norm", "Gradient norm", ""},
	{"tokens_per_s", "Throughput", "tokens/s"},
	{"mem_rss_mb", "Memory (RSS)", "MB"},
	{"reward", "Reward (grpo)", ""},
	{"eval_reward", "Held-out reward (grpo)", ""},
	{"rewards/chosen", "Reward of the chosen answers (dpo, kto)", ""},
	{"rewards/rejected", "Reward of the rejected answers (dpo, kto)", ""},
	{"rewards/margins", "Reward margin (dpo)", ""},
	{"rewards/accuracies", "Reward accuracy (dpo)", ""},
}

// Value returns the named metric of r (NaN when r does not carry it).
func (r Record) Value(metric string) (float64, bool) {
	switch metric {
	case "loss":
		return r.Loss, true
	case "eval_loss":
		return r.EvalLoss, true
	case "lr":
		return r.LR, true
	case "grad_norm":
		return r.GradNorm, true
	case "tokens_per_s":
		return r.TokensPerS, true
	case "mem_rss_mb":
		return r.MemRSS, true
	case "mem_peak_mb":
		return r.MemPeak, true
	case "epoch":
		return r.Epoch, true
	case "reward":
		return r.Reward, true
	case "eval_reward":
		return r.EvalReward, true
	}
	for _, m := range Metrics {
		if m.Key == metric {
			if v, ok := r.Extra[metric]; ok {
				return v, true
			}
			return math.NaN(), true
		}
	}
	return math.NaN(), false
}

// Present lists the keys of Metrics that recs hold a finite value of, in
// Metrics' order: the charts a run can show.
func Present(recs []Record) []string {
	var out []string
	for _, m := range Metrics {
		if len(Points(recs, m.Key)) > 0 {
			out = append(out, m.Key)
		}
	}
	return out
}

// Points picks a metric's finite values against the step.
func Points(recs []Record, metric string) []Point {
	var pts []Point
	for _, r := range recs {
		if v, _ := r.Value(metric); !math.IsNaN(v) && !math.IsInf(v, 0) {
			pts = append(pts, Point{float64(r.Step), v})
		}
	}
	return pts
}

// Smooth is an exponential moving average with bias correction, the
// smoothing TensorBoard-style loss plots show beside the raw curve.
func Smooth(pts []Point, weight float64) []Point {
	out := make([]Point, len(pts))
	var avg float64
	for i, p := range pts {
		avg = weight*avg + (1-weight)*p.Y
		out[i] = Point{p.X, avg / (1 - math.Pow(weight, float64(i+1)))}
	}
	return out
}

// Point is one (x, y) sample.
type Point struct{ X, Y float64 }

// Series is one named curve.
type Series struct {
	Name   string
	Points []Point
	Dashed bool
	Color  string // "" picks from the palette by position
}

// Chart is a line chart.
type Chart struct {
	Title, XLabel, YLabel string
	Width, Height         int // 0: 640×360
	Series                []Series
}

// Palette holds the colours series get in order; chosen to stay apart for
// the common kinds of colour blindness.
var Palette = []string{"#2f6fbf", "#d9622b", "#3a9a5b", "#8e5fb5", "#b8901f", "#c23b6b", "#3aa6b0", "#666666"}

const (
	padLeft, padRight, padTop, padBottom = 64, 16, 32, 44
)

// SVG renders the chart. With no points at all it draws the frame and a
// note instead, so a page polling a run that has not logged yet shows
// something sensible.
func (c Chart) SVG() []byte {
	w, h := c.size()
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", w, h)
	if c.Title != "" {
		fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", padLeft, esc(c.Title))
	}
	x0, x1, y0, y1, ok := c.bounds()
	pw, ph := float64(w-padLeft-padRight), float64(h-padTop-padBottom)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%s" height="%s" fill="none" stroke="#999999"/>`+"\n", padLeft, padTop, num(pw), num(ph))
	if !ok {
		fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="middle" fill="#777777">no data yet</text>`+"\n", num(float64(padLeft)+pw/2), num(float64(padTop)+ph/2))
		b.WriteString("</svg>\n")
		return []byte(b.String())
	}
	xs := ticks(x0, x1, 6)
	ys := ticks(y0, y1, 5)
	// Widen the ranges to the outer ticks so the curve never touches the frame.
	x0, x1 = math.Min(x0, xs[0]), math.Max(x1, xs[len(xs)-1])
	y0, y1 = math.Min(y0, ys[0]), math.Max(y1, ys[len(ys)-1])
	px := func(x float64) float64 { return float64(padLeft) + (x-x0)/(x1-x0)*pw }
	py := func(y float64) float64 { return float64(padTop) + ph - (y-y0)/(y1-y0)*ph }
	for _, t := range ys {
		y := py(t)
		fmt.Fprintf(&b, `<line x1="%d" y1="%s" x2="%s" y2="%s" stroke="#e5e5e5"/>`, padLeft, num(y), num(float64(padLeft)+pw), num(y))
		fmt.Fprintf(&b, `<text x="%d" y="%s" text-anchor="end">%s</text>`+"\n", padLeft-6, num(y+4), tickLabel(t, ys))
	}
	for _, t := range xs {
		x := px(t)
		fmt.Fprintf(&b, `<line x1="%s" y1="%d" x2="%s" y2="%s" stroke="#e5e5e5"/>`, num(x), padTop, num(x), num(float64(padTop)+ph))
		fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", num(x), num(float64(padTop)+ph+16), tickLabel(t, xs))
	}
	if c.XLabel != "" {
		fmt.Fprintf(&b, `<text x="%s" y="%d" text-anchor="middle">%s</text>`+"\n", num(float64(padLeft)+pw/2), h-6, esc(c.XLabel))
	}
	if c.YLabel != "" {
		fmt.Fprintf(&b, `<text x="14" y="%s" text-anchor="middle" transform="rotate(-90 14 %s)">%s</text>`+"\n", num(float64(padTop)+ph/2), num(float64(padTop)+ph/2), esc(c.YLabel))
	}
	legendX := float64(w - padRight - 8)
	for i, s := range c.Series {
		color := s.Color
		if color == "" {
			color = Palette[i%len(Palette)]
		}
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="5 3"`
		}
		fmt.Fprintf(&b, `<g class="series" data-name="%s">`, esc(s.Name))
		if len(s.Points) == 1 {
			p := s.Points[0]
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`, num(px(p.X)), num(py(p.Y)), color)
		} else if len(s.Points) > 1 {
			b.WriteString(`<polyline fill="none" stroke="` + color + `" stroke-width="1.8"` + dash + ` points="`)
			for j, p := range s.Points {
				if j > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(num(px(p.X)) + "," + num(py(p.Y)))
			}
			b.WriteString(`"/>`)
		}
		ly := float64(padTop) + 14 + float64(i)*16
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2"%s/>`, num(legendX-120), num(ly-4), num(legendX-100), num(ly-4), color, dash)
		fmt.Fprintf(&b, `<text x="%s" y="%s">%s</text></g>`+"\n", num(legendX-96), num(ly), esc(shorten(s.Name, 18)))
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

// size is the chart's width and height, 640×360 unless set.
func (c Chart) size() (w, h int) {
	w, h = c.Width, c.Height
	if w <= 0 {
		w = 640
	}
	if h <= 0 {
		h = 360
	}
	return w, h
}

func (c Chart) bounds() (x0, x1, y0, y1 float64, ok bool) {
	x0, y0 = math.Inf(1), math.Inf(1)
	x1, y1 = math.Inf(-1), math.Inf(-1)
	for _, s := range c.Series {
		for _, p := range s.Points {
			x0, x1 = math.Min(x0, p.X), math.Max(x1, p.X)
			y0, y1 = math.Min(y0, p.Y), math.Max(y1, p.Y)
			ok = true
		}
	}
	if !ok {
		return 0, 1, 0, 1, false
	}
	// A flat or single-point range still needs a width to divide by.
	if x1 == x0 {
		x0, x1 = x0-1, x1+1
	}
	if y1 == y0 {
		d := math.Max(math.Abs(y0)*0.1, 1e-9)
		y0, y1 = y0-d, y1+d
	}
	return x0, x1, y0, y1, true
}

// ticks returns round numbers (1, 2 or 5 × 10^k apart) covering [lo, hi]
// with about n intervals.
func ticks(lo, hi float64, n int) []float64 {
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	start := math.Floor(lo/step) * step
	var out []float64
	for i := 0; ; i++ {
		t := start + float64(i)*step
		out = append(out, t)
		if t >= hi-step*1e-9 || i > 100 {
			break
		}
	}
	return out
}

// tickLabel prints a tick with as many digits as its spacing needs.
func tickLabel(t float64, all []float64) string {
	step := 1.0
	if len(all) > 1 {
		step = all[1] - all[0]
	}
	if math.Abs(t) < step*1e-6 {
		t = 0
	}
	if t == 0 {
		return "0"
	}
	a := math.Max(math.Abs(all[0]), math.Abs(all[len(all)-1]))
	if a >= 1e5 || (a > 0 && a < 1e-3) {
		return strconv.FormatFloat(t, 'e', 1, 64)
	}
	d := 0
	if step < 1 {
		d = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	return strconv.FormatFloat(t, 'f', d, 64)
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func esc(s string) string { return html.EscapeString(s) }

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + string(r[len(r)-n+1:])
}

// MetricChart draws one metric of several runs overlaid; names label them.
// For the training loss each run also gets its smoothed curve when it has
// enough points for smoothing to mean something.
func MetricChart(metric string, names []string, logs [][]Record) Chart {
	title, unit := metric, ""
	for _, m := range Metrics {
		if m.Key == metric {
			title, unit = m.Title, m.Unit
		}
	}
	c := Chart{Title: title, XLabel: "step", YLabel: unit}
	for i, recs := range logs {
		pts := Points(recs, metric)
		color := Palette[i%len(Palette)]
		c.Series = append(c.Series, Series{Name: names[i], Points: pts, Color: color})
	}
	return c
}

// Chart file names written into a run folder at the end of training, as
// LLaMA-Factory's plot_loss names its PNGs.
const (
	LossFile     = "training_loss.svg"
	EvalLossFile = "training_eval_loss.svg"
	RewardFile   = "training_reward.svg"  // stage grpo
	RewardsFile  = "training_rewards.svg" // stages dpo and kto
)

// WriteRunCharts draws the run folder's loss (raw and smoothed) and, when
// the log has them, its eval loss, stage grpo's reward and the preference
// stages' rewards, and returns the files written.
func WriteRunCharts(dir string) ([]string, error) {
	recs, err := ReadLog(filepath.Join(dir, runlog.FileName))
	if err != nil {
		return nil, err
	}
	var written []string
	write := func(name string, svg []byte) error {
		p := filepath.Join(dir, name)
		if err := ckpt.WriteFileAtomic(p, svg, 0o644); err != nil {
			return err
		}
		written = append(written, p)
		return nil
	}
	run := filepath.Base(dir)
	if loss := Points(recs, "loss"); len(loss) > 0 {
		c := Chart{Title: "Training loss of " + run, XLabel: "step", Series: []Series{{Name: "original", Points: loss, Color: "#9fbde0"}}}
		if len(loss) >= 3 {
			c.Series = append(c.Series, Series{Name: "smoothed", Points: Smooth(loss, smoothWeight(len(loss))), Color: Palette[0]})
		}
		if err := write(LossFile, c.SVG()); err != nil {
			return written, err
		}
	}
	// Stage grpo: the sampled completions' mean reward and, when it
	// evaluated, the held-out prompts'; its loss stays near zero by design.
	if c := seriesChart("Reward of "+run, recs, "reward", "eval_reward"); c != nil {
		if err := write(RewardFile, c.SVG()); err != nil {
			return written, err
		}
	}
	// Stages dpo and kto: the implicit rewards and their margin, and below
	// them on an axis of their own the pairs ranked right (0…1), which a
	// shared axis with rewards of ±10 would flatten.
	if c := seriesChart("Rewards of "+run, recs, "rewards/chosen", "rewards/rejected", "rewards/margins"); c != nil {
		charts := []Chart{*c}
		if acc := seriesChart("Reward accuracy of "+run, recs, "rewards/accuracies"); acc != nil {
			charts = append(charts, *acc)
		}
		if err := write(RewardsFile, Stack(charts...)); err != nil {
			return written, err
		}
	}
	if c := seriesChart("Eval loss of "+run, recs, "eval_loss"); c != nil {
		c.Series[0].Color = Palette[1]
		if err := write(EvalLossFile, c.SVG()); err != nil {
			return written, err
		}
	}
	return written, nil
}

// seriesChart draws the metrics of recs that have points, one series each
// in palette order, or returns nil when none has.
func seriesChart(title string, recs []Record, metrics ...string) *Chart {
	c := Chart{Title: title, XLabel: "step"}
	for i, m := range metrics {
		if pts := Points(recs, m); len(pts) > 0 {
			c.Series = append(c.Series, Series{Name: m, Points: pts, Color: Palette[i%len(Palette)]})
		}
	}
	if len(c.Series) == 0 {
		return nil
	}
	return &c
}

// Stack draws charts one above the other in one SVG, each with its own
// axes.
func Stack(charts ...Chart) []byte {
	var b bytes.Buffer
	w, h := 0, 0
	var parts [][]byte
	for _, c := range charts {
		cw, ch := c.size()
		w = max(w, cw)
		parts = append(parts, c.SVG())
		h += ch
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d">`+"\n", w, h, w, h)
	y := 0
	for i, c := range charts {
		_, ch := c.size()
		// A nested svg is placed by its x and y; the inner one's own
		// attributes come after the tag name.
		inner := bytes.Replace(parts[i], []byte("<svg "), []byte(fmt.Sprintf(`<svg y="%d" `, y)), 1)
		b.Write(inner)
		y += ch
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// smoothWeight grows with the number of points, so short runs are not
// flattened and long noisy ones are; the shape of the rule follows the
// sigmoid LLaMA-Factory uses for the same purpose.
func smoothWeight(n int) float64 {
	return 1.8 * (1/(1+math.Exp(-0.05*float64(n))) - 0.5)
}
