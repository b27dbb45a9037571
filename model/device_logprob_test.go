package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
	"gotune/compute/ref"
	"gotune/nn"
)

// testLoRA is a minimal LoRA for this package's tests (peft sits above
// model): y = W·x + s·B·(A·x), run by the device path through LowRank.
type testLoRA struct {
	a, b  *nn.Param
	scale float32
	h     []float32
}

func (l *testLoRA) Forward(lin *nn.Linear, y, x []float32, n int) {
	lin.BaseForward(y, x, n)
	r := l.a.Shape[0]
	l.h = make([]float32, n*r)
	for i := 0; i < n; i++ {
		for k := 0; k < r; k++ {
			var s float32
			for j := 0; j < lin.In; j++ {
				s += x[i*lin.In+j] * l.a.Data[k*lin.In+j]
			}
			l.h[i*r+k] = s
		}
		for o := 0; o < lin.Out; o++ {
			var s float32
			for k := 0; k < r; k++ {
				s += l.h[i*r+k] * l.b.Data[o*r+k]
			}
			y[i*lin.Out+o] += l.scale * s
		}
	}
}

func (l *testLoRA) Backward(lin *nn.Linear, dx, dy, x []float32, n int) {
	panic("testLoRA: forward only")
}

func (l *testLoRA) Params() []*nn.Param                  { return []*nn.Param{l.a, l.b} }
func (l *testLoRA) LowRank() (a, b *nn.Param, s float32) { return l.a, l.b, l.scale }
func (l *testLoRA) DropoutMask() compute.DropoutMask     { return compute.NewDropoutMask(0, 0) }
func (l *testLoRA) DoRAMagnitude() *nn.Param             { return nil }
func (l *testLoRA) DeviceUnsupported(bool) string        { return "" }

// TestDeviceTokenLogProbs: per-token log-probabilities on the device equal
// the CPU workspace's, BackwardTokens with uneven coefficients gives the
// CPU's gradients, and WithoutAdapters scores the base model on both.
// Gemma 2 divides its soft-capped logits by the temperature; a mixture of
// experts leaves its load-balancing loss out of sequence-level losses.
func TestDeviceTokenLogProbs(t *testing.T) {
	for _, shape := range []string{"ref-qwen2", "gemma2", "qwen3_moe"} {
		for _, temp := range []float64{1, 0.7} {
			t.Run(fmt.Sprint(shape, " temperature ", temp), func(t *testing.T) { testDeviceTokenLogProbs(t, shape, temp) })
		}
	}
}

func testDeviceTokenLogProbs(t *testing.T, shape string, temp float64) {
	m := tinyModel(t, shape, 21)
	setTrainable(m)
	b := gradBatch(m.Cfg.Vocab)
	ws := m.NewWorkspace()
	ws.Temperature = temp
	want := append([]float64(nil), ws.TokenLogProbs(b)...)
	rows := append([]int(nil), ws.TokenRows()...)
	coef := make([]float32, len(want))
	r := rand.New(rand.NewPCG(3, 4))
	for i := range coef {
		coef[i] = float32(r.NormFloat64())
	}
	ws.BackwardTokens(coef)
	wantGrad := snapshotGrads(m)

	dm, err := NewDeviceModel(m, ref.New(), DeviceOptions{Compute: compute.F32})
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	dm.Temperature = temp
	got, err := dm.TokenLogProbs(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d log-probabilities, CPU %d", len(got), len(want))
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-5*math.Max(1, math.Abs(want[i])) {
			t.Errorf("token %d: log p %.7g, CPU %.7g", i, got[i], want[i])
		}
	}
	if gr := dm.TokenRows(); len(gr) != len(rows) || !sameInts(gr, rows) {
		t.Errorf("token rows %v, CPU %v", gr, rows)
	}
	if err := dm.BackwardTokens(coef); err != nil {
		t.Fatal(err)
	}
	for i, p := range m.Params() {
		g, err := dm.Grad(p)
		if err != nil {
			t.Fatal(err)
		}
		if e := relDiff(g, wantGrad[i]); e > 1e-4 {
			t.Errorf("%s: gradient differs from the CPU's by %.3g", p.Name, e)
		}
	}
	if err := dm.BackwardTokens(coef); err == nil {
		t.Error("a second BackwardTokens without TokenLogProbs: no error")
	}
}

func TestDeviceWithoutAdapters(t *testing.T) {
	m := tinyModel(t, "ref-llama", 22)
	b := gradBatch(m.Cfg.Vocab)
	ws := m.NewWorkspace()
	base := append([]float64(nil), ws.TokenLogProbs(b)...)
	r := rand.New(rand.NewPCG(5, 6))
	for _, l := range m.Linears() {
		a := &nn.Param{Name: l.Name + ".lora_A", Shape: []int{2, l.In}, Data: randVec32(r, 2*l.In, 0.3)}
		bb := &nn.Param{Name: l.Name + ".lora_B", Shape: []int{l.Out, 2}, Data: randVec32(r, 2*l.Out, 0.3)}
		l.Adapter = &testLoRA{a: a, b: bb, scale: 2}
	}
	adapted := append([]float64(nil), ws.TokenLogProbs(b)...)
	dm, err := NewDeviceModel(m, ref.New(), DeviceOptions{Compute: compute.F32, Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	for _, c := range []struct {
		name string
		off  bool
		want []float64
	}{{"adapted", false, adapted}, {"adapters off", true, base}, {"back on", false, adapted}} {
		var restore func()
		if c.off {
			restore = dm.WithoutAdapters()
		}
		got, err := dm.TokenLogProbs(b)
		if err != nil {
			t.Fatal(err)
		}
		if restore != nil {
			restore()
		}
		var d float64
		for i := range got {
			d = math.Max(d, math.Abs(got[i]-c.want[i]))
		}
		if d > 1e-5 {
			t.Errorf("%s: log p differs from the CPU's by %.3g", c.name, d)
		}
	}
	if d := math.Abs(base[0] - adapted[0]); d < 1e-4 {
		t.Fatalf("the adapters change nothing (%.3g): the test proves nothing", d)
	}
}

func randVec32(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(scale * r.NormFloat64())
	}
	return v
}

func sameInts(a, b []int) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
