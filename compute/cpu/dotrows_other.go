//go:build !amd64 || purego

package cpu

func dotRowsAVX2(a, b *float32, ldb, n, rows int, out *float32) { panic("unreachable") }

func dotRowsBF16AVX2(a *float32, b *uint16, ldb, n, rows int, out *float32) { panic("unreachable") }
