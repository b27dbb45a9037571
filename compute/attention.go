package compute

// AttnParams describes one causal attention problem in the layouts the
// device block uses. Queries (and o, do, dq) are head-major [B, H, T, HD],
// the G = H/KVH query heads that share a key/value head consecutive; keys
// and values (and dk, dv) are head-major [B, KVH, TMax, HD] of which the
// first TK steps of every head are valid (TMax > TK for a key/value cache).
// Query i of a sequence sees key j when j ≤ Off + i (Off is the position of
// the first query among the keys: the cache length or a KV prefix), with
// Window > 0 also Off + i − j < Window, KeyMask (if any) is non-zero at j and
// the segments (if any) of query and key agree.
type AttnParams struct {
	B, H, KVH, T int
	TK, TMax, HD int
	Off, Window  int
	// Scale multiplies q·k; SoftCap > 0 caps the scaled score s to
	// SoftCap·tanh(s/SoftCap) before the masks (Gemma 2).
	Scale, SoftCap float32
	// KeyMask is I32 [B, TK]; QSeg [B, T] and KSeg [B, TK] are I32 segment
	// ids of packed samples. nil: no mask, not packed.
	KeyMask, QSeg, KSeg Tensor
}

// FusedLongScores is where a GPU backend's fused attention starts to pay by
// default: problems with at least this many scores in one sequence (H·T·TK;
// 2^28 is 16 heads at 4096 tokens). The fused kernels run on CUDA cores,
// the unfused products on tensor cores, so shorter sequences stay unfused
// until the kernels are measured faster; the planner predicts the same
// choice.
const FusedLongScores = 1 << 28

// FusedAttention is implemented by backends that run attention whole,
// holding scores only a block of queries at a time (FlashAttention's
// scheme), instead of through GemmBatched and AttnSoftmax over the full
// [T, TK] score matrix, which costs memory and, on a CPU, the masked half
// of the products. A caller that finds it uses it where AttnFusedFor says
// so and the unfused operations otherwise.
//
// The arithmetic is that of the unfused operations: scores are float32,
// and with bf16 queries the probabilities and score gradients are rounded
// to bf16 before the products that read them, as the unfused path stores
// them in tensors of the compute type; o, dq, dk and dv are rounded on
// store to their own type.
type FusedAttention interface {
	// AttnFusedFor reports whether the backend runs this problem fused
	// (a kernel may be limited to some head sizes).
	AttnFusedFor(p AttnParams) bool
	// AttnForward writes o = softmax(masked scores)·v and the log-sum-exp
	// of every query's masked scores into F32 lse [B, H, T] (−Inf for a
	// query that sees no key, whose o is 0).
	AttnForward(o, lse, q, k, v Tensor, p AttnParams)
	// AttnBackward writes dq and the gradients of all TK key steps of dk
	// and dv (those before Off belong to a KV prefix; steps from TK to TMax
	// are left alone) from do, the forward's lse and dsum [B, H, T] (F32,
	// Σ do·o of every query row), recomputing the probabilities block by
	// block.
	AttnBackward(dq, dk, dv, do, q, k, v, lse, dsum Tensor, p AttnParams)
}
