package runlog

import (
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"time"
)

// Meter shows the progress of long work other than training (eval, data
// inspect and prepare, export) as one line redrawn in place: done/total, rate
// and ETA. It draws only on a terminal: on a pipe or into a file it writes
// nothing, so logs and scripts see only the results. Its methods are safe
// for concurrent use; redraws are throttled, so ticking per item is cheap.
type Meter struct {
	mu       sync.Mutex
	out      io.Writer
	label    string
	unit     string // "B" shows sizes in KiB/MiB/GiB
	total    int64
	done     int64
	now      func() time.Time
	start    time.Time
	lastDraw time.Time
	width    int
	active   bool
	shown    bool
}

// meterInterval is the least time between two redraws.
const meterInterval = 100 * time.Millisecond

// NewMeter starts a meter on out for total units of work (0: unknown, then
// no percentage or ETA is shown). unit names what is counted ("samples",
// "tensors"); "B" counts bytes.
func NewMeter(out io.Writer, label, unit string, total int64) *Meter {
	return newMeter(out, label, unit, total, IsTerminal(out), time.Now, 0)
}

func newMeter(out io.Writer, label, unit string, total int64, active bool, now func() time.Time, width int) *Meter {
	m := &Meter{out: out, label: label, unit: unit, total: total, now: now, active: active, width: width}
	m.start = now()
	return m
}

// Add counts n more units done.
func (m *Meter) Add(n int64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done += n
	m.draw(false)
}

// Set sets the units done and the total (total 0 keeps the one it has).
func (m *Meter) Set(done, total int64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done = done
	if total > 0 {
		m.total = total
	}
	m.draw(false)
}

// Done draws the final state and ends the line, which stays on screen.
func (m *Meter) Done() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.active {
		return
	}
	m.draw(true)
	fmt.Fprintln(m.out)
	m.active = false
}

func (m *Meter) draw(force bool) {
	if !m.active {
		return
	}
	now := m.now()
	if !force && m.shown && now.Sub(m.lastDraw) < meterInterval {
		return
	}
	m.lastDraw = now
	elapsed := now.Sub(m.start).Seconds()
	rate := math.NaN()
	if elapsed > 0 {
		rate = float64(m.done) / elapsed
	}
	eta := math.NaN()
	if m.total > 0 && m.done > 0 {
		eta = max(0, elapsed/float64(m.done)*float64(m.total-m.done))
	}
	count := m.amount(m.done)
	pct := ""
	if m.total > 0 {
		count += "/" + m.amount(m.total)
		pct = fmt.Sprintf(" %3.0f%%", min(100, 100*float64(m.done)/float64(m.total)))
	}
	rateText := "-"
	if !math.IsNaN(rate) {
		rateText = m.amount(int64(math.Round(rate)))
	}
	line := fmt.Sprintf("%s%s %s %s, %s/s, ETA %s", m.label, pct, count, m.unitName(), rateText+" "+m.unitName(), fmtDur(eta))
	if m.unit == "B" {
		line = fmt.Sprintf("%s%s %s, %s/s, ETA %s", m.label, pct, count, rateText, fmtDur(eta))
	}
	width := m.width
	if width <= 0 {
		width = termWidth(m.out)
	}
	if len(line) > width-1 {
		line = line[:max(width-1, 0)]
	}
	fmt.Fprintf(m.out, "\r%s\x1b[K", line)
	m.shown = true
}

func (m *Meter) unitName() string { return m.unit }

// amount formats a count, or a size when the unit is bytes.
func (m *Meter) amount(n int64) string {
	if m.unit != "B" {
		return fmt.Sprint(n)
	}
	v, units := float64(n), []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + " " + units[i]
}

// Writer returns w wrapped so that each write first clears the meter's line:
// messages printed while the meter runs start on a clean line, and the next
// tick draws the meter again below them.
func (m *Meter) Writer(w io.Writer) io.Writer { return meterWriter{m, w} }

type meterWriter struct {
	m *Meter
	w io.Writer
}

func (mw meterWriter) Write(p []byte) (int, error) {
	if m := mw.m; m != nil {
		m.mu.Lock()
		if m.active && m.shown {
			fmt.Fprint(m.out, "\r\x1b[K")
			m.shown = false
		}
		m.mu.Unlock()
	}
	return mw.w.Write(p)
}
