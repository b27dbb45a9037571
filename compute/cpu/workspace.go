package cpu

// GemmWorkspaceFloats is the size, in floats, of the packing buffers one
// worker of the built-in kernel keeps for products whose widest n is n (the
// planner counts them; they live in the Go heap, unlike OpenBLAS's).
func GemmWorkspaceFloats(n int) int {
	k := bestKernel()
	nb := min(k.nc, (n+k.nr-1)/k.nr*k.nr)
	return k.mc*k.kc + k.kc*nb
}
