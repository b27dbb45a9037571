package cpu

import (
	"sync/atomic"
	"testing"
	"time"
)

// Every part runs exactly once, whether the workers are spinning (calls back
// to back), parked (calls further apart than spinFor) or busy with an outer
// job (nested calls start more workers).
func TestRunWorkers(t *testing.T) {
	for _, gap := range []time.Duration{0, 3 * spinFor} {
		for round := range 50 {
			n := 1 + round%5
			var hits [5]atomic.Int32
			RunWorkers(n, func(w int) {
				hits[w].Add(1)
				if w == 1 {
					var inner atomic.Int32
					RunWorkers(3, func(int) { inner.Add(1) })
					if inner.Load() != 3 {
						t.Errorf("nested RunWorkers ran %d parts, want 3", inner.Load())
					}
				}
			})
			for w := range hits {
				want := int32(0)
				if w < n {
					want = 1
				}
				if got := hits[w].Load(); got != want {
					t.Fatalf("gap %v, n=%d: part %d ran %d times, want %d", gap, n, w, got, want)
				}
			}
			time.Sleep(gap)
		}
	}
}

// Parts really run at the same time: two parts that wait for each other
// finish instead of deadlocking.
func TestRunWorkersConcurrent(t *testing.T) {
	var arrived atomic.Int32
	done := make(chan struct{})
	go func() {
		RunWorkers(2, func(int) {
			arrived.Add(1)
			for arrived.Load() < 2 {
				time.Sleep(time.Microsecond)
			}
		})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunWorkers(2) did not run its parts concurrently")
	}
}

func TestParallelCoversRange(t *testing.T) {
	for _, n := range []int{0, 1, 7, 100, 1001} {
		seen := make([]atomic.Int32, n)
		Parallel(n, 3, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				seen[i].Add(1)
			}
		})
		for i := range seen {
			if seen[i].Load() != 1 {
				t.Fatalf("n=%d: item %d covered %d times", n, i, seen[i].Load())
			}
		}
	}
}
