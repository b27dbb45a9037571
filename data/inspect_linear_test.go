package data

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// longRendered is a record of n one-byte tokens: a long prompt, then a long
// trained answer, so each segment grows one token at a time.
func longRendered(n int) Rendered {
	r := Rendered{Text: strings.Repeat("x", n)}
	for i := range n {
		r.IDs = append(r.IDs, int('x'))
		r.Offsets = append(r.Offsets, [2]int{i, i + 1})
		r.Trained = append(r.Trained, i >= n/2)
	}
	return r
}

// TestRenderedSampleLinear: the sample shown by `data inspect` appended each
// token to a string, copying the segment so far: memory and time grew with
// the square of the record (400k characters took 15 s). Bytes allocated
// must stay a small multiple of the record's length.
func TestRenderedSampleLinear(t *testing.T) {
	const n = 200_000
	r := longRendered(n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rs := renderedSample(&Example{}, r)
	runtime.ReadMemStats(&after)
	if len(rs.Segments) != 2 || len(rs.Segments[0].Text) != n/2 || len(rs.Segments[1].Text) != n/2 || rs.Trained != n/2 {
		t.Fatalf("segments %d, trained %d", len(rs.Segments), rs.Trained)
	}
	if a := after.TotalAlloc - before.TotalAlloc; a > 32*n {
		t.Errorf("rendering a %d-token record allocated %d bytes (%d per token)", n, a, a/n)
	}
}

func BenchmarkRenderedSample(b *testing.B) {
	for _, n := range []int{100_000, 400_000} {
		r := longRendered(n)
		b.Run(strconv.Itoa(n/1000)+"k", func(b *testing.B) {
			for b.Loop() {
				renderedSample(&Example{}, r)
			}
		})
	}
}
