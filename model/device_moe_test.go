package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
	"gotune/compute/cpu/cputest"
	"gotune/compute/ref"
	"gotune/model/family"
)

// TestDeviceMoERouteIsCPURoute: the backend's routing (MoERoute) decides
// as the CPU trainer's route does, bit for bit in f32: the same experts in
// the same order, the same weights and probabilities, the same slots per
// expert in token order, and load-balancing statistics that sum to
// route's — on tokens with tied experts, a mask, and with and without
// normalised weights.
func TestDeviceMoERouteIsCPURoute(t *testing.T) {
	for _, be := range []compute.Backend{cputest.Open(), ref.New()} {
		for _, norm := range []bool{true, false} {
			c := &Config{Traits: family.Traits{Experts: 6, TopK: 2, NormTopK: norm}}
			E, K, n := c.Experts, c.TopK, 50
			r := rand.New(rand.NewPCG(5, 6))
			ma := &moeActs{logits: make([]float32, n*E)}
			for i := range ma.logits {
				ma.logits[i] = float32(r.NormFloat64() * 2)
			}
			for e := 0; e < E; e++ {
				ma.logits[3*E+e] = 1.5 // every expert tied
			}
			ma.logits[7*E+2], ma.logits[7*E+4] = 8, 8 // two tied best
			mask := make([]int32, n)
			for i := range mask {
				mask[i] = int32(r.IntN(3) % 2)
			}
			var stats auxStats
			stats.reset(E)
			route(c, ma, n, mask, &stats)

			alloc := func(dt compute.DType, size int) compute.Tensor {
				x, err := be.Alloc(dt, size)
				if err != nil {
					t.Fatal(err)
				}
				return x
			}
			probs, sel, wts := alloc(compute.F32, n*E), alloc(compute.I32, n*K), alloc(compute.F32, n*K)
			rows, rowWts, pos := alloc(compute.I32, n*K), alloc(compute.F32, n*K), alloc(compute.I32, n*K)
			offs, st, logits, mk := alloc(compute.F32, E+1), alloc(compute.F32, 3*E), alloc(compute.F32, n*E), alloc(compute.I32, n)
			be.Upload(logits, ma.logits)
			be.UploadInt(mk, mask)
			be.MoERoute(probs, sel, wts, rows, rowWts, pos, offs, st, logits, mk, n, E, K, norm)
			get := func(x compute.Tensor) []float32 {
				out := make([]float32, x.Len())
				if err := be.Download(out, x); err != nil {
					t.Fatal(err)
				}
				return out
			}
			gp, gs, gw, gr, grw, goff, gst := get(probs), get(sel), get(wts), get(rows), get(rowWts), get(offs), get(st)
			for i, v := range ma.probs {
				if math.Float32bits(gp[i]) != math.Float32bits(v) {
					t.Fatalf("%s: probability %d is %v, route's %v", be.Name(), i, gp[i], v)
				}
			}
			for i, e := range ma.sel {
				if int32(gs[i]) != e || math.Float32bits(gw[i]) != math.Float32bits(ma.wts[i]) {
					t.Fatalf("%s: slot %d: expert %v weight %v, route's %d %v", be.Name(), i, gs[i], gw[i], e, ma.wts[i])
				}
			}
			for e, slots := range ma.slots {
				o := int(goff[e])
				if int(goff[e+1])-o != len(slots) {
					t.Fatalf("%s: expert %d has %v rows, route gives it %d", be.Name(), e, goff[e+1]-goff[e], len(slots))
				}
				for i, s := range slots {
					if int(gr[o+i]) != int(s)/K || grw[o+i] != ma.wts[s] {
						t.Fatalf("%s: expert %d row %d: token %v, route's %d", be.Name(), e, i, gr[o+i], int(s)/K)
					}
				}
			}
			for e := 0; e < E; e++ {
				if float64(gst[e]) != stats.chosen[e] {
					t.Errorf("%s: expert %d chosen %v times, route counts %g", be.Name(), e, gst[e], stats.chosen[e])
				}
				if p := float64(gst[E+e]) + float64(gst[2*E+e]); math.Abs(p-stats.prob[e]) > 1e-12 {
					t.Errorf("%s: expert %d probability sum %.15g, route's %.15g", be.Name(), e, p, stats.prob[e])
				}
			}
		}
	}
}
