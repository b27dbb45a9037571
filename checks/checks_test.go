package checks

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestNewPassAndNaN(t *testing.T) {
	for _, c := range []struct {
		value, limit float64
		pass         bool
	}{{1e-5, 1e-4, true}, {1e-4, 1e-4, true}, {2e-4, 1e-4, false}, {math.NaN(), 1e-4, false}, {math.Inf(1), 1e-4, false}, {0, 0, true}} {
		if got := New("c", "m", c.value, c.limit).Pass; got != c.pass {
			t.Errorf("New(%v, limit %v).Pass = %v, want %v", c.value, c.limit, got, c.pass)
		}
	}
}

func TestRelErr(t *testing.T) {
	if e := RelErr([]float32{1, 2, 2}, []float64{1, 2, 2}); e != 0 {
		t.Errorf("identical: %v", e)
	}
	if e := RelErr([]float32{3, 4}, []float64{0, 0}); e != 5 {
		t.Errorf("zero reference gives the absolute norm: %v, want 5", e)
	}
	if e := RelErr([]float32{1}, []float64{1, 2}); !math.IsInf(e, 1) {
		t.Errorf("length mismatch must be +Inf, got %v", e)
	}
	if e := RelErr([]float32{1.1, 0}, []float64{1, 0}); math.Abs(e-0.1) > 1e-6 {
		t.Errorf("RelErr = %v, want 0.1", e)
	}
}

func TestWrite(t *testing.T) {
	var b bytes.Buffer
	failed := Write(&b, []Result{New("a", "rel_err", 1e-7, 1e-4), New("b", "mismatches", 2, 0)})
	if failed != 1 {
		t.Errorf("failed = %d, want 1", failed)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || lines[2] != "1 passed, 1 failed" || !strings.Contains(lines[1], `"pass":false`) {
		t.Errorf("output:\n%s", b.String())
	}
}
