package runlog

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// Long work shows rate and ETA on a terminal and nothing on a pipe
// (issue 13.8).
func TestMeter(t *testing.T) {
	var out bytes.Buffer
	tick := func() func() time.Time {
		t := time.Unix(0, 0)
		return func() time.Time { t = t.Add(time.Second); return t }
	}
	m := newMeter(&out, "eval", "samples", 10, true, tick(), 100)
	m.Add(2)
	m.Add(2)
	m.Done()
	s := out.String()
	frames := strings.Split(strings.TrimSuffix(s, "\n"), "\r")
	if len(frames) != 4 { // "", first, second, final
		t.Fatalf("frames %q", frames)
	}
	if f := frames[1]; !strings.Contains(f, "eval  20% 2/10 samples, 2 samples/s, ETA 4s") {
		t.Errorf("first frame %q", f)
	}
	if f := frames[2]; !strings.Contains(f, " 40% 4/10 samples, 2 samples/s, ETA 3s") {
		t.Errorf("second frame %q", f)
	}
	if !strings.HasSuffix(s, "\x1b[K\n") {
		t.Errorf("Done leaves %q; want the last frame ended by a newline", s)
	}

	// Bytes read as sizes; an unknown total shows no ETA.
	out.Reset()
	m = newMeter(&out, "data", "B", 0, true, tick(), 100)
	m.Set(3<<20, 0)
	if f := out.String(); !strings.Contains(f, "data 3 MiB, 3 MiB/s, ETA -") {
		t.Errorf("byte frame %q", f)
	}

	// Redraws are throttled.
	out.Reset()
	frozen := func() time.Time { return time.Unix(100, 0) }
	m = newMeter(&out, "x", "items", 1000, true, frozen, 100)
	for range 1000 {
		m.Add(1)
	}
	if n := strings.Count(out.String(), "\r"); n != 1 {
		t.Errorf("%d redraws within one interval, want 1", n)
	}

	// Not a terminal: nothing at all.
	var pipe bytes.Buffer
	m = NewMeter(&pipe, "eval", "samples", 10)
	m.Add(5)
	m.Done()
	if pipe.Len() != 0 {
		t.Errorf("meter wrote %q to a pipe", pipe.String())
	}
	var nilMeter *Meter
	nilMeter.Add(1) // a nil meter is a no-op
	nilMeter.Done()
}

// Lines written through Meter.Writer start on a clean line.
func TestMeterWriter(t *testing.T) {
	var out bytes.Buffer
	t0 := time.Unix(0, 0)
	now := func() time.Time { t0 = t0.Add(time.Second); return t0 }
	m := newMeter(&out, "w", "items", 4, true, now, 80)
	m.Add(1)
	w := m.Writer(&out)
	w.Write([]byte("message\n"))
	m.Add(1)
	if s := out.String(); !strings.Contains(s, "\x1b[K\r\x1b[Kmessage\n\rw  50%") {
		t.Errorf("output %q", s)
	}
}
