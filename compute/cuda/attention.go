//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"

	"gotune/compute"
)

// Fused attention (compute.FusedAttention) on the GPU: the FlashAttention-2
// kernels of kernels.cu (attn_fwd, attn_bwd_q, attn_bwd_kv), one block of
// 128 threads per 32 queries (forward, dq) or 32 keys (dk, dv), walking only
// the 32-wide tiles of keys (queries) the block may see by position. The
// backward pass is two kernels rather than one with atomic adds into dq, so
// that gradients do not depend on the order blocks finish in. Every field of
// compute.AttnParams is handled by every kernel, in f32 and bf16, for heads
// of 1 to 256 (kernels for up to 64, 128 and 256). They are checked against
// the reference backend on a GPU (TestGPUFusedAttention) and, without one,
// compiled as C++ and run on the CPU (TestKernelsEmulatedAttention).

// attnMaxHead is the largest head the kernels hold (eight chunks of 32 per
// row of accumulators).
const attnMaxHead = 256

// attnWidth is the kernels' head size class for hd: 64, 128 or 256.
func attnWidth(hd int) int {
	switch {
	case hd <= 64:
		return 64
	case hd <= 128:
		return 128
	}
	return 256
}

// attnKernels are the fused attention kernels, for kernelNames.
func attnKernels() []string {
	var out []string
	for _, w := range []int{64, 128, 256} {
		for _, base := range []string{"attn_fwd", "attn_bwd_q", "attn_bwd_kv"} {
			out = append(out, fmt.Sprintf("%s%d_f32", base, w), fmt.Sprintf("%s%d_bf16", base, w))
		}
	}
	return out
}

// AttnPolicy is where a Device runs attention fused (Device.Attn).
type AttnPolicy int

const (
	// AttnFusedLong, the default, runs fused the problems whose unfused
	// score matrices would be large: a sequence's H·T·TK scores at least
	// compute.FusedLongScores. The kernels run on the CUDA cores, not the tensor
	// cores the unfused products use, so below that the unfused path is
	// expected to be faster (BenchmarkGPUAttn measures both), and its
	// memory is bounded anyway by the block's chunks of sequences.
	AttnFusedLong AttnPolicy = iota
	// AttnFusedAlways runs every problem the kernels can fused.
	AttnFusedAlways
	// AttnFusedNever declines every problem.
	AttnFusedNever
)

// attnRuns reports whether the kernels run p: heads of 1 to 256 (eight
// chunks of 32 per row of accumulators) and a grid's second dimension of
// B·H blocks (at most 65535).
func attnRuns(p compute.AttnParams) bool {
	return p.HD >= 1 && p.HD <= attnMaxHead && p.KVH > 0 && p.H%p.KVH == 0 &&
		p.B*p.H <= 65535 && p.T >= 0 && p.TK >= 0 && p.TK <= p.TMax && p.Off >= 0
}

// AttnFusedFor implements compute.FusedAttention: the problems the kernels
// run that the device's policy (Device.Attn) sends to them.
func (d *Device) AttnFusedFor(p compute.AttnParams) bool {
	if !attnRuns(p) {
		return false
	}
	switch d.Attn {
	case AttnFusedAlways:
		return true
	case AttnFusedNever:
		return false
	}
	return int64(p.H)*int64(p.T)*int64(p.TK) >= compute.FusedLongScores
}

// attnCheck reports a problem the kernels do not run or whose tensors do not
// hold its shape (a caller's error, returned as the backend's failure rather
// than a kernel reading past an allocation).
func (d *Device) attnCheck(p compute.AttnParams, lse compute.Tensor, qs, kvs, f32s []compute.Tensor) error {
	if !attnRuns(p) {
		return fmt.Errorf("cuda: fused attention of %d heads over %d key/value heads of %d, %d of %d keys, offset %d, batch %d",
			p.H, p.KVH, p.HD, p.TK, p.TMax, p.Off, p.B)
	}
	dt := dev(qs[0]).dt
	if dt != compute.F32 && dt != compute.BF16 {
		return fmt.Errorf("cuda: fused attention of %v tensors", dt)
	}
	nq, nkv, nr := p.B*p.H*p.T*p.HD, p.B*p.KVH*p.TMax*p.HD, p.B*p.H*p.T
	for _, x := range []struct {
		ts []compute.Tensor
		n  int
		dt compute.DType
	}{{qs, nq, dt}, {kvs, nkv, dt}, {append(f32s, lse), nr, compute.F32}} {
		for _, t := range x.ts {
			if v := dev(t); v.dt != x.dt || v.n < x.n {
				return fmt.Errorf("cuda: fused attention: a tensor of %d %v where %d %v are needed", v.n, v.dt, x.n, x.dt)
			}
		}
	}
	for _, x := range []struct {
		t compute.Tensor
		n int
	}{{p.KeyMask, p.B * p.TK}, {p.QSeg, p.B * p.T}, {p.KSeg, p.B * p.TK}} {
		if x.t == nil {
			continue
		}
		if v := dev(x.t); v.dt != compute.I32 || v.n < x.n {
			return fmt.Errorf("cuda: fused attention: a mask of %d %v where %d I32 are needed", v.n, v.dt, x.n)
		}
	}
	if (p.QSeg == nil) != (p.KSeg == nil) {
		return fmt.Errorf("cuda: fused attention: query segments without key segments or the reverse")
	}
	return nil
}

// attnShape is the kernels' trailing arguments.
func attnShape(p compute.AttnParams) []arg {
	return []arg{ia(p.H), ia(p.KVH), ia(p.T), ia(p.TK), ia(p.TMax), ia(p.HD), ia(p.Off), ia(p.Window), fa(p.Scale), fa(p.SoftCap)}
}

// attnBlock is the kernels' block: four warps.
var attnBlock = [3]int{128, 1, 1}

// attnTiles is the number of 32-wide tiles of n.
func attnTiles(n int) int { return (n + 31) / 32 }

// AttnForward implements compute.FusedAttention.
func (d *Device) AttnForward(o, lse, q, k, v compute.Tensor, p compute.AttnParams) {
	if err := d.attnCheck(p, lse, []compute.Tensor{o, q}, []compute.Tensor{k, v}, nil); err != nil {
		d.fail(err)
		return
	}
	if p.B*p.H*p.T == 0 {
		return
	}
	name := fmt.Sprintf("attn_fwd%d%s", attnWidth(p.HD), suffix(q.DType()))
	args := append([]arg{pa(o), pa(lse), pa(q), pa(k), pa(v), pa(p.KeyMask), pa(p.QSeg), pa(p.KSeg)}, attnShape(p)...)
	d.launch(name, [3]int{attnTiles(p.T), p.B * p.H, 1}, attnBlock, 0, args...)
}

// AttnBackward implements compute.FusedAttention: dq from one kernel over
// query tiles, dk and dv from one over key tiles (summing the G query heads
// of a key/value head in the block, so no two blocks write one row).
func (d *Device) AttnBackward(dq, dk, dv, do, q, k, v, lse, dsum compute.Tensor, p compute.AttnParams) {
	if err := d.attnCheck(p, lse, []compute.Tensor{dq, do, q}, []compute.Tensor{dk, dv, k, v}, []compute.Tensor{dsum}); err != nil {
		d.fail(err)
		return
	}
	w, sfx := attnWidth(p.HD), suffix(q.DType())
	masks := []arg{pa(p.KeyMask), pa(p.QSeg), pa(p.KSeg)}
	if p.B*p.H*p.T > 0 {
		args := append([]arg{pa(dq), pa(do), pa(q), pa(k), pa(v), pa(lse), pa(dsum)}, masks...)
		d.launch(fmt.Sprintf("attn_bwd_q%d%s", w, sfx), [3]int{attnTiles(p.T), p.B * p.H, 1}, attnBlock, 0, append(args, attnShape(p)...)...)
	}
	if p.B*p.KVH*p.TK > 0 {
		args := append([]arg{pa(dk), pa(dv), pa(do), pa(q), pa(k), pa(v), pa(lse), pa(dsum)}, masks...)
		d.launch(fmt.Sprintf("attn_bwd_kv%d%s", w, sfx), [3]int{attnTiles(p.TK), p.B * p.KVH, 1}, attnBlock, 0, append(args, attnShape(p)...)...)
	}
}

var _ compute.FusedAttention = (*Device)(nil)
