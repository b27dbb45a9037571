// Package parallel splits host-side loops that are not tensor arithmetic of
// a step (quantizing weights as they load, random initialisation,
// expanding weights for an export) over the cores. The arithmetic of a
// training step runs on a compute backend, which schedules its own work.
package parallel

import (
	"runtime"
	"sync"
)

// For splits [0,n) into contiguous chunks of at least minChunk items, one
// per core at most, and runs fn on each; it returns when all are done.
// The chunks depend only on n, minChunk and GOMAXPROCS.
func For(n, minChunk int, fn func(lo, hi int)) {
	minChunk = max(minChunk, 1)
	workers := min(runtime.GOMAXPROCS(0), (n+minChunk-1)/minChunk)
	if workers <= 1 {
		fn(0, n)
		return
	}
	chunk := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := chunk; lo < n; lo += chunk {
		wg.Add(1)
		go func(lo int) {
			defer wg.Done()
			fn(lo, min(lo+chunk, n))
		}(lo)
	}
	fn(0, min(chunk, n))
	wg.Wait()
}
