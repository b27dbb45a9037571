package parallel

import (
	"runtime"
	"sync/atomic"
	"testing"
)

func TestForCoversEachIndexOnce(t *testing.T) {
	for _, procs := range []int{1, 2, 5} {
		old := runtime.GOMAXPROCS(procs)
		for _, c := range []struct{ n, min int }{{0, 1}, {1, 1}, {7, 1}, {100, 3}, {100, 200}, {1 << 16, 1 << 10}} {
			seen := make([]int32, c.n)
			var calls atomic.Int32
			For(c.n, c.min, func(lo, hi int) {
				calls.Add(1)
				if hi-lo < min(c.min, c.n) && hi != c.n {
					t.Errorf("procs %d n %d: chunk [%d,%d) below the minimum %d", procs, c.n, lo, hi, c.min)
				}
				for i := lo; i < hi; i++ {
					atomic.AddInt32(&seen[i], 1)
				}
			})
			for i, s := range seen {
				if s != 1 {
					t.Fatalf("procs %d n %d min %d: index %d visited %d times", procs, c.n, c.min, i, s)
				}
			}
			if int(calls.Load()) > procs {
				t.Errorf("procs %d n %d: %d chunks, more than the cores", procs, c.n, calls.Load())
			}
		}
		runtime.GOMAXPROCS(old)
	}
}
