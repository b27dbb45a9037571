//go:build !((linux || darwin || freebsd || netbsd) && !android)

package cpu

// BLASAvailable reports whether OpenBLAS was found and loaded; purego cannot
// load it on this platform.
func BLASAvailable() bool { return false }

func blasInfo() string { return "not supported on this platform" }

func blasSgemm(p *gemmProblem, threads int) bool { return false }
