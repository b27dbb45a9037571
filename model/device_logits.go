package model

import (
	"gotune/compute"
)

// Logits runs the forward pass and returns the logits of every position,
// [B·T, Vocab] with T counting an attached prompt method's virtual tokens,
// with the final soft cap applied and no temperature. The
// training step never forms them all (its head keeps to the labelled rows);
// the parity checks compare them with the reference's whole matrix. The
// result is a new slice.
func (dm *DeviceModel) Logits(b *Batch) ([]float32, error) {
	b, err := dm.withPrompt(b)
	if err != nil {
		return nil, err
	}
	if err := dm.forward(b); err != nil {
		return nil, err
	}
	c := dm.cfg
	n, h, V := b.B*b.T, c.Hidden, c.Vocab
	out := make([]float32, n*V)
	// Chunks bound the device's logits buffer as the training head does.
	chunk := dm.headChunk(V, n)
	lg := dm.buf("logits", compute.F32, chunk*V)
	if err := dm.err(); err != nil {
		return nil, err
	}
	for r0 := 0; r0 < n; r0 += chunk {
		m := min(chunk, n-r0)
		l := lg.Slice(0, m*V)
		dm.be.Gemm(false, true, m, V, h, 1, dm.xf.Slice(r0*h, m*h), h, dm.head.w, h, 0, l, V)
		if sc := float32(c.FinalSoftcap); sc != 0 {
			dm.be.SoftCap(l, l, sc)
		}
		if err := dm.be.Download(out[r0*V:(r0+m)*V], l); err != nil {
			return nil, err
		}
	}
	return out, dm.err()
}
