package compute

// GemmJob is one product of GemmGroup: C = Σ Terms + Beta·C, each term an
// M×N product stored as for Gemm.
type GemmJob struct {
	M, N  int
	Terms []GemmTerm
	Beta  float32
	C     Tensor
	LDC   int
}

// Work is the job's multiply-adds, for scheduling.
func (j GemmJob) Work() int {
	w := 0
	for _, t := range j.Terms {
		w += j.M * j.N * t.K
	}
	return w
}
