// Package cpu holds the CPU compute kernels: matrix multiplication (OpenBLAS
// when present, otherwise built-in kernels) and the helpers that spread work
// over the available cores.
package cpu

import (
	"runtime"
	"sync"
)

// Sgemm computes C = alpha·op(A)·op(B) + beta·C on row-major float32 matrices,
// where op(X) is X or Xᵀ. op(A) is m×k, op(B) is k×n and C is m×n; lda, ldb and
// ldc are the row strides of the matrices as stored.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	Parallel(m, 1+16384/(n*k+1), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			crow := c[i*ldc : i*ldc+n]
			if beta == 0 {
				clear(crow)
			} else if beta != 1 {
				for j := range crow {
					crow[j] *= beta
				}
			}
			for p := 0; p < k; p++ {
				var av float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				av *= alpha
				if av == 0 {
					continue
				}
				if transB {
					for j := range crow {
						crow[j] += av * b[j*ldb+p]
					}
				} else {
					brow := b[p*ldb : p*ldb+n]
					for j, bv := range brow {
						crow[j] += av * bv
					}
				}
			}
		}
	})
}

// Threads is the number of worker goroutines kernels use.
func Threads() int { return runtime.GOMAXPROCS(0) }

// Parallel splits [0,n) into contiguous chunks of at least minChunk items and
// runs fn on each, using up to Threads() goroutines. It returns when all are done.
func Parallel(n, minChunk int, fn func(lo, hi int)) {
	if minChunk < 1 {
		minChunk = 1
	}
	workers := Threads()
	if maxW := (n + minChunk - 1) / minChunk; workers > maxW {
		workers = maxW
	}
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		if hi == n {
			fn(lo, hi)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}
