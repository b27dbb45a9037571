package nn

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// Prepacking changes where W's panels come from, not the arithmetic: output
// and input gradient must match the unpacked layer bit for bit, for row
// counts on either side of the kernels' tile sizes and thread split.
func TestLinearPrepackMatches(t *testing.T) {
	for _, s := range []struct{ in, out, n int }{
		{576, 192, 256}, {64, 96, 1}, {33, 70, 7}, {100, 37, 49}, {48, 1536, 130},
	} {
		t.Run(fmt.Sprintf("in%d_out%d_n%d", s.in, s.out, s.n), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(s.in), uint64(s.n)))
			fill := func(n int) []float32 {
				v := make([]float32, n)
				for i := range v {
					v[i] = float32(r.NormFloat64())
				}
				return v
			}
			w := NewParam("w", s.out, s.in)
			copy(w.Data, fill(s.out*s.in))
			l := &Linear{Name: "l", In: s.in, Out: s.out, W: w}
			x, dy, dx0 := fill(s.n*s.in), fill(s.n*s.out), fill(s.n*s.in)

			run := func() (y, dx []float32) {
				y = make([]float32, s.n*s.out)
				dx = append([]float32(nil), dx0...) // InputGrad accumulates
				l.Forward(y, x, s.n)
				l.Backward(dx, dy, x, s.n)
				return y, dx
			}
			wantY, wantDX := run()
			l.Prepack()
			if l.PackedT == nil || l.Packed == nil {
				t.Fatal("Prepack built no packed weight for a frozen float32 W")
			}
			if got := l.PackedBytes(); got < 8*s.in*s.out {
				t.Errorf("PackedBytes() = %d, want at least %d", got, 8*s.in*s.out)
			}
			gotY, gotDX := run()
			for i := range wantY {
				if gotY[i] != wantY[i] {
					t.Fatalf("y[%d] = %g prepacked, %g not", i, gotY[i], wantY[i])
				}
			}
			for i := range wantDX {
				if gotDX[i] != wantDX[i] {
					t.Fatalf("dx[%d] = %g prepacked, %g not", i, gotDX[i], wantDX[i])
				}
			}
			l.DropPacked()
			if l.PackedT != nil || l.Packed != nil || l.PackedBytes() != 0 {
				t.Error("DropPacked left packed weights")
			}
		})
	}
}

func TestLinearPrepackSkips(t *testing.T) {
	trainable := NewParam("w", 4, 3)
	trainable.SetTrainable(true)
	for name, l := range map[string]*Linear{
		"trainable": {In: 3, Out: 4, W: trainable},
		"bf16":      {In: 3, Out: 4, W: NewParam("w", 4, 3), WBF16: make([]uint16, 12)},
		"no weight": {In: 3, Out: 4},
	} {
		l.Prepack()
		if l.PackedT != nil || l.Packed != nil {
			t.Errorf("%s: Prepack packed a weight it must skip", name)
		}
	}
}
