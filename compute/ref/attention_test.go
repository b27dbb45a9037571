package ref

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gotune/compute"
)

// TestAttnFusedMatchesUnfused checks the reference fused attention, the
// oracle of the backends' kernels, against the unfused operations the device
// block runs without it (GemmBatched, AttnSoftmaxWindowed and its backward,
// over the whole score matrix): the same values, bf16 rounding included.
func TestAttnFusedMatchesUnfused(t *testing.T) {
	for _, c := range []struct {
		b, h, kvh, t, off, tmax, hd, window int
		softcap                             float32
		masks                               bool
	}{
		{b: 2, h: 2, kvh: 2, t: 5, hd: 4},
		{b: 2, h: 6, kvh: 2, t: 7, hd: 8, masks: true},
		{b: 1, h: 3, kvh: 1, t: 4, off: 3, tmax: 9, hd: 8, masks: true},
		{b: 2, h: 4, kvh: 2, t: 9, hd: 4, window: 3, softcap: 2, masks: true},
	} {
		for _, dt := range []compute.DType{compute.F32, compute.BF16} {
			t.Run(fmt.Sprintf("%d_%d_%d_%d_%v", c.h, c.kvh, c.t, c.off, dt), func(t *testing.T) {
				be := New()
				r := rand.New(rand.NewPCG(uint64(c.t), uint64(c.h)))
				tk := c.off + c.t
				tmax := max(c.tmax, tk)
				g, hd, batch := c.h/c.kvh, c.hd, c.b*c.kvh
				up := func(dt compute.DType, n int, scale float64) compute.Tensor {
					v := make([]float32, n)
					for i := range v {
						v[i] = float32(scale * (2*r.Float64() - 1))
					}
					x, _ := be.Alloc(dt, n)
					be.Upload(x, v)
					return x
				}
				alloc := func(dt compute.DType, n int) compute.Tensor { x, _ := be.Alloc(dt, n); return x }
				nq, nk := c.b*c.h*c.t*hd, c.b*c.kvh*tmax*hd
				q, k, v, do := up(dt, nq, 2), up(dt, nk, 2), up(dt, nk, 1), up(dt, nq, 1)
				dsum := up(compute.F32, c.b*c.h*c.t, 0.5)
				p := compute.AttnParams{B: c.b, H: c.h, KVH: c.kvh, T: c.t, TK: tk, TMax: tmax, HD: hd, Off: c.off,
					Window: c.window, SoftCap: c.softcap, Scale: 0.3}
				if c.masks {
					km, seg := make([]int32, c.b*tk), make([]int32, c.b*c.t)
					for i := range km {
						km[i] = int32(min(1, i%5))
					}
					for i := range seg {
						seg[i] = int32(i % c.t / 3)
					}
					p.KeyMask = alloc(compute.I32, len(km))
					be.UploadInt(p.KeyMask, km)
					if c.off == 0 {
						p.QSeg = alloc(compute.I32, len(seg))
						be.UploadInt(p.QSeg, seg)
						p.KSeg = p.QSeg
					}
				}

				// Fused.
				o, lse := alloc(dt, nq), alloc(compute.F32, c.b*c.h*c.t)
				dq, dk, dv := alloc(dt, nq), alloc(dt, nk), alloc(dt, nk)
				be.AttnForward(o, lse, q, k, v, p)
				be.AttnBackward(dq, dk, dv, do, q, k, v, lse, dsum, p)

				// Unfused, as model.DeviceModel runs it.
				s, sp := alloc(compute.F32, c.b*c.h*c.t*tk), alloc(dt, c.b*c.h*c.t*tk)
				lse2, o2 := alloc(compute.F32, c.b*c.h*c.t), alloc(dt, nq)
				be.GemmBatched(false, true, g*c.t, tk, hd, p.Scale, q, hd, g*c.t*hd, k, hd, tmax*hd, 0, s, tk, g*c.t*tk, batch)
				be.AttnSoftmaxWindowed(sp, lse2, s, p.KeyMask, p.QSeg, p.KSeg, c.b, c.h, c.t, tk, c.off, c.window, c.softcap)
				be.GemmBatched(false, false, g*c.t, hd, tk, 1, sp, tk, g*c.t*tk, v, hd, tmax*hd, 0, o2, hd, g*c.t*hd, batch)
				dp, ds := alloc(compute.F32, c.b*c.h*c.t*tk), alloc(dt, c.b*c.h*c.t*tk)
				be.GemmBatched(false, true, g*c.t, tk, hd, 1, do, hd, g*c.t*hd, v, hd, tmax*hd, 0, dp, tk, g*c.t*tk, batch)
				be.AttnSoftmaxWindowedBackward(sp, ds, s, dp, lse2, dsum, p.KeyMask, p.QSeg, p.KSeg, c.b, c.h, c.t, tk, c.off, c.window, c.softcap)
				dq2, dk2, dv2 := alloc(dt, nq), alloc(dt, nk), alloc(dt, nk)
				be.GemmBatched(true, false, tk, hd, g*c.t, 1, sp, tk, g*c.t*tk, do, hd, g*c.t*hd, 0, dv2, hd, tmax*hd, batch)
				be.GemmBatched(false, false, g*c.t, hd, tk, p.Scale, ds, tk, g*c.t*tk, k, hd, tmax*hd, 0, dq2, hd, g*c.t*hd, batch)
				be.GemmBatched(true, false, tk, hd, g*c.t, p.Scale, ds, tk, g*c.t*tk, q, hd, g*c.t*hd, 0, dk2, hd, tmax*hd, batch)

				tol := 1e-6
				if dt == compute.BF16 {
					tol = 2e-3 // a last-bit difference can round to the next bf16
				}
				for _, x := range []struct {
					name      string
					got, want compute.Tensor
				}{{"o", o, o2}, {"lse", lse, lse2}, {"dq", dq, dq2}, {"dk", dk, dk2}, {"dv", dv, dv2}} {
					a, b := make([]float32, x.got.Len()), make([]float32, x.want.Len())
					be.Download(a, x.got)
					be.Download(b, x.want)
					var worst, scale float64
					for i := range a {
						scale = max(scale, math.Abs(float64(b[i])))
						if a[i] != b[i] {
							worst = max(worst, math.Abs(float64(a[i]-b[i])))
						}
					}
					if worst > tol*scale || scale == 0 && x.name != "lse" {
						t.Errorf("%s: max deviation %.3g of scale %.3g", x.name, worst, scale)
					}
				}
			})
		}
	}
}
