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
// model): y = W·x + s·B·(A·x), which the device block runs through
// LowRank. The host passes of nn.Adapter are never run.
type testLoRA struct {
	a, b  *nn.Param
	scale float32
}

func (l *testLoRA) Forward(lin *nn.Linear, y, x []float32, n int) {
	panic("testLoRA: no host forward pass")
}

func (l *testLoRA) Backward(lin *nn.Linear, dx, dy, x []float32, n int) {
	panic("testLoRA: no host backward pass")
}

func (l *testLoRA) Params() []*nn.Param                  { return []*nn.Param{l.a, l.b} }
func (l *testLoRA) LowRank() (a, b *nn.Param, s float32) { return l.a, l.b, l.scale }
func (l *testLoRA) DropoutMask() compute.DropoutMask     { return compute.NewDropoutMask(0, 0) }
func (l *testLoRA) DoRAMagnitude() *nn.Param             { return nil }
func (l *testLoRA) DeviceUnsupported(bool) string        { return "" }

// TestDeviceTokenLogProbs: per-token log-probabilities are log-softmax of
// the full forward's logits over the temperature (in float64), and
// BackwardTokens with uneven coefficients gives the reference backend's
// gradients, on the reference and the CPU backend. Gemma 2 divides its
// soft-capped logits by the temperature; a mixture of experts leaves its
// load-balancing loss out of sequence-level losses.
func TestDeviceTokenLogProbs(t *testing.T) {
	for _, shape := range []string{"ref-qwen2", "gemma2", "qwen3_moe"} {
		for _, temp := range []float64{1, 0.7} {
			t.Run(fmt.Sprint(shape, " temperature ", temp), func(t *testing.T) {
				onBackends(t, func(t *testing.T, be compute.Backend) { testDeviceTokenLogProbs(t, be, shape, temp) })
			})
		}
	}
}

// logSoftmaxAt returns log-softmax(logits/temp) at every trained token of b
// and each one's row, in float64.
func logSoftmaxAt(lg []float32, b *Batch, V int, temp float64) ([]float64, []int) {
	var out []float64
	var rows []int
	for r := 0; r < b.B; r++ {
		for p := 0; p+1 < b.T; p++ {
			y := b.Labels[r*b.T+p+1]
			if y == IgnoreIndex {
				continue
			}
			row := lg[(r*b.T+p)*V : (r*b.T+p+1)*V]
			mx := math.Inf(-1)
			for _, v := range row {
				mx = math.Max(mx, float64(v)/temp)
			}
			var s float64
			for _, v := range row {
				s += math.Exp(float64(v)/temp - mx)
			}
			out = append(out, float64(row[y])/temp-mx-math.Log(s))
			rows = append(rows, r)
		}
	}
	return out, rows
}

func testDeviceTokenLogProbs(t *testing.T, be compute.Backend, shape string, temp float64) {
	m := tinyModel(t, shape, 21)
	setTrainable(m)
	b := gradBatch(m.Cfg.Vocab)
	want, rows := logSoftmaxAt(refLogits(t, m, b), b, m.Cfg.Vocab, temp)
	coef := make([]float32, len(want))
	r := rand.New(rand.NewPCG(3, 4))
	for i := range coef {
		coef[i] = float32(r.NormFloat64())
	}
	oracle := newDM(t, m, ref.New(), DeviceOptions{})
	oracle.Temperature = temp
	mustLogProbs(t, oracle, b)
	if err := oracle.BackwardTokens(coef); err != nil {
		t.Fatal(err)
	}
	wantGrad := deviceGrads(t, oracle, m.Params())

	dm := newDM(t, m, be, DeviceOptions{})
	dm.Temperature = temp
	got := mustLogProbs(t, dm, b)
	if len(got) != len(want) {
		t.Fatalf("%d log-probabilities, %d trained tokens", len(got), len(want))
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-5*math.Max(1, math.Abs(want[i])) {
			t.Errorf("token %d: log p %.7g, log-softmax of the logits %.7g", i, got[i], want[i])
		}
	}
	if gr := dm.TokenRows(); len(gr) != len(rows) || !sameInts(gr, rows) {
		t.Errorf("token rows %v, want %v", gr, rows)
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
			t.Errorf("%s: gradient differs from the reference's by %.3g", p.Name, e)
		}
	}
	if err := dm.BackwardTokens(coef); err == nil {
		t.Error("a second BackwardTokens without TokenLogProbs: no error")
	}
}

// TestDeviceWithoutAdapters: with its adapters switched off a LoRA model
// scores as the base model, and with them on as the model with the
// adapters merged into its weights, on the reference and the CPU backend.
func TestDeviceWithoutAdapters(t *testing.T) {
	onBackends(t, testDeviceWithoutAdapters)
}

func testDeviceWithoutAdapters(t *testing.T, be compute.Backend) {
	m := tinyModel(t, "ref-llama", 22)
	b := gradBatch(m.Cfg.Vocab)
	base := refTokenLogProbs(t, m, b, 1)
	merged := tinyModel(t, "ref-llama", 22)
	r := rand.New(rand.NewPCG(5, 6))
	for i, l := range m.Linears() {
		a := &nn.Param{Name: l.Name + ".lora_A", Shape: []int{2, l.In}, Data: randVec32(r, 2*l.In, 0.3)}
		bb := &nn.Param{Name: l.Name + ".lora_B", Shape: []int{l.Out, 2}, Data: randVec32(r, 2*l.Out, 0.3)}
		lr := &testLoRA{a: a, b: bb, scale: 2}
		l.Adapter = lr
		mergeLoRA(merged.Linears()[i].F32().Data, lr, l.In, l.Out)
	}
	adapted := refTokenLogProbs(t, merged, b, 1)
	dm := newDM(t, m, be, DeviceOptions{Inference: true})
	for _, c := range []struct {
		name string
		off  bool
		want []float64
	}{{"adapted", false, adapted}, {"adapters off", true, base}, {"back on", false, adapted}} {
		var restore func()
		if c.off {
			restore = dm.WithoutAdapters()
		}
		got := mustLogProbs(t, dm, b)
		if restore != nil {
			restore()
		}
		var d float64
		for i := range got {
			d = math.Max(d, math.Abs(got[i]-c.want[i]))
		}
		if d > 1e-5 {
			t.Errorf("%s: log p differs from the reference's by %.3g", c.name, d)
		}
	}
	if d := math.Abs(base[0] - adapted[0]); d < 1e-4 {
		t.Fatalf("the adapters change nothing (%.3g): the test proves nothing", d)
	}
}

// mergeLoRA adds s·B·A to the weight w [out, in], in float64.
func mergeLoRA(w []float32, l *testLoRA, in, out int) {
	r := l.a.Shape[0]
	for o := 0; o < out; o++ {
		for j := 0; j < in; j++ {
			var s float64
			for k := 0; k < r; k++ {
				s += float64(l.b.Data[o*r+k]) * float64(l.a.Data[k*in+j])
			}
			w[o*in+j] += float32(float64(l.scale) * s)
		}
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
