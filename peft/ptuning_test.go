package peft

import (
	"math"
	"math/rand/v2"
	"testing"

	"gotune/nn"
)

// The prompt encoders' gradients (and the LSTM's output and gradients
// against torch) are checked on the device encoder that trains them:
// model's device_peft_encoder_test.go.

// TestLSTMDirections: with the reverse direction's weights equal to the
// forward one's, running the reversed sequence swaps the two halves of
// every step's output; an LSTM's state also really carries across steps.
func TestLSTMDirections(t *testing.T) {
	const T, in, H = 4, 3, 2
	rng := rand.New(rand.NewPCG(1, 1))
	l := newLSTM("lstm", in, H, 1, rng)
	d := &l.layers[0].dir
	for _, pair := range [][2]*nn.Param{{d[0].Wih, d[1].Wih}, {d[0].Whh, d[1].Whh}, {d[0].Bih, d[1].Bih}, {d[0].Bhh, d[1].Bhh}} {
		copy(pair[1].Data, pair[0].Data)
	}
	x := make([]float64, T*in)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	xr := make([]float64, T*in)
	for s := 0; s < T; s++ {
		copy(xr[s*in:(s+1)*in], x[(T-1-s)*in:(T-s)*in])
	}
	a := l.forward(x, T)
	b := l.forward(xr, T)
	for s := 0; s < T; s++ {
		for j := 0; j < H; j++ {
			if math.Abs(a[s*2*H+j]-b[(T-1-s)*2*H+H+j]) > 1e-12 || math.Abs(a[s*2*H+H+j]-b[(T-1-s)*2*H+j]) > 1e-12 {
				t.Fatalf("step %d: output halves do not swap under reversal", s)
			}
		}
	}
	// Changing the first input changes the forward direction's last output.
	x2 := append([]float64(nil), x...)
	x2[0] += 1
	c := l.forward(x2, T)
	if math.Abs(c[(T-1)*2*H]-a[(T-1)*2*H]) < 1e-9 {
		t.Error("the forward direction's state does not carry to the last step")
	}
}
