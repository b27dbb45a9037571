//go:build amd64 && !purego

package cpu

//go:noescape
func dotRowsAVX2(a, b *float32, ldb, n, rows int, out *float32)

//go:noescape
func dotRowsBF16AVX2(a *float32, b *uint16, ldb, n, rows int, out *float32)
