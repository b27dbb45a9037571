package cpu

import (
	"runtime"
	"sync"
	"time"
)

// PeakGFLOPS measures the float32 FMA throughput of this machine on threads
// goroutines (each on its own OS thread) for about d, with the vector width
// the matrix kernel uses: the ceiling any product here can reach, right now.
// Shared and virtual machines change it from one minute to the next, so
// benchmarks measure it beside their own figures rather than trusting a
// constant. It returns 0 where no assembly kernel exists.
func PeakGFLOPS(threads int, d time.Duration) float64 {
	loop, flopsPerRound := archFMALoop(bestKernel().nr)
	if loop == nil || threads < 1 {
		return 0
	}
	const rounds = 1 << 20
	var wg sync.WaitGroup
	total := make([]float64, threads)
	for t := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			start := time.Now()
			n := 0
			for time.Since(start) < d {
				loop(rounds)
				n++
			}
			total[t] = float64(n) * rounds * flopsPerRound / time.Since(start).Seconds() / 1e9
		}()
	}
	wg.Wait()
	var sum float64
	for _, v := range total {
		sum += v
	}
	return sum
}
