package model

import (
	"math"
	"testing"

	"gotune/compute"
)

// With a temperature, TokenLogProbs are log-softmax of logits/temperature,
// and BackwardTokens is their gradient (finite differences along a random
// direction of each tensor, as TestBackwardTokensFiniteDifference).
func TestTokenLogProbsTemperature(t *testing.T) {
	onBackends(t, testTokenLogProbsTemperature)
}

func testTokenLogProbsTemperature(t *testing.T, be compute.Backend) {
	m := tinyModel(t, "ref-qwen3", 8)
	setTrainable(m)
	b := gradBatch(m.Cfg.Vocab)
	w := newDM(t, m, be, DeviceOptions{})
	const temp = 0.7
	logits := deviceLogits(t, w, b)
	w.Temperature = temp
	lp := mustLogProbs(t, w, b)
	V := m.Cfg.Vocab
	k := 0
	for r := 0; r < b.B; r++ {
		for p := 0; p+1 < b.T; p++ {
			y := b.Labels[r*b.T+p+1]
			if y == IgnoreIndex {
				continue
			}
			row := logits[(r*b.T+p)*V : (r*b.T+p+1)*V]
			mx := math.Inf(-1)
			for _, v := range row {
				mx = math.Max(mx, float64(v)/temp)
			}
			var s float64
			for _, v := range row {
				s += math.Exp(float64(v)/temp - mx)
			}
			want := float64(row[y])/temp - mx - math.Log(s)
			if math.Abs(lp[k]-want) > 1e-4 {
				t.Errorf("token %d: log p %v, want %v", k, lp[k], want)
			}
			k++
		}
	}
	// Gradient of Σ c_i·log p_i with uneven coefficients.
	coef := make([]float32, len(lp))
	for i := range coef {
		coef[i] = float32(math.Sin(float64(i) + 1))
	}
	objective := func() float64 {
		lp := mustLogProbs(t, w, b)
		var s float64
		for i, v := range lp {
			s += float64(coef[i]) * v
		}
		return s
	}
	mustLogProbs(t, w, b)
	if err := w.BackwardTokens(coef); err != nil {
		t.Fatal(err)
	}
	checkDirectional(t, w, m, objective)
}

// checkDirectional compares each parameter's gradient accumulated on w
// with a central difference of f along a deterministic pseudo-random
// direction (the moved weights uploaded to w before each evaluation).
func checkDirectional(t *testing.T, w *DeviceModel, m *Model, f func() float64) {
	t.Helper()
	grads := deviceGrads(t, w, m.Params())
	g := func() float64 { reload(t, w); return f() }
	for pi, p := range m.Params() {
		grad := grads[pi]
		d := make([]float32, len(p.Data))
		var gd, gn, dn, pn float64
		for i := range d {
			d[i] = float32(math.Sin(float64(i*7+pi*13) + 0.5))
			gd += float64(grad[i]) * float64(d[i])
			gn += float64(grad[i]) * float64(grad[i])
			dn += float64(d[i]) * float64(d[i])
			pn += float64(p.Data[i]) * float64(p.Data[i])
		}
		step := 1e-2 * math.Sqrt(pn/dn)
		orig := append([]float32(nil), p.Data...)
		for i := range p.Data {
			p.Data[i] = orig[i] + float32(step)*d[i]
		}
		fp := g()
		for i := range p.Data {
			p.Data[i] = orig[i] - float32(step)*d[i]
		}
		fm := g()
		copy(p.Data, orig)
		reload(t, w)
		fd := (fp - fm) / (2 * step)
		typical := math.Sqrt(gn) * math.Sqrt(dn) / math.Sqrt(float64(len(d)))
		if math.Abs(fd-gd) > 0.01*math.Max(math.Abs(gd), typical) {
			t.Errorf("%s: directional derivative %.6g, finite difference %.6g", p.Name, gd, fd)
		}
	}
}

// TokenEntropies are the entropies of softmax(logits/temperature) at the
// trained tokens, and computing them changes nothing else.
func TestTokenEntropies(t *testing.T) {
	onBackends(t, testTokenEntropies)
}

func testTokenEntropies(t *testing.T, be compute.Backend) {
	m := tinyModel(t, "ref-llama", 4)
	b := gradBatch(m.Cfg.Vocab)
	w := newDM(t, m, be, DeviceOptions{Inference: true})
	logits := deviceLogits(t, w, b)
	const temp = 1.3
	w.Temperature = temp
	plain := mustLogProbs(t, w, b)
	if w.TokenEntropies() != nil {
		t.Fatal("entropies without SetEntropy")
	}
	w.SetEntropy(true)
	lp := mustLogProbs(t, w, b)
	ent := w.TokenEntropies()
	V := m.Cfg.Vocab
	k := 0
	for r := 0; r < b.B; r++ {
		for p := 0; p+1 < b.T; p++ {
			if b.Labels[r*b.T+p+1] == IgnoreIndex {
				continue
			}
			row := logits[(r*b.T+p)*V : (r*b.T+p+1)*V]
			var z float64
			for _, v := range row {
				z += math.Exp(float64(v) / temp)
			}
			var h float64
			for _, v := range row {
				q := math.Exp(float64(v)/temp) / z
				h -= q * math.Log(q)
			}
			if math.Abs(ent[k]-h) > 1e-4*h {
				t.Errorf("token %d: entropy %v, want %v", k, ent[k], h)
			}
			if lp[k] != plain[k] {
				t.Errorf("token %d: log p %v with entropies, %v without", k, lp[k], plain[k])
			}
			k++
		}
	}
	if k != len(ent) {
		t.Fatalf("%d entropies for %d tokens", len(ent), k)
	}
}
