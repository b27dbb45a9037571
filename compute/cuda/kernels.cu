// gotune's CUDA kernels, compiled at run time by NVRTC (no headers: bf16 is
// handled as its bit pattern, so the same source compiles with any NVRTC).
// Every kernel exists in two element types, named _f32 and _bf16; parameters
// (norm weights, master copies, optimizer state, gradients of parameters)
// are always float.

typedef unsigned short bf16_t;
#define INFINITY __int_as_float(0x7f800000)

__device__ __forceinline__ float ld(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float ld(const bf16_t* p, long long i) {
  return __uint_as_float(((unsigned)p[i]) << 16);
}
__device__ __forceinline__ void st(float* p, long long i, float v) { p[i] = v; }
// Round to nearest even, NaN kept quiet: what PyTorch's float→bfloat16 does.
__device__ __forceinline__ void st(bf16_t* p, long long i, float v) {
  unsigned u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    p[i] = (bf16_t)((u >> 16) | 0x40u);
    return;
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  p[i] = (bf16_t)(u >> 16);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// block_sum and block_max need blockDim.x a multiple of 32 (at most 1024) and
// every thread of the block to call them.
__device__ float block_sum(float v) {
  __shared__ float red[32];
  __shared__ float total;
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) red[w] = v;
  __syncthreads();
  if (w == 0) {
    v = lane < (int)(blockDim.x >> 5) ? red[lane] : 0.f;
    v = warp_sum(v);
    if (lane == 0) total = v;
  }
  __syncthreads();
  return total;
}
__device__ float block_max(float v) {
  __shared__ float red[32];
  __shared__ float total;
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[w] = v;
  __syncthreads();
  if (w == 0) {
    v = lane < (int)(blockDim.x >> 5) ? red[lane] : -INFINITY;
    v = warp_max(v);
    if (lane == 0) total = v;
  }
  __syncthreads();
  return total;
}

#define GRID_STRIDE(i, n) \
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

// ---- element-wise ----------------------------------------------------------

template <typename A, typename B>
__device__ void cast_(B* y, const A* x, long long n) {
  GRID_STRIDE(i, n) st(y, i, ld(x, i));
}
extern "C" __global__ void cast_f32_bf16(bf16_t* y, const float* x, long long n) { cast_(y, x, n); }
extern "C" __global__ void cast_bf16_f32(float* y, const bf16_t* x, long long n) { cast_(y, x, n); }

// y = a + b
template <typename T>
__device__ void add_(T* y, const T* a, const T* b, long long n) {
  GRID_STRIDE(i, n) st(y, i, ld(a, i) + ld(b, i));
}
// y = beta·y + alpha·x
template <typename T, typename U>
__device__ void axpby_(T* y, const U* x, float alpha, float beta, long long n) {
  GRID_STRIDE(i, n) {
    float v = alpha * ld(x, i);
    if (beta != 0.f) v += beta * ld(y, i);
    st(y, i, v);
  }
}
// Dropout with the mask of compute.DropoutKeeps: element i survives when the
// top 53 bits of SplitMix64(seed ^ i) reach thresh; y = keep·x there and 0
// elsewhere, or y += that when acc.
template <typename T>
__device__ void dropout_(T* y, const T* x, unsigned long long seed, unsigned long long thresh, float keep, int acc,
                         long long n) {
  GRID_STRIDE(i, n) {
    unsigned long long z = seed ^ (unsigned long long)i;
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    float v = (z >> 11) >= thresh ? ld(x, i) * keep : 0.f;
    if (acc) v += ld(y, i);
    st(y, i, v);
  }
}
// a = silu(g)·u
template <typename T>
__device__ void swiglu_(T* a, const T* g, const T* u, long long n) {
  GRID_STRIDE(i, n) {
    float gv = ld(g, i);
    st(a, i, gv / (1.f + __expf(-gv)) * ld(u, i));
  }
}
template <typename T>
__device__ void swiglu_bwd_(T* dg, T* du, const T* da, const T* g, const T* u, long long n) {
  GRID_STRIDE(i, n) {
    float gv = ld(g, i), uv = ld(u, i), d = ld(da, i);
    float sg = 1.f / (1.f + __expf(-gv));
    float silu = gv * sg;
    st(du, i, d * silu);
    st(dg, i, d * uv * sg * (1.f + gv * (1.f - sg)));
  }
}

// ---- row operations ----------------------------------------------------------

// RMSNorm, one block per row: y = x·rstd·(w + wadd), rstd saved.
template <typename T>
__device__ void rmsnorm_(T* y, float* rstd, const T* x, const float* w, int d, float eps, float wadd) {
  long long r = blockIdx.x;
  const T* xr = x + r * d;
  float ss = 0.f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float v = ld(xr, j);
    ss += v * v;
  }
  ss = block_sum(ss);
  float rs = rsqrtf(ss / d + eps);
  if (threadIdx.x == 0) rstd[r] = rs;
  T* yr = y + r * d;
  for (int j = threadIdx.x; j < d; j += blockDim.x) st(yr, j, ld(xr, j) * rs * (w[j] + wadd));
}
// dx (= or +=) from dy, one block per row.
template <typename T>
__device__ void rmsnorm_bwd_(T* dx, const T* dy, const T* x, const float* w, const float* rstd, int d, float wadd,
                             int accumulate) {
  long long r = blockIdx.x;
  const T *xr = x + r * d, *gr = dy + r * d;
  T* dxr = dx + r * d;
  float rs = rstd[r];
  float c = 0.f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) c += ld(gr, j) * (w[j] + wadd) * ld(xr, j);
  c = block_sum(c) * rs * rs / d;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float v = rs * (ld(gr, j) * (w[j] + wadd) - ld(xr, j) * c);
    if (accumulate) v += ld(dxr, j);
    st(dxr, j, v);
  }
}
// Partial weight gradient of RMSNorm: parts[c][j] = Σ over rows of chunk c of
// dy·x·rstd. A fixed split and fixed-order sums keep it deterministic.
template <typename T>
__device__ void rmsnorm_dw_part_(float* parts, const T* dy, const T* x, const float* rstd, int n, int d, int rowsPer) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  int c = blockIdx.y;
  if (j >= d) return;
  int r0 = c * rowsPer, r1 = min(n, r0 + rowsPer);
  float s = 0.f;
  for (int r = r0; r < r1; r++) s += ld(dy, (long long)r * d + j) * ld(x, (long long)r * d + j) * rstd[r];
  parts[(long long)c * d + j] = s;
}
// Column sums of dy over fixed row chunks (bias gradients), as above.
template <typename T>
__device__ void colsum_part_(float* parts, const T* dy, int n, int d, int rowsPer) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  int c = blockIdx.y;
  if (j >= d) return;
  int r0 = c * rowsPer, r1 = min(n, r0 + rowsPer);
  float s = 0.f;
  for (int r = r0; r < r1; r++) s += ld(dy, (long long)r * d + j);
  parts[(long long)c * d + j] = s;
}
// Column dot products of a and b over fixed row chunks (DoRA's magnitude
// gradient), summed by colsum_f32 like the bias gradients.
template <typename T>
__device__ void coldot_part_(float* parts, const T* a, const T* b, int n, int d, int rowsPer) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  int c = blockIdx.y;
  if (j >= d) return;
  int r0 = c * rowsPer, r1 = min(n, r0 + rowsPer);
  float s = 0.f;
  for (int r = r0; r < r1; r++) s += ld(a, (long long)r * d + j) * ld(b, (long long)r * d + j);
  parts[(long long)c * d + j] = s;
}
// y[r, j] = x[r, j]·s[j]
template <typename T>
__device__ void scale_cols_(T* y, const T* x, const float* s, long long rows, int d) {
  GRID_STRIDE(e, rows * d) st(y, e, ld(x, e) * s[e % d]);
}
// y[r, j] = x[r, j]·s[r]
template <typename T>
__device__ void scale_rows_(T* y, const T* x, const float* s, long long rows, int d) {
  GRID_STRIDE(e, rows * d) st(y, e, ld(x, e) * s[e / d]);
}
// DoRA: inv = 1/√norm2, scale = m·inv.
extern "C" __global__ void dora_scale_f32(float* scale, float* inv, const float* m, const float* norm2, long long n) {
  GRID_STRIDE(i, n) {
    float v = rsqrtf(norm2[i]);
    inv[i] = v;
    scale[i] = m[i] * v;
  }
}
// y[r, j] += b[j]
template <typename T>
__device__ void bias_add_(T* y, const float* b, long long rows, int d) {
  GRID_STRIDE(e, rows * d) st(y, e, ld(y, e) + b[e % d]);
}
// dst[j] += Σ_c parts[c][j], in order of c.
extern "C" __global__ void colsum_f32(float* dst, const float* parts, int chunks, int d) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= d) return;
  float s = 0.f;
  for (int c = 0; c < chunks; c++) s += parts[(long long)c * d + j];
  dst[j] += s;
}

// Rotary embedding fused with the change of layout between token-major
// [B, T, H, hd] (what projections produce) and head-major [B, H, T, hd] (what
// batched attention products want). split: token-major src → rotated
// head-major dst. merge: head-major src → token-major dst with the inverse
// rotation (the backward pass; rot = 0 for a plain transpose), added to dst
// when accumulate is set. One block per (b, t), blockDim.x = hd (thread j
// owns element j of every head, so no index arithmetic per element),
// blockDim.y heads at a time; cos/sin rows are [P, hd].
template <typename T>
__device__ void rope_split_(T* dst, const T* src, const int* pos, const float* cs, const float* sn, int Tn, int H,
                            int hd, int rot, int dstT, int dstOff) {
  int bt = blockIdx.x, b = bt / Tn, t = bt % Tn;
  int half = rot / 2, j = threadIdx.x;
  long long p = pos ? pos[bt] : t;
  float c = 1.f, s = 0.f;
  int partner = j;
  if (j < rot) {
    c = cs[p * hd + j];
    s = sn[p * hd + j];
    partner = j < half ? j + half : j - half;
    if (j < half) s = -s;
  }
  for (int h = threadIdx.y; h < H; h += blockDim.y) {
    const T* v = src + ((long long)bt * H + h) * hd;
    float o = ld(v, j) * c;
    if (j < rot) o += ld(v, partner) * s;
    st(dst, (((long long)b * H + h) * dstT + dstOff + t) * hd + j, o);
  }
}
template <typename T>
__device__ void rope_merge_(T* dst, const T* src, const int* pos, const float* cs, const float* sn, int Tn, int H,
                            int hd, int rot, int accumulate) {
  int bt = blockIdx.x, b = bt / Tn, t = bt % Tn;
  int half = rot / 2, j = threadIdx.x;
  long long p = pos ? pos[bt] : t;
  float c = 1.f, s = 0.f;
  int partner = j;
  if (j < rot) {
    partner = j < half ? j + half : j - half;
    c = cs[p * hd + j];
    s = sn[p * hd + partner];
    if (j >= half) s = -s;
  }
  for (int h = threadIdx.y; h < H; h += blockDim.y) {
    const T* v = src + (((long long)b * H + h) * Tn + t) * hd;
    float o = ld(v, j) * c;
    if (j < rot) o += ld(v, partner) * s;
    long long di = ((long long)bt * H + h) * hd + j;
    if (accumulate) o += ld(dst, di);
    st(dst, di, o);
  }
}

// RMSNorm of short rows (q/k norms, small models): one warp a row, no
// block-wide synchronisation. blockDim = (32, rows per block).
template <typename T>
__device__ void rmsnorm_warp_(T* y, float* rstd, const T* x, const float* w, long long rows, int d, float eps,
                              float wadd) {
  long long r = (long long)blockIdx.x * blockDim.y + threadIdx.y;
  if (r >= rows) return;
  int lane = threadIdx.x;
  const T* xr = x + r * d;
  float ss = 0.f;
  for (int j = lane; j < d; j += 32) {
    float v = ld(xr, j);
    ss += v * v;
  }
  ss = warp_sum(ss);
  float rs = rsqrtf(ss / d + eps);
  if (lane == 0) rstd[r] = rs;
  T* yr = y + r * d;
  for (int j = lane; j < d; j += 32) st(yr, j, ld(xr, j) * rs * (w[j] + wadd));
}
template <typename T>
__device__ void rmsnorm_bwd_warp_(T* dx, const T* dy, const T* x, const float* w, const float* rstd, long long rows,
                                  int d, float wadd, int accumulate) {
  long long r = (long long)blockIdx.x * blockDim.y + threadIdx.y;
  if (r >= rows) return;
  int lane = threadIdx.x;
  const T *xr = x + r * d, *gr = dy + r * d;
  T* dxr = dx + r * d;
  float rs = rstd[r];
  float c = 0.f;
  for (int j = lane; j < d; j += 32) c += ld(gr, j) * (w[j] + wadd) * ld(xr, j);
  c = warp_sum(c) * rs * rs / d;
  for (int j = lane; j < d; j += 32) {
    float v = rs * (ld(gr, j) * (w[j] + wadd) - ld(xr, j) * c);
    if (accumulate) v += ld(dxr, j);
    st(dxr, j, v);
  }
}

// Attention softmax over score rows [B, H, Tq, Tk] (already scaled): query i
// of sequence b sees key j when j ≤ off + i, kmask[b, j] ≠ 0 (if given) and
// the segment ids agree (if given). p = softmax (0 where masked; a row that
// sees nothing is all zeros), lse saved (-inf for such rows). One block a row.
__device__ __forceinline__ bool attn_ok(int b, int i, int j, int Tq, int Tk, int off, const int* kmask,
                                        const int* qseg, const int* kseg) {
  if (j > off + i) return false;
  if (kmask && kmask[(long long)b * Tk + j] == 0) return false;
  if (qseg && qseg[(long long)b * Tq + i] != kseg[(long long)b * Tk + j]) return false;
  return true;
}
template <typename T>
__device__ void attn_softmax_(T* p, float* lse, const float* s, const int* kmask, const int* qseg, const int* kseg,
                              int H, int Tq, int Tk, int off) {
  long long r = blockIdx.x;
  int i = r % Tq, b = r / ((long long)H * Tq);
  const float* sr = s + r * Tk;
  T* pr = p + r * Tk;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < Tk; j += blockDim.x)
    if (attn_ok(b, i, j, Tq, Tk, off, kmask, qseg, kseg)) mx = fmaxf(mx, sr[j]);
  mx = block_max(mx);
  float sum = 0.f;
  if (mx != -INFINITY)
    for (int j = threadIdx.x; j < Tk; j += blockDim.x)
      if (attn_ok(b, i, j, Tq, Tk, off, kmask, qseg, kseg)) sum += __expf(sr[j] - mx);
  sum = block_sum(sum);
  float l = mx == -INFINITY ? -INFINITY : mx + __logf(sum);
  if (threadIdx.x == 0) lse[r] = l;
  for (int j = threadIdx.x; j < Tk; j += blockDim.x) {
    float v = 0.f;
    if (l != -INFINITY && attn_ok(b, i, j, Tq, Tk, off, kmask, qseg, kseg)) v = __expf(sr[j] - l);
    st(pr, j, v);
  }
}
// Backward of the softmax: from recomputed scores s, the saved lse, dp = dO·Vᵀ
// and dsum = rowsum(dO∘O): p (again, for dV = Pᵀ·dO) and ds = p·(dp − dsum).
template <typename T>
__device__ void attn_softmax_bwd_(T* p, T* ds, const float* s, const float* dp, const float* lse, const float* dsum,
                                  const int* kmask, const int* qseg, const int* kseg, int H, int Tq, int Tk, int off) {
  long long r = blockIdx.x;
  int i = r % Tq, b = r / ((long long)H * Tq);
  float l = lse[r], d = dsum[r];
  const float *sr = s + r * Tk, *dpr = dp + r * Tk;
  for (int j = threadIdx.x; j < Tk; j += blockDim.x) {
    float pv = 0.f;
    if (l != -INFINITY && attn_ok(b, i, j, Tq, Tk, off, kmask, qseg, kseg)) pv = __expf(sr[j] - l);
    st(p, r * Tk + j, pv);
    st(ds, r * Tk + j, pv * (dpr[j] - d));
  }
}
// out[r] = Σ_j a[r, j]·b[r, j], one warp a row.
template <typename T>
__device__ void rowdot_(float* out, const T* a, const T* b, long long rows, int d) {
  long long r = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  if (r >= rows) return;
  float s = 0.f;
  for (int j = lane; j < d; j += 32) s += ld(a, r * d + j) * ld(b, r * d + j);
  s = warp_sum(s);
  if (lane == 0) out[r] = s;
}

// Cross-entropy of logit rows [m, V] (float) against targets: loss[r] =
// lse − logit[target]; with grad, g = scale·(softmax − onehot) in the
// element type of the products that follow. One block a row.
template <typename T>
__device__ void xent_(float* loss, T* g, const float* logits, const int* tgt, int V, float scale, int grad) {
  long long r = blockIdx.x;
  const float* lr = logits + r * V;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, lr[j]);
  mx = block_max(mx);
  float sum = 0.f;
  for (int j = threadIdx.x; j < V; j += blockDim.x) sum += __expf(lr[j] - mx);
  sum = block_sum(sum);
  int t = tgt[r];
  if (threadIdx.x == 0) loss[r] = mx + __logf(sum) - lr[t];
  if (!grad) return;
  float inv = scale / sum;
  T* gr = g + r * V;
  for (int j = threadIdx.x; j < V; j += blockDim.x) {
    float v = __expf(lr[j] - mx) * inv;
    if (j == t) v -= scale;
    st(gr, j, v);
  }
}

// ---- gathers ----------------------------------------------------------------

// dst[r] = src[idx[r]] for rows of width d.
template <typename T, typename U>
__device__ void gather_rows_(T* dst, const U* src, const int* idx, long long rows, int d) {
  GRID_STRIDE(e, rows * d) {
    long long r = e / d;
    int j = e % d;
    st(dst, e, ld(src, (long long)idx[r] * d + j));
  }
}
// dst[idx[r]] += src[r]; idx holds no repeats (rows of a batch).
template <typename T>
__device__ void scatter_rows_(T* dst, const T* src, const int* idx, long long rows, int d) {
  GRID_STRIDE(e, rows * d) {
    long long r = e / d;
    int j = e % d;
    long long di = (long long)idx[r] * d + j;
    st(dst, di, ld(dst, di) + ld(src, e));
  }
}
// Embedding gradient: table[ids[r]] += dx[r]. Repeated ids make the order of
// additions vary between runs (atomics).
template <typename T>
__device__ void embed_bwd_(float* table, const T* dx, const int* ids, long long rows, int d) {
  GRID_STRIDE(e, rows * d) {
    long long r = e / d;
    int j = e % d;
    atomicAdd(table + (long long)ids[r] * d + j, ld(dx, e));
  }
}

// ---- quantized weights ----------------------------------------------------------

// 4-bit (NF4/FP4) weights as bitsandbytes lays them out: two codes a byte,
// the first element in the high nibble, one float scale per block of
// elements; value = code[q]·scale, in float as on the CPU.
template <typename T>
__device__ void dequant4_(T* out, const unsigned char* packed, const float* scales, const float* code, long long n,
                          int block) {
  GRID_STRIDE(e, n) {
    unsigned char b = packed[e >> 1];
    int q = (e & 1) ? (b & 15) : (b >> 4);
    st(out, e, code[q] * scales[e / block]);
  }
}

// ---- optimizer ----------------------------------------------------------------

// torch.optim.AdamW on float master weights; gscale multiplies the gradient
// (clipping), shadow (if given) receives the updated weight in bf16.
extern "C" __global__ void adamw_f32(float* p, const float* g, float* m, float* v, bf16_t* shadow, long long n,
                                     float gscale, float decay, float b1, float b2, float step_size, float bc2sqrt,
                                     float eps) {
  GRID_STRIDE(i, n) {
    float gi = g[i] * gscale;
    float mi = b1 * m[i] + (1.f - b1) * gi;
    float vi = b2 * v[i] + (1.f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float pi = p[i] * decay;
    pi -= step_size * mi / (sqrtf(vi) / bc2sqrt + eps);
    p[i] = pi;
    if (shadow) st(shadow, i, pi);
  }
}
// Sum of squares in two fixed-order stages: partial sums per block, then one
// block adds them (deterministic; the host adds tensors in float64).
extern "C" __global__ void sumsq_part_f32(float* parts, const float* x, long long n) {
  float s = 0.f;
  GRID_STRIDE(i, n) s += x[i] * x[i];
  s = block_sum(s);
  if (threadIdx.x == 0) parts[blockIdx.x] = s;
}
extern "C" __global__ void sum_f32(float* out, const float* parts, int n) {
  float s = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += parts[i];
  s = block_sum(s);
  if (threadIdx.x == 0) *out = s;
}
extern "C" __global__ void fill_f32(float* x, float v, long long n) {
  GRID_STRIDE(i, n) x[i] = v;
}

// ---- PEFT methods beyond LoRA: activations, SGD --------------------------------

// act_ids: 1 relu, 2 tanh, 3 silu, 4 gelu (erf), 5 gelu (tanh form), as
// compute.Activation. f and f' in float.
__device__ __forceinline__ void act_eval(int f, float x, float* y, float* dy) {
  switch (f) {
    case 1:
      *y = x > 0.f ? x : 0.f;
      *dy = x > 0.f ? 1.f : 0.f;
      return;
    case 2: {
      float t = tanhf(x);
      *y = t;
      *dy = 1.f - t * t;
      return;
    }
    case 3: {
      float s = 1.f / (1.f + expf(-x));
      *y = x * s;
      *dy = s * (1.f + x * (1.f - s));
      return;
    }
    case 4: {
      float c = 0.5f * (1.f + erff(x * 0.70710678118654752f));
      *y = x * c;
      *dy = c + x * expf(-0.5f * x * x) * 0.39894228040143268f;
      return;
    }
    default: {
      const float k = 0.7978845608028654f;
      float t = tanhf(k * (x + 0.044715f * x * x * x));
      *y = 0.5f * x * (1.f + t);
      *dy = 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * k * (1.f + 3.f * 0.044715f * x * x);
      return;
    }
  }
}
template <typename T>
__device__ void activate_(T* y, const T* x, int f, long long n) {
  GRID_STRIDE(i, n) {
    float v, d;
    act_eval(f, ld(x, i), &v, &d);
    st(y, i, v);
  }
}
template <typename T>
__device__ void activate_bwd_(T* dx, const T* dy, const T* x, int f, long long n) {
  GRID_STRIDE(i, n) {
    float v, d;
    act_eval(f, ld(x, i), &v, &d);
    st(dx, i, ld(dy, i) * d);
  }
}
extern "C" __global__ void activate_f32(float* y, const float* x, int f, long long n) { activate_(y, x, f, n); }
extern "C" __global__ void activate_bf16(bf16_t* y, const bf16_t* x, int f, long long n) { activate_(y, x, f, n); }
extern "C" __global__ void activate_bwd_f32(float* dx, const float* dy, const float* x, int f, long long n) {
  activate_bwd_(dx, dy, x, f, n);
}
extern "C" __global__ void activate_bwd_bf16(bf16_t* dx, const bf16_t* dy, const bf16_t* x, int f, long long n) {
  activate_bwd_(dx, dy, x, f, n);
}

// torch.optim.SGD on float master weights: d = g·gscale + wd·p; with
// momentum, buf = d (first update) or buf·mom + (1−damp)·d, then d = buf or
// d + mom·buf (nesterov); p −= lr·d. shadow (if given) receives p in bf16.
extern "C" __global__ void sgd_f32(float* p, const float* g, float* buf, bf16_t* shadow, long long n, float gscale,
                                   float lr, float wd, float mom, float damp, int nesterov, int first) {
  GRID_STRIDE(i, n) {
    float d = g[i] * gscale;
    if (wd != 0.f) d += wd * p[i];
    if (mom != 0.f) {
      float b = first ? d : buf[i] * mom + (1.f - damp) * d;
      buf[i] = b;
      d = nesterov ? d + mom * b : b;
    }
    float pi = p[i] - lr * d;
    p[i] = pi;
    if (shadow) st(shadow, i, pi);
  }
}

// One LSTM step (torch's gate order i, f, g, o), one thread per cell; h's
// rows are ldh apart. cPrev, dhNext, dc and dcPrev may be null.
template <typename T>
__device__ void lstm_cell_(T* gates, T* c, T* h, int ldh, const T* pre, const T* cPrev, long long rows, int H) {
  GRID_STRIDE(e, rows * H) {
    long long r = e / H;
    int j = (int)(e % H);
    long long base = r * 4 * H;
    float i = 1.f / (1.f + expf(-ld(pre, base + j)));
    float f = 1.f / (1.f + expf(-ld(pre, base + H + j)));
    float g = tanhf(ld(pre, base + 2 * H + j));
    float o = 1.f / (1.f + expf(-ld(pre, base + 3 * H + j)));
    st(gates, base + j, i);
    st(gates, base + H + j, f);
    st(gates, base + 2 * H + j, g);
    st(gates, base + 3 * H + j, o);
    float cv = i * g;
    if (cPrev) cv += f * ld(cPrev, e);
    st(c, e, cv);
    st(h, r * ldh + j, o * tanhf(ld(c, e)));
  }
}
template <typename T>
__device__ void lstm_cell_bwd_(T* dpre, T* dcPrev, const T* dh, int ldh, const T* dhNext, const T* dc, const T* gates,
                               const T* c, const T* cPrev, long long rows, int H) {
  GRID_STRIDE(e, rows * H) {
    long long r = e / H;
    int j = (int)(e % H);
    long long base = r * 4 * H;
    float i = ld(gates, base + j), f = ld(gates, base + H + j), g = ld(gates, base + 2 * H + j),
          o = ld(gates, base + 3 * H + j);
    float d = ld(dh, r * ldh + j);
    if (dhNext) d += ld(dhNext, e);
    float tc = tanhf(ld(c, e));
    float dcv = d * o * (1.f - tc * tc);
    if (dc) dcv += ld(dc, e);
    float cp = cPrev ? ld(cPrev, e) : 0.f;
    st(dpre, base + j, dcv * g * i * (1.f - i));
    st(dpre, base + H + j, dcv * cp * f * (1.f - f));
    st(dpre, base + 2 * H + j, dcv * i * (1.f - g * g));
    st(dpre, base + 3 * H + j, d * tc * o * (1.f - o));
    if (dcPrev) st(dcPrev, e, dcv * f);
  }
}
#define LSTM_INST(N, T)                                                                                         \
  extern "C" __global__ void lstm_cell_##N(T* gates, T* c, T* h, int ldh, const T* pre, const T* cPrev,         \
                                           long long rows, int H) {                                            \
    lstm_cell_(gates, c, h, ldh, pre, cPrev, rows, H);                                                          \
  }                                                                                                             \
  extern "C" __global__ void lstm_cell_bwd_##N(T* dpre, T* dcPrev, const T* dh, int ldh, const T* dhNext,       \
                                               const T* dc, const T* gates, const T* c, const T* cPrev,         \
                                               long long rows, int H) {                                        \
    lstm_cell_bwd_(dpre, dcPrev, dh, ldh, dhNext, dc, gates, c, cPrev, rows, H);                                \
  }
LSTM_INST(f32, float)
LSTM_INST(bf16, bf16_t)

// ---- instantiations -----------------------------------------------------------

#define BOTH(X) X(f32, float) X(bf16, bf16_t)

#define INST(N, T)                                                                                           \
  extern "C" __global__ void add_##N(T* y, const T* a, const T* b, long long n) { add_(y, a, b, n); }        \
  extern "C" __global__ void axpby_##N(T* y, const T* x, float alpha, float beta, long long n) {             \
    axpby_(y, x, alpha, beta, n);                                                                            \
  }                                                                                                          \
  extern "C" __global__ void axpby_f32_##N(float* y, const T* x, float alpha, float beta, long long n) {     \
    axpby_(y, x, alpha, beta, n);                                                                            \
  }                                                                                                          \
  extern "C" __global__ void swiglu_##N(T* a, const T* g, const T* u, long long n) { swiglu_(a, g, u, n); } \
  extern "C" __global__ void dropout_##N(T* y, const T* x, unsigned long long seed, unsigned long long thresh, \
                                         float keep, int acc, long long n) {                                 \
    dropout_(y, x, seed, thresh, keep, acc, n);                                                              \
  }                                                                                                          \
  extern "C" __global__ void swiglu_bwd_##N(T* dg, T* du, const T* da, const T* g, const T* u, long long n) { \
    swiglu_bwd_(dg, du, da, g, u, n);                                                                        \
  }                                                                                                          \
  extern "C" __global__ void rmsnorm_##N(T* y, float* rstd, const T* x, const float* w, int d, float eps,   \
                                         float wadd) {                                                       \
    rmsnorm_(y, rstd, x, w, d, eps, wadd);                                                                   \
  }                                                                                                          \
  extern "C" __global__ void rmsnorm_bwd_##N(T* dx, const T* dy, const T* x, const float* w,                \
                                             const float* rstd, int d, float wadd, int acc) {                \
    rmsnorm_bwd_(dx, dy, x, w, rstd, d, wadd, acc);                                                          \
  }                                                                                                          \
  extern "C" __global__ void rmsnorm_dw_part_##N(float* parts, const T* dy, const T* x, const float* rstd,  \
                                                 int n, int d, int rowsPer) {                                \
    rmsnorm_dw_part_(parts, dy, x, rstd, n, d, rowsPer);                                                     \
  }                                                                                                          \
  extern "C" __global__ void colsum_part_##N(float* parts, const T* dy, int n, int d, int rowsPer) {       \
    colsum_part_(parts, dy, n, d, rowsPer);                                                                  \
  }                                                                                                          \
  extern "C" __global__ void coldot_part_##N(float* parts, const T* a, const T* b, int n, int d, int rowsPer) { \
    coldot_part_(parts, a, b, n, d, rowsPer);                                                                \
  }                                                                                                          \
  extern "C" __global__ void scale_rows_##N(T* y, const T* x, const float* s, long long rows, int d) {      \
    scale_rows_(y, x, s, rows, d);                                                                           \
  }                                                                                                          \
  extern "C" __global__ void scale_cols_##N(T* y, const T* x, const float* s, long long rows, int d) {      \
    scale_cols_(y, x, s, rows, d);                                                                           \
  }                                                                                                          \
  extern "C" __global__ void bias_add_##N(T* y, const float* b, long long rows, int d) {                    \
    bias_add_(y, b, rows, d);                                                                                \
  }                                                                                                          \
  extern "C" __global__ void dequant4_##N(T* out, const unsigned char* packed, const float* scales,          \
                                         const float* code, long long n, int block) {                        \
    dequant4_(out, packed, scales, code, n, block);                                                          \
  }                                                                                                          \
  extern "C" __global__ void rmsnorm_warp_##N(T* y, float* rstd, const T* x, const float* w, long long rows, \
                                              int d, float eps, float wadd) {                                \
    rmsnorm_warp_(y, rstd, x, w, rows, d, eps, wadd);                                                        \
  }                                                                                                          \
  extern "C" __global__ void rmsnorm_bwd_warp_##N(T* dx, const T* dy, const T* x, const float* w,           \
                                                  const float* rstd, long long rows, int d, float wadd,      \
                                                  int acc) {                                                 \
    rmsnorm_bwd_warp_(dx, dy, x, w, rstd, rows, d, wadd, acc);                                               \
  }                                                                                                          \
  extern "C" __global__ void rope_split_##N(T* dst, const T* src, const int* pos, const float* cs,          \
                                            const float* sn, int Tn, int H, int hd, int rot, int dstT,       \
                                            int dstOff) {                                                    \
    rope_split_(dst, src, pos, cs, sn, Tn, H, hd, rot, dstT, dstOff);                                        \
  }                                                                                                          \
  extern "C" __global__ void rope_merge_##N(T* dst, const T* src, const int* pos, const float* cs,          \
                                            const float* sn, int Tn, int H, int hd, int rot, int acc) {      \
    rope_merge_(dst, src, pos, cs, sn, Tn, H, hd, rot, acc);                                                 \
  }                                                                                                          \
  extern "C" __global__ void attn_softmax_##N(T* p, float* lse, const float* s, const int* km,              \
                                              const int* qs, const int* ks, int H, int Tq, int Tk, int off) { \
    attn_softmax_(p, lse, s, km, qs, ks, H, Tq, Tk, off);                                                    \
  }                                                                                                          \
  extern "C" __global__ void attn_softmax_bwd_##N(T* p, T* ds, const float* s, const float* dp,             \
                                                  const float* lse, const float* dsum, const int* km,        \
                                                  const int* qs, const int* ks, int H, int Tq, int Tk,       \
                                                  int off) {                                                 \
    attn_softmax_bwd_(p, ds, s, dp, lse, dsum, km, qs, ks, H, Tq, Tk, off);                                  \
  }                                                                                                          \
  extern "C" __global__ void rowdot_##N(float* out, const T* a, const T* b, long long rows, int d) {        \
    rowdot_(out, a, b, rows, d);                                                                             \
  }                                                                                                          \
  extern "C" __global__ void xent_##N(float* loss, T* g, const float* logits, const int* tgt, int V,        \
                                      float scale, int grad) {                                               \
    xent_(loss, g, logits, tgt, V, scale, grad);                                                             \
  }                                                                                                          \
  extern "C" __global__ void gather_rows_##N(T* dst, const T* src, const int* idx, long long rows, int d) { \
    gather_rows_(dst, src, idx, rows, d);                                                                    \
  }                                                                                                          \
  extern "C" __global__ void scatter_rows_##N(T* dst, const T* src, const int* idx, long long rows, int d) { \
    scatter_rows_(dst, src, idx, rows, d);                                                                   \
  }                                                                                                          \
  extern "C" __global__ void embed_bwd_##N(float* table, const T* dx, const int* ids, long long rows, int d) { \
    embed_bwd_(table, dx, ids, rows, d);                                                                     \
  }

BOTH(INST)

// ---- 8-bit weights ------------------------------------------------------------

// absmax INT8 weights: one signed byte an element, one float scale (absmax /
// 127) per block of elements; value = q·scale, in float as on the CPU.
template <typename T>
__device__ void dequant8_(T* out, const signed char* q, const float* scales, long long n, int block) {
  GRID_STRIDE(e, n) { st(out, e, (float)q[e] * scales[e / block]); }
}

#define INST8(N, T)                                                                                          \
  extern "C" __global__ void dequant8_##N(T* out, const signed char* q, const float* scales, long long n,    \
                                          int block) {                                                       \
    dequant8_(out, q, scales, n, block);                                                                     \
  }

BOTH(INST8)

// ---- model families beyond the Llama kind (Gemma 2/3, Phi-3) ----------------

// The score the softmax sees: soft-capped when cap > 0.
__device__ __forceinline__ float capped_(float s, float cap) { return cap > 0.f ? cap * tanhf(s / cap) : s; }
// attn_ok plus a sliding window (window > 0): key j is seen from query i when
// off + i − j < window.
__device__ __forceinline__ bool window_ok(int b, int i, int j, int Tq, int Tk, int off, int window, const int* kmask,
                                          const int* qseg, const int* kseg) {
  if (window > 0 && off + i - j >= window) return false;
  return attn_ok(b, i, j, Tq, Tk, off, kmask, qseg, kseg);
}
// attn_softmax_ with a soft cap and a sliding window. One block a row.
template <typename T>
__device__ void attn_softmax_win_(T* p, float* lse, const float* s, const int* kmask, const int* qseg,
                                  const int* kseg, int H, int Tq, int Tk, int off, int window, float cap) {
  long long r = blockIdx.x;
  int i = r % Tq, b = r / ((long long)H * Tq);
  const float* sr = s + r * Tk;
  T* pr = p + r * Tk;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < Tk; j += blockDim.x)
    if (window_ok(b, i, j, Tq, Tk, off, window, kmask, qseg, kseg)) mx = fmaxf(mx, capped_(sr[j], cap));
  mx = block_max(mx);
  float sum = 0.f;
  if (mx != -INFINITY)
    for (int j = threadIdx.x; j < Tk; j += blockDim.x)
      if (window_ok(b, i, j, Tq, Tk, off, window, kmask, qseg, kseg)) sum += __expf(capped_(sr[j], cap) - mx);
  sum = block_sum(sum);
  float l = mx == -INFINITY ? -INFINITY : mx + __logf(sum);
  if (threadIdx.x == 0) lse[r] = l;
  for (int j = threadIdx.x; j < Tk; j += blockDim.x) {
    float v = 0.f;
    if (l != -INFINITY && window_ok(b, i, j, Tq, Tk, off, window, kmask, qseg, kseg))
      v = __expf(capped_(sr[j], cap) - l);
    st(pr, j, v);
  }
}
// Its backward: p again, and ds = p·(dp − dsum)·(1 − t²), t = tanh(s/cap),
// the gradient of the uncapped scores.
template <typename T>
__device__ void attn_softmax_win_bwd_(T* p, T* ds, const float* s, const float* dp, const float* lse,
                                      const float* dsum, const int* kmask, const int* qseg, const int* kseg, int H,
                                      int Tq, int Tk, int off, int window, float cap) {
  long long r = blockIdx.x;
  int i = r % Tq, b = r / ((long long)H * Tq);
  float l = lse[r], d = dsum[r];
  const float *sr = s + r * Tk, *dpr = dp + r * Tk;
  for (int j = threadIdx.x; j < Tk; j += blockDim.x) {
    float pv = 0.f, f = 1.f;
    if (l != -INFINITY && window_ok(b, i, j, Tq, Tk, off, window, kmask, qseg, kseg)) {
      float c = capped_(sr[j], cap);
      pv = __expf(c - l);
      if (cap > 0.f) {
        float t = c / cap;
        f = 1.f - t * t;
      }
    }
    st(p, r * Tk + j, pv);
    st(ds, r * Tk + j, pv * (dpr[j] - d) * f);
  }
}
// a = gelu_tanh(g)·u, and its backward.
__device__ __forceinline__ void gelu_tanh_(float x, float* y, float* dy) {
  const float c = 0.7978845608028654f, a = 0.044715f;
  float t = tanhf(c * (x + a * x * x * x));
  *y = 0.5f * x * (1.f + t);
  *dy = 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * c * (1.f + 3.f * a * x * x);
}
template <typename T>
__device__ void geglu_(T* a, const T* g, const T* u, long long n) {
  GRID_STRIDE(i, n) {
    float y, dy;
    gelu_tanh_(ld(g, i), &y, &dy);
    st(a, i, y * ld(u, i));
  }
}
template <typename T>
__device__ void geglu_bwd_(T* dg, T* du, const T* da, const T* g, const T* u, long long n) {
  GRID_STRIDE(i, n) {
    float y, dy, d = ld(da, i);
    gelu_tanh_(ld(g, i), &y, &dy);
    st(du, i, d * y);
    st(dg, i, d * ld(u, i) * dy);
  }
}
// y = c·tanh(x/c); dx = dy·(1 − (y/c)²).
template <typename T>
__device__ void softcap_(T* y, const T* x, float c, long long n) {
  GRID_STRIDE(i, n) st(y, i, c * tanhf(ld(x, i) / c));
}
template <typename T>
__device__ void softcap_bwd_(T* dx, const T* dy, const float* y, float c, long long n) {
  GRID_STRIDE(i, n) {
    float t = ld(y, i) / c;
    st(dx, i, ld(dy, i) * (1.f - t * t));
  }
}
// dst[r·ldd + j] = src[r·lds + j] for a rows×cols block.
template <typename T>
__device__ void copy2d_(T* dst, int ldd, const T* src, int lds, long long rows, int cols) {
  GRID_STRIDE(k, rows * cols) {
    long long r = k / cols;
    int j = k % cols;
    dst[r * ldd + j] = src[r * lds + j];
  }
}

#define INST_FAM(N, T)                                                                                        \
  extern "C" __global__ void attn_softmax_win_##N(T* p, float* lse, const float* s, const int* km,           \
                                                  const int* qs, const int* ks, int H, int Tq, int Tk, int off, \
                                                  int window, float cap) {                                   \
    attn_softmax_win_(p, lse, s, km, qs, ks, H, Tq, Tk, off, window, cap);                                   \
  }                                                                                                          \
  extern "C" __global__ void attn_softmax_win_bwd_##N(T* p, T* ds, const float* s, const float* dp,         \
                                                      const float* lse, const float* dsum, const int* km,    \
                                                      const int* qs, const int* ks, int H, int Tq, int Tk,   \
                                                      int off, int window, float cap) {                      \
    attn_softmax_win_bwd_(p, ds, s, dp, lse, dsum, km, qs, ks, H, Tq, Tk, off, window, cap);                 \
  }                                                                                                          \
  extern "C" __global__ void geglu_##N(T* a, const T* g, const T* u, long long n) { geglu_(a, g, u, n); }   \
  extern "C" __global__ void geglu_bwd_##N(T* dg, T* du, const T* da, const T* g, const T* u, long long n) { \
    geglu_bwd_(dg, du, da, g, u, n);                                                                         \
  }                                                                                                          \
  extern "C" __global__ void softcap_##N(T* y, const T* x, float c, long long n) { softcap_(y, x, c, n); }   \
  extern "C" __global__ void softcap_bwd_##N(T* dx, const T* dy, const float* y, float c, long long n) {    \
    softcap_bwd_(dx, dy, y, c, n);                                                                           \
  }                                                                                                          \
  extern "C" __global__ void copy2d_##N(T* dst, int ldd, const T* src, int lds, long long rows, int cols) { \
    copy2d_(dst, ldd, src, lds, rows, cols);                                                                 \
  }

BOTH(INST_FAM)

// ---- mixtures of experts: routing -------------------------------------------------

// The probability of expert e of one token in double: the softmax of its
// logits lg[0..E) with maximum mx and sum of exponentials sum.
__device__ __forceinline__ double moe_p(const float* lg, int e, double mx, double sum) {
  return exp((double)lg[e] - mx) / sum;
}

// One thread per token: the softmax in double, the topK most probable
// experts best first (ties to the lower index) and their weights. The
// probabilities are recomputed rather than kept (E may be a hundred or more).
extern "C" __global__ void moe_route_f32(float* probs, int* sel, float* wts, const float* logits, long long n, int E,
                                         int K, int norm) {
  GRID_STRIDE(t, n) {
    const float* lg = logits + t * E;
    double mx = -(double)INFINITY;
    for (int e = 0; e < E; e++) mx = fmax(mx, (double)lg[e]);
    double sum = 0;
    for (int e = 0; e < E; e++) sum += exp((double)lg[e] - mx);
    for (int e = 0; e < E; e++) probs[t * E + e] = (float)moe_p(lg, e, mx, sum);
    int* s = sel + t * K;
    double total = 0;
    for (int k = 0; k < K; k++) {
      int best = -1;
      double bp = 0;
      for (int e = 0; e < E; e++) {
        bool taken = false;
        for (int j = 0; j < k; j++) taken = taken || s[j] == e;
        if (taken) continue;
        double p = moe_p(lg, e, mx, sum);
        if (best < 0 || p > bp) best = e, bp = p;
      }
      s[k] = best;
      total += bp;
    }
    for (int k = 0; k < K; k++) {
      double w = moe_p(lg, s[k], mx, sum);
      wts[t * K + k] = (float)(norm ? w / total : w);
    }
  }
}

// One block: the slots listed expert by expert in slot order (a counting
// sort, each thread one expert's slots), where each expert's part starts
// (offs, as floats for the host) and, with stats, each expert's count and
// probability sum (in double, split in two floats) over the kept tokens.
extern "C" __global__ void moe_list_f32(int* rows, float* rowWts, int* pos, float* offs, float* stats, const int* sel,
                                        const float* wts, const float* probs, const int* mask, long long n, int E,
                                        int K) {
  extern __shared__ int start[];  // E + 1
  long long nk = n * K;
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    int c = 0;
    for (long long s = 0; s < nk; s++) c += sel[s] == e;
    start[e + 1] = c;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    start[0] = 0;
    for (int e = 1; e <= E; e++) start[e] += start[e - 1];
    for (int e = 0; e <= E; e++) offs[e] = (float)start[e];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    int at = start[e];
    for (long long s = 0; s < nk; s++) {
      if (sel[s] != e) continue;
      rows[at] = (int)(s / K);
      rowWts[at] = wts[s];
      pos[s] = at;
      at++;
    }
    if (stats) {
      float chosen = 0;
      double psum = 0;
      for (long long t = 0; t < n; t++) {
        if (mask && mask[t] == 0) continue;
        for (int k = 0; k < K; k++) chosen += sel[t * K + k] == e ? 1.f : 0.f;
        psum += (double)probs[t * E + e];
      }
      float hi = (float)psum;
      stats[e] = chosen;
      stats[E + e] = hi;
      stats[2 * E + e] = (float)(psum - (double)hi);
    }
  }
}

// One thread per token: the router logits' gradient through the weights
// (normalised when norm) and the softmax, in double; aux (may be null) is
// added to the probabilities' gradient of the kept tokens.
template <typename T>
__device__ void moe_router_grad_(T* dl, const float* probs, const int* sel, const float* wts, const int* pos,
                                 const float* dw, const float* aux, const int* mask, long long n, int E, int K,
                                 int norm) {
  GRID_STRIDE(t, n) {
    const float* p = probs + t * E;
    const int* s = sel + t * K;
    double psel = 0, wg = 0;
    for (int k = 0; k < K; k++) {
      psel += (double)p[s[k]];
      wg += (double)wts[t * K + k] * (double)dw[pos[t * K + k]];
    }
    bool withAux = aux && (!mask || mask[t] != 0);
    // The gradient of probability e: its slots' terms plus aux.
    double pdp = 0;
    for (int e = 0; e < E; e++) {
      double d = withAux ? (double)aux[e] : 0;
      for (int k = 0; k < K; k++) {
        if (s[k] != e) continue;
        double g = (double)dw[pos[t * K + k]];
        d += norm ? (g - wg) / psel : g;
      }
      pdp += (double)p[e] * d;
    }
    for (int e = 0; e < E; e++) {
      double d = withAux ? (double)aux[e] : 0;
      for (int k = 0; k < K; k++) {
        if (s[k] != e) continue;
        double g = (double)dw[pos[t * K + k]];
        d += norm ? (g - wg) / psel : g;
      }
      st(dl, t * E + e, (float)((double)p[e] * (d - pdp)));
    }
  }
}
// dst = srcᵀ for a rows×cols src, one thread per element (bits copied).
template <typename T>
__device__ void transpose_(T* dst, const T* src, long long rows, int cols) {
  GRID_STRIDE(i, rows * cols) {
    long long r = i / cols;
    int c = (int)(i % cols);
    dst[(long long)c * rows + r] = src[i];
  }
}
#define INST_MOE(N, T)                                                                                       \
  extern "C" __global__ void transpose_##N(T* dst, const T* src, long long rows, int cols) {                 \
    transpose_(dst, src, rows, cols);                                                                        \
  }                                                                                                          \
  extern "C" __global__ void moe_router_grad_##N(T* dl, const float* probs, const int* sel, const float* wts, \
                                                 const int* pos, const float* dw, const float* aux,          \
                                                 const int* mask, long long n, int E, int K, int norm) {     \
    moe_router_grad_(dl, probs, sel, wts, pos, dw, aux, mask, n, E, K, norm);                                \
  }
BOTH(INST_MOE)
// ---- 8-bit AdamW (bitsandbytes' adamw_8bit) ------------------------------------

// The two 256-entry dynamic quantization maps (compute.DynamicMap: signed,
// then unsigned) as float32 bit patterns, so the table is exactly the Go
// one (TestAdam8MapInKernels checks it).
__constant__ unsigned int adam8_qmap_bits[512] = {
    0xbf7e3333u, 0xbf7a999au, 0xbf770000u, 0xbf736666u, 0xbf6fcccdu, 0xbf6c3333u, 0xbf68999au, 0xbf650000u,
    0xbf616666u, 0xbf5dcccdu, 0xbf5a3333u, 0xbf56999au, 0xbf530000u, 0xbf4f6666u, 0xbf4bcccdu, 0xbf483333u,
    0xbf44999au, 0xbf410000u, 0xbf3d6666u, 0xbf39cccdu, 0xbf363333u, 0xbf32999au, 0xbf2f0000u, 0xbf2b6666u,
    0xbf27cccdu, 0xbf243333u, 0xbf20999au, 0xbf1d0000u, 0xbf196666u, 0xbf15cccdu, 0xbf123333u, 0xbf0e999au,
    0xbf0b0000u, 0xbf076666u, 0xbf03cccdu, 0xbf003333u, 0xbef93333u, 0xbef20000u, 0xbeeacccdu, 0xbee3999au,
    0xbedc6666u, 0xbed53333u, 0xbece0000u, 0xbec6cccdu, 0xbebf999au, 0xbeb86666u, 0xbeb13333u, 0xbeaa0000u,
    0xbea2cccdu, 0xbe9b999au, 0xbe946666u, 0xbe8d3333u, 0xbe860000u, 0xbe7d999au, 0xbe6f3333u, 0xbe60cccdu,
    0xbe526666u, 0xbe440000u, 0xbe35999au, 0xbe273333u, 0xbe18cccdu, 0xbe0a6666u, 0xbdf80000u, 0xbddb3333u,
    0xbdc9eb85u, 0xbdc428f6u, 0xbdbe6666u, 0xbdb8a3d7u, 0xbdb2e148u, 0xbdad1eb8u, 0xbda75c29u, 0xbda1999au,
    0xbd9bd70au, 0xbd96147bu, 0xbd9051ecu, 0xbd8a8f5cu, 0xbd84cccdu, 0xbd7e147bu, 0xbd728f5cu, 0xbd670a3du,
    0xbd5b851fu, 0xbd500000u, 0xbd447ae1u, 0xbd38f5c3u, 0xbd2d70a4u, 0xbd21eb85u, 0xbd166666u, 0xbd0ae148u,
    0xbcfeb852u, 0xbce7ae14u, 0xbcd0a3d7u, 0xbcb9999au, 0xbca28f5cu, 0xbc8b851fu, 0xbc68f5c3u, 0xbc3ae148u,
    0xbc1f3b64u, 0xbc160419u, 0xbc0ccccdu, 0xbc039581u, 0xbbf4bc6au, 0xbbe24dd3u, 0xbbcfdf3bu, 0xbbbd70a4u,
    0xbbab020cu, 0xbb989375u, 0xbb8624ddu, 0xbb676c8bu, 0xbb428f5cu, 0xbb1db22du, 0xbaf1a9fcu, 0xbaa7ef9eu,
    0xba7765feu, 0xba59e83eu, 0xba3c6a7fu, 0xba1eecc0u, 0xba016f00u, 0xb9c7e282u, 0xb98ce704u, 0xb923d70au,
    0xb8ba1f4bu, 0xb88aefb3u, 0xb8378034u, 0xb7b24207u, 0xb70205ffu, 0xb65a1a93u, 0xb513a3b6u, 0x00000000u,
    0x3513a3b6u, 0x365a1a93u, 0x370205ffu, 0x37b24207u, 0x38378034u, 0x388aefb3u, 0x38ba1f4bu, 0x3923d70au,
    0x398ce704u, 0x39c7e282u, 0x3a016f00u, 0x3a1eecc0u, 0x3a3c6a7fu, 0x3a59e83eu, 0x3a7765feu, 0x3aa7ef9eu,
    0x3af1a9fcu, 0x3b1db22du, 0x3b428f5cu, 0x3b676c8bu, 0x3b8624ddu, 0x3b989375u, 0x3bab020cu, 0x3bbd70a4u,
    0x3bcfdf3bu, 0x3be24dd3u, 0x3bf4bc6au, 0x3c039581u, 0x3c0ccccdu, 0x3c160419u, 0x3c1f3b64u, 0x3c3ae148u,
    0x3c68f5c3u, 0x3c8b851fu, 0x3ca28f5cu, 0x3cb9999au, 0x3cd0a3d7u, 0x3ce7ae14u, 0x3cfeb852u, 0x3d0ae148u,
    0x3d166666u, 0x3d21eb85u, 0x3d2d70a4u, 0x3d38f5c3u, 0x3d447ae1u, 0x3d500000u, 0x3d5b851fu, 0x3d670a3du,
    0x3d728f5cu, 0x3d7e147bu, 0x3d84cccdu, 0x3d8a8f5cu, 0x3d9051ecu, 0x3d96147bu, 0x3d9bd70au, 0x3da1999au,
    0x3da75c29u, 0x3dad1eb8u, 0x3db2e148u, 0x3db8a3d7u, 0x3dbe6666u, 0x3dc428f6u, 0x3dc9eb85u, 0x3ddb3333u,
    0x3df80000u, 0x3e0a6666u, 0x3e18cccdu, 0x3e273333u, 0x3e35999au, 0x3e440000u, 0x3e526666u, 0x3e60cccdu,
    0x3e6f3333u, 0x3e7d999au, 0x3e860000u, 0x3e8d3333u, 0x3e946666u, 0x3e9b999au, 0x3ea2cccdu, 0x3eaa0000u,
    0x3eb13333u, 0x3eb86666u, 0x3ebf999au, 0x3ec6cccdu, 0x3ece0000u, 0x3ed53333u, 0x3edc6666u, 0x3ee3999au,
    0x3eeacccdu, 0x3ef20000u, 0x3ef93333u, 0x3f003333u, 0x3f03cccdu, 0x3f076666u, 0x3f0b0000u, 0x3f0e999au,
    0x3f123333u, 0x3f15cccdu, 0x3f196666u, 0x3f1d0000u, 0x3f20999au, 0x3f243333u, 0x3f27cccdu, 0x3f2b6666u,
    0x3f2f0000u, 0x3f32999au, 0x3f363333u, 0x3f39cccdu, 0x3f3d6666u, 0x3f410000u, 0x3f44999au, 0x3f483333u,
    0x3f4bcccdu, 0x3f4f6666u, 0x3f530000u, 0x3f56999au, 0x3f5a3333u, 0x3f5dcccdu, 0x3f616666u, 0x3f650000u,
    0x3f68999au, 0x3f6c3333u, 0x3f6fcccdu, 0x3f736666u, 0x3f770000u, 0x3f7a999au, 0x3f7e3333u, 0x3f800000u,
    0x00000000u, 0x34ae7ba9u, 0x35500998u, 0x360e9b39u, 0x3692ccf7u, 0x36de4c51u, 0x3714e5d6u, 0x3783126fu,
    0x37e1719fu, 0x381fe868u, 0x384f1801u, 0x387e4799u, 0x3896bb99u, 0x38ae5365u, 0x38c5eb31u, 0x3906594bu,
    0x394154cau, 0x397c5048u, 0x399ba5e3u, 0x39b923a3u, 0x39d6a162u, 0x39f41f21u, 0x3a08ce70u, 0x3a178d50u,
    0x3a264c30u, 0x3a350b0fu, 0x3a43c9efu, 0x3a5288ceu, 0x3a6147aeu, 0x3a70068eu, 0x3a7ec56du, 0x3a958106u,
    0x3aba5e35u, 0x3adf3b64u, 0x3b020c4au, 0x3b147ae1u, 0x3b26e979u, 0x3b395810u, 0x3b4bc6a8u, 0x3b5e353fu,
    0x3b70a3d7u, 0x3b818937u, 0x3b8ac083u, 0x3b93f7cfu, 0x3b9d2f1bu, 0x3ba66666u, 0x3baf9db2u, 0x3bb8d4feu,
    0x3bc20c4au, 0x3bcb4396u, 0x3bd47ae1u, 0x3bddb22du, 0x3be6e979u, 0x3bf020c5u, 0x3bf95810u, 0x3c0147aeu,
    0x3c05e354u, 0x3c0a7efau, 0x3c0f1aa0u, 0x3c13b646u, 0x3c1851ecu, 0x3c1ced91u, 0x3c218937u, 0x3c2f5c29u,
    0x3c466666u, 0x3c5d70a4u, 0x3c747ae1u, 0x3c85c28fu, 0x3c9147aeu, 0x3c9ccccdu, 0x3ca851ecu, 0x3cb3d70au,
    0x3cbf5c29u, 0x3ccae148u, 0x3cd66666u, 0x3ce1eb85u, 0x3ced70a4u, 0x3cf8f5c3u, 0x3d023d71u, 0x3d080000u,
    0x3d0dc28fu, 0x3d13851fu, 0x3d1947aeu, 0x3d1f0a3du, 0x3d24cccdu, 0x3d2a8f5cu, 0x3d3051ecu, 0x3d36147bu,
    0x3d3bd70au, 0x3d41999au, 0x3d475c29u, 0x3d4d1eb8u, 0x3d52e148u, 0x3d58a3d7u, 0x3d5e6666u, 0x3d6428f6u,
    0x3d69eb85u, 0x3d6fae14u, 0x3d7570a4u, 0x3d7b3333u, 0x3d807ae1u, 0x3d835c29u, 0x3d863d71u, 0x3d891eb8u,
    0x3d8c0000u, 0x3d8ee148u, 0x3d91c28fu, 0x3d94a3d7u, 0x3d97851fu, 0x3d9a6666u, 0x3d9d47aeu, 0x3da028f6u,
    0x3da30a3du, 0x3da5eb85u, 0x3da8cccdu, 0x3dabae14u, 0x3dae8f5cu, 0x3db170a4u, 0x3db451ecu, 0x3db73333u,
    0x3dba147bu, 0x3dbcf5c3u, 0x3dbfd70au, 0x3dc2b852u, 0x3dc5999au, 0x3dc87ae1u, 0x3dcb5c29u, 0x3dd40000u,
    0x3de26666u, 0x3df0cccdu, 0x3dff3333u, 0x3e06cccdu, 0x3e0e0000u, 0x3e153333u, 0x3e1c6666u, 0x3e23999au,
    0x3e2acccdu, 0x3e320000u, 0x3e393333u, 0x3e406666u, 0x3e47999au, 0x3e4ecccdu, 0x3e560000u, 0x3e5d3333u,
    0x3e646666u, 0x3e6b999au, 0x3e72cccdu, 0x3e7a0000u, 0x3e80999au, 0x3e843333u, 0x3e87cccdu, 0x3e8b6666u,
    0x3e8f0000u, 0x3e92999au, 0x3e963333u, 0x3e99cccdu, 0x3e9d6666u, 0x3ea10000u, 0x3ea4999au, 0x3ea83333u,
    0x3eabcccdu, 0x3eaf6666u, 0x3eb30000u, 0x3eb6999au, 0x3eba3333u, 0x3ebdcccdu, 0x3ec16666u, 0x3ec50000u,
    0x3ec8999au, 0x3ecc3333u, 0x3ecfcccdu, 0x3ed36666u, 0x3ed70000u, 0x3eda999au, 0x3ede3333u, 0x3ee1cccdu,
    0x3ee56666u, 0x3ee90000u, 0x3eec999au, 0x3ef03333u, 0x3ef3cccdu, 0x3ef76666u, 0x3efb0000u, 0x3efe999au,
    0x3f01199au, 0x3f02e666u, 0x3f04b333u, 0x3f068000u, 0x3f084ccdu, 0x3f0a199au, 0x3f0be666u, 0x3f0db333u,
    0x3f0f8000u, 0x3f114ccdu, 0x3f13199au, 0x3f14e666u, 0x3f16b333u, 0x3f188000u, 0x3f1a4ccdu, 0x3f1c199au,
    0x3f1de666u, 0x3f1fb333u, 0x3f218000u, 0x3f234ccdu, 0x3f25199au, 0x3f26e666u, 0x3f28b333u, 0x3f2a8000u,
    0x3f2c4ccdu, 0x3f2e199au, 0x3f2fe666u, 0x3f31b333u, 0x3f338000u, 0x3f354ccdu, 0x3f37199au, 0x3f38e666u,
    0x3f3ab333u, 0x3f3c8000u, 0x3f3e4ccdu, 0x3f40199au, 0x3f41e666u, 0x3f43b333u, 0x3f458000u, 0x3f474ccdu,
    0x3f49199au, 0x3f4ae666u, 0x3f4cb333u, 0x3f4e8000u, 0x3f504ccdu, 0x3f52199au, 0x3f53e666u, 0x3f55b333u,
    0x3f578000u, 0x3f594ccdu, 0x3f5b199au, 0x3f5ce666u, 0x3f5eb333u, 0x3f608000u, 0x3f624ccdu, 0x3f64199au,
    0x3f65e666u, 0x3f67b333u, 0x3f698000u, 0x3f6b4ccdu, 0x3f6d199au, 0x3f6ee666u, 0x3f70b333u, 0x3f728000u,
    0x3f744ccdu, 0x3f76199au, 0x3f77e666u, 0x3f79b333u, 0x3f7b8000u, 0x3f7d4ccdu, 0x3f7f199au, 0x3f800000u,
};

// The code of x (already divided by its block's scale) in table t: the
// nearest entry, the lower one on a tie; signed codes keep x's sign
// (compute.Quantize8).
__device__ unsigned char adam8_quantize(const float* t, float x, bool sgn) {
  int lo = 0, hi = 255;
  while (lo < hi) {
    int mid = (lo + hi) >> 1;
    if (t[mid] < x) lo = mid + 1; else hi = mid;
  }
  int c = lo;
  if (c > 0 && __fsub_rn(x, t[c - 1]) <= __fsub_rn(t[c], x)) c--;
  if (sgn) {
    if (x < 0.f && t[c] >= 0.f && c > 0) c--;
    else if (x > 0.f && t[c] < 0.f && c < 255) c++;
  }
  return (unsigned char)c;
}

// AdamW with block-wise 8-bit moments: one thread block per quantization
// block of `block` elements (grid-stride over blocks), blockDim a multiple of
// 32, 2·block floats of dynamic shared memory for the updated moments. Every
// operation is rounded as written (no contraction into FMAs), so codes,
// scales and weights match the CPU backend's bit for bit.
extern "C" __global__ void adamw8_f32(float* p, const float* g, unsigned char* m8, unsigned char* v8, float* ms,
                                      float* vs, bf16_t* shadow, long long n, int block, float gscale, float decay,
                                      float b1, float b2, float step_size, float bc2sqrt, float eps) {
  __shared__ float qm[512];
  extern __shared__ float adam8_buf[];
  for (int i = threadIdx.x; i < 512; i += blockDim.x) qm[i] = __uint_as_float(adam8_qmap_bits[i]);
  __syncthreads();
  const float* qs = qm;
  const float* qu = qm + 256;
  float* mb = adam8_buf;
  float* vb = adam8_buf + block;
  float c1 = __fsub_rn(1.f, b1), c2 = __fsub_rn(1.f, b2);
  for (long long b = blockIdx.x; b * block < n; b += gridDim.x) {
    long long lo = b * block;
    int len = (int)min((long long)block, n - lo);
    float mscale = ms[b], vscale = vs[b];
    float mmax = 0.f, vmax = 0.f;
    for (int j = threadIdx.x; j < len; j += blockDim.x) {
      long long i = lo + j;
      float gi = __fmul_rn(g[i], gscale);
      float mi = __fadd_rn(__fmul_rn(b1, __fmul_rn(qs[m8[i]], mscale)), __fmul_rn(c1, gi));
      float vi = __fadd_rn(__fmul_rn(b2, __fmul_rn(qu[v8[i]], vscale)), __fmul_rn(__fmul_rn(c2, gi), gi));
      mb[j] = mi;
      vb[j] = vi;
      mmax = fmaxf(mmax, fabsf(mi));
      vmax = fmaxf(vmax, vi);
      float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2sqrt), eps);
      float pi = __fsub_rn(__fmul_rn(p[i], decay), __fdiv_rn(__fmul_rn(step_size, mi), den));
      p[i] = pi;
      if (shadow) st(shadow, i, pi);
    }
    mmax = block_max(mmax);
    vmax = block_max(vmax);
    if (threadIdx.x == 0) {
      ms[b] = mmax;
      vs[b] = vmax;
    }
    // x·(1/scale), as the CPU and bitsandbytes: one division a block.
    float minv = mmax != 0.f ? __fdiv_rn(1.f, mmax) : 0.f;
    float vinv = vmax != 0.f ? __fdiv_rn(1.f, vmax) : 0.f;
    for (int j = threadIdx.x; j < len; j += blockDim.x) {
      float x = __fmul_rn(mb[j], minv);
      float y = __fmul_rn(vb[j], vinv);
      m8[lo + j] = adam8_quantize(qs, x, true);
      v8[lo + j] = adam8_quantize(qu, y, false);
    }
  }
}

// ---- fused attention (compute.FusedAttention) ---------------------------------
//
// FlashAttention-2's scheme on the CUDA cores (no tensor-core instructions in
// this first version): a block of 128 threads (4 warps) owns 32 rows — 32
// queries of one head in the forward and dq kernels, 32 keys of one key/value
// head in the dk/dv kernel — and walks the 32-wide tiles of the other side
// that its rows may see by position, never holding more than a 32×32 tile of
// scores. Warp w owns rows 8w…8w+7; in a score tile lane l holds the score
// of those rows with the tile's l-th column, and in an accumulator lane l
// holds columns l, l+32, … of the head (NC chunks of 32: HD ≤ 32·NC). The
// score products stage their operands in shared memory 32 columns of the
// head at a time (two 32×36 float chunks, rows 16-byte aligned for 4-wide
// reads); the products that accumulate stage the tile's 32 rows whole
// (32×32·NC floats) and read the warp's probabilities (or score gradients)
// back four at a time, so that each value read serves NC products: at most
// 41 KiB, within the static 48 KiB, for heads up to 256.
//
// The arithmetic is that of the unfused path (compute.FusedAttention): f32
// scores scaled, soft-capped, then masked; with bf16 tensors the
// probabilities and score gradients are rounded to bf16 before the products
// that read them. The f32 forward keeps FlashAttention's online softmax (one
// pass, rescaling); the bf16 forward takes two passes (the log-sum-exp
// first, then p = exp(s − lse) rounded as the unfused path stores it), since
// a probability rounded before its normalisation is not the one the unfused
// path rounds. The backward is two kernels, dq and dk/dv, each recomputing
// the probabilities from lse: no atomics, so the gradients are the same run
// after run, at the price of the score products done twice.

#define ATT_TILE 32 // rows a block owns, columns of a tile, width of a chunk
#define ATT_ROWS 8  // rows a warp owns
#define ATT_THREADS 128

// A chunk's rows are 36 floats: 16-byte aligned for 4-wide reads, and the
// 8 rows a quarter-warp reads 4-wide at once cover the 32 banks.
#define ATT_CHUNK_LD (ATT_TILE + 4)
typedef float att_chunk[ATT_TILE][ATT_CHUNK_LD];
struct __align__(16) att_f4 {
  float x, y, z, w;
};
__device__ __forceinline__ att_f4 ld4(const float* p) { return *(const att_f4*)p; }

__device__ __forceinline__ float round_bf16(float v) {
  unsigned u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return v;
  u += 0x7fffu + ((u >> 16) & 1u);
  return __uint_as_float(u & 0xffff0000u);
}

// attn_score is what the softmax sees of query i and key j of sequence b
// whose dot product is dot: the scaled score, soft-capped when cap > 0 (with
// f = 1 − tanh², the cap's derivative, else 1), −∞ where j is hidden from i
// (past the ends, causal, window, key mask, segments).
__device__ __forceinline__ float attn_score(float dot, int b, int i, int j, int Tq, int TK, int off, int window,
                                            float scale, float cap, const int* km, const int* qs, const int* ks,
                                            float* f) {
  *f = 1.f;
  if (i >= Tq || j >= TK || !window_ok(b, i, j, Tq, TK, off, window, km, qs, ks)) return -INFINITY;
  float s = scale * dot;
  if (cap > 0.f) {
    s = cap * tanhf(s / cap);
    float t = s / cap;
    *f = 1.f - t * t;
  }
  return s;
}

// attn_load fills chunk c with columns [d0, d0+32) of rows [r0, r0+32) of
// the row-major, HD-wide matrix m, zeros past rEnd and HD. Every thread of
// the block calls it; the caller synchronises around it.
template <typename T>
__device__ __forceinline__ void attn_load(att_chunk c, const T* m, int r0, int rEnd, int d0, int HD) {
  for (int e = threadIdx.x; e < ATT_TILE * ATT_TILE; e += ATT_THREADS) {
    int r = e / ATT_TILE, d = e % ATT_TILE;
    c[r][d] = r0 + r < rEnd && d0 + d < HD ? ld(m, (long long)(r0 + r) * HD + d0 + d) : 0.f;
  }
}

// attn_dots sets s[i] to the dot product of row r0 + 8w + i of a with row
// c0 + lane of bm (0 past rEnd, cEnd): the warp's rows against the tile's
// columns. Every thread of the block calls it.
template <typename T>
__device__ __forceinline__ void attn_dots(float s[ATT_ROWS], att_chunk ca, att_chunk cb, const T* a, int r0, int rEnd,
                                          const T* bm, int c0, int cEnd, int HD) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
#pragma unroll
  for (int i = 0; i < ATT_ROWS; i++) s[i] = 0.f;
  for (int d0 = 0; d0 < HD; d0 += ATT_TILE) {
    __syncthreads(); // the previous readers of ca, cb are done
    attn_load(ca, a, r0, rEnd, d0, HD);
    attn_load(cb, bm, c0, cEnd, d0, HD);
    __syncthreads();
    // Four columns at a time: past HD the chunk holds zeros, and d + 3
    // stays below 32.
    int n = min(ATT_TILE, HD - d0);
#pragma unroll 2
    for (int d = 0; d < n; d += 4) {
      att_f4 y = ld4(&cb[lane][d]);
#pragma unroll
      for (int i = 0; i < ATT_ROWS; i++) {
        att_f4 x = ld4(&ca[w * ATT_ROWS + i][d]);
        s[i] += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;
      }
    }
  }
}

// attn_acc adds to acc[i][c] the sum over the tile's columns j of x_j[i] ·
// m[c0 + j][32c + lane], where x_j is lane j's x (0 for a hidden pair) and
// rows of m past cEnd read as 0: the warp's rows of P·V, dS·K, Pᵀ·dO or
// dSᵀ·Q. The warp's x go through px (a chunk free after the score products)
// to be read back four columns at a time, and the tile's 32 rows of m are
// staged whole in sm, so that each x read serves NC products. Every thread
// of the block calls it.
template <typename T, int NC>
__device__ __forceinline__ void attn_acc(float acc[ATT_ROWS][NC], const float x[ATT_ROWS], att_chunk px,
                                         float (*sm)[ATT_TILE * NC], const T* m, int c0, int cEnd, int HD) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  __syncthreads(); // the previous readers of px and sm are done
#pragma unroll
  for (int i = 0; i < ATT_ROWS; i++) px[w * ATT_ROWS + i][lane] = x[i];
  for (int e = threadIdx.x; e < ATT_TILE * ATT_TILE * NC; e += ATT_THREADS) {
    int r = e / (ATT_TILE * NC), d = e % (ATT_TILE * NC);
    sm[r][d] = c0 + r < cEnd && d < HD ? ld(m, (long long)(c0 + r) * HD + d) : 0.f;
  }
  __syncthreads();
#pragma unroll 1 // the body is NC·32 products already
  for (int j = 0; j < ATT_TILE; j += 4) {
    att_f4 xj[ATT_ROWS];
#pragma unroll
    for (int i = 0; i < ATT_ROWS; i++) xj[i] = ld4(&px[w * ATT_ROWS + i][j]);
#pragma unroll
    for (int c = 0; c < NC; c++) {
      if (c * ATT_TILE >= HD) break; // the same for every thread
      float y0 = sm[j][c * ATT_TILE + lane], y1 = sm[j + 1][c * ATT_TILE + lane];
      float y2 = sm[j + 2][c * ATT_TILE + lane], y3 = sm[j + 3][c * ATT_TILE + lane];
#pragma unroll
      for (int i = 0; i < ATT_ROWS; i++) {
        acc[i][c] += xj[i].x * y0;
        acc[i][c] += xj[i].y * y1;
        acc[i][c] += xj[i].z * y2;
        acc[i][c] += xj[i].w * y3;
      }
    }
  }
}

// attn_keys is the range [lo, hi) of keys that queries [q0, q1) may see by
// position (causal and windowed).
__device__ __forceinline__ void attn_keys(int q0, int q1, int TK, int off, int window, int* lo, int* hi) {
  *lo = window > 0 ? max(0, off + q0 - window + 1) : 0;
  *hi = min(TK, off + q1);
}

// Forward: o and lse of 32 queries of head blockIdx.y (= b·H + h); grid
// (⌈T/32⌉, B·H).
template <typename T, int NC>
__device__ void attn_fwd_(T* o, float* lse, const T* q, const T* k, const T* v, const int* km, const int* qs,
                          const int* ks, int H, int KVH, int Tq, int TK, int TMax, int HD, int off, int window,
                          float scale, float cap) {
  __shared__ __align__(16) att_chunk ca, cb;
  __shared__ float sm[ATT_TILE][ATT_TILE * NC];
  const bool twoPass = sizeof(T) == 2; // bf16: p rounded after normalisation
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int bh = blockIdx.y, b = bh / H, kvh = bh % H / (H / KVH);
  const int q0 = blockIdx.x * ATT_TILE, q1 = min(Tq, q0 + ATT_TILE);
  const T* qh = q + (long long)bh * Tq * HD;
  const long long kvo = ((long long)b * KVH + kvh) * TMax * HD;
  int lo, hi;
  attn_keys(q0, q1, TK, off, window, &lo, &hi);
  float m[ATT_ROWS], l[ATT_ROWS], L[ATT_ROWS], acc[ATT_ROWS][NC];
#pragma unroll
  for (int i = 0; i < ATT_ROWS; i++) {
    m[i] = L[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int c = 0; c < NC; c++) acc[i][c] = 0.f;
  }
  for (int pass = twoPass ? 0 : 1; pass < 2; pass++) {
    for (int k0 = lo; k0 < hi; k0 += ATT_TILE) {
      float s[ATT_ROWS];
      attn_dots(s, ca, cb, qh, q0, q1, k + kvo, k0, hi, HD);
#pragma unroll
      for (int i = 0; i < ATT_ROWS; i++) {
        float f;
        s[i] = attn_score(s[i], b, q0 + w * ATT_ROWS + i, k0 + lane, Tq, TK, off, window, scale, cap, km, qs, ks, &f);
      }
      if (!twoPass || pass == 0) {
        // Online softmax statistics (warp-uniform per row); in one pass
        // the accumulator is rescaled and s becomes exp(s − m).
#pragma unroll
        for (int i = 0; i < ATT_ROWS; i++) {
          float mx = fmaxf(m[i], warp_max(s[i]));
          if (mx == -INFINITY) { // nothing seen yet: no exp(−∞ − −∞)
            s[i] = 0.f;
            continue;
          }
          float alpha = __expf(m[i] - mx); // 0 when m was −∞
          float p = __expf(s[i] - mx);     // 0 where hidden
          l[i] = l[i] * alpha + warp_sum(p);
          m[i] = mx;
          s[i] = p;
          if (!twoPass) {
#pragma unroll
            for (int c = 0; c < NC; c++) acc[i][c] *= alpha;
          }
        }
      }
      if (twoPass && pass == 1) {
        // p = exp(s − lse), rounded as the unfused path stores it.
#pragma unroll
        for (int i = 0; i < ATT_ROWS; i++) s[i] = m[i] == -INFINITY ? 0.f : round_bf16(__expf(s[i] - L[i]));
      }
      if (pass == 1) attn_acc<T, NC>(acc, s, ca, sm, v + kvo, k0, hi, HD);
    }
#pragma unroll
    for (int i = 0; i < ATT_ROWS; i++) L[i] = m[i] == -INFINITY ? -INFINITY : m[i] + logf(l[i]);
  }
#pragma unroll
  for (int i = 0; i < ATT_ROWS; i++) {
    int qi = q0 + w * ATT_ROWS + i;
    if (qi >= Tq) continue;
    if (lane == 0) lse[(long long)bh * Tq + qi] = L[i];
    // One pass: o = acc / l (0 for a query that sees nothing); two: acc.
    float inv = twoPass ? 1.f : (l[i] > 0.f ? 1.f / l[i] : 0.f);
#pragma unroll
    for (int c = 0; c < NC; c++) {
      int d = c * ATT_TILE + lane;
      if (d < HD) st(o, ((long long)bh * Tq + qi) * HD + d, acc[i][c] * inv);
    }
  }
}

// attn_grad is the score gradient of a query with lse L and dsum D at a
// key of score sc (−∞ if hidden), factor f and dp = do·v: ds = p·(dp − D)·f,
// with p = exp(sc − L) returned in *p; both rounded to bf16 when round (as
// the unfused path stores them), 0 where hidden or for a query that sees
// nothing.
__device__ __forceinline__ float attn_grad(float sc, float f, float dp, float L, float D, bool round, float* p) {
  *p = 0.f;
  if (sc == -INFINITY || L == -INFINITY) return 0.f;
  float pv = __expf(sc - L);
  if (round) pv = round_bf16(pv);
  *p = pv;
  float ds = pv * (dp - D) * f;
  return round ? round_bf16(ds) : ds;
}

// Backward, dq of 32 queries of head blockIdx.y (= b·H + h): dq = scale ·
// Σ ds·k over the keys they see; grid (⌈T/32⌉, B·H).
template <typename T, int NC>
__device__ void attn_bwd_q_(T* dq, const T* dO, const T* q, const T* k, const T* v, const float* lse,
                            const float* dsum, const int* km, const int* qs, const int* ks, int H, int KVH, int Tq,
                            int TK, int TMax, int HD, int off, int window, float scale, float cap) {
  __shared__ __align__(16) att_chunk ca, cb;
  __shared__ float sm[ATT_TILE][ATT_TILE * NC];
  const bool round = sizeof(T) == 2;
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int bh = blockIdx.y, b = bh / H, kvh = bh % H / (H / KVH);
  const int q0 = blockIdx.x * ATT_TILE, q1 = min(Tq, q0 + ATT_TILE);
  const long long qo = (long long)bh * Tq * HD;
  const long long kvo = ((long long)b * KVH + kvh) * TMax * HD;
  int lo, hi;
  attn_keys(q0, q1, TK, off, window, &lo, &hi);
  float L[ATT_ROWS], D[ATT_ROWS], acc[ATT_ROWS][NC];
#pragma unroll
  for (int i = 0; i < ATT_ROWS; i++) {
    int qi = q0 + w * ATT_ROWS + i;
    L[i] = qi < Tq ? lse[(long long)bh * Tq + qi] : -INFINITY;
    D[i] = qi < Tq ? dsum[(long long)bh * Tq + qi] : 0.f;
#pragma unroll
    for (int c = 0; c < NC; c++) acc[i][c] = 0.f;
  }
  for (int k0 = lo; k0 < hi; k0 += ATT_TILE) {
    float s[ATT_ROWS], dp[ATT_ROWS];
    attn_dots(s, ca, cb, q + qo, q0, q1, k + kvo, k0, hi, HD);
    attn_dots(dp, ca, cb, dO + qo, q0, q1, v + kvo, k0, hi, HD);
#pragma unroll
    for (int i = 0; i < ATT_ROWS; i++) {
      float f, p;
      float sc = attn_score(s[i], b, q0 + w * ATT_ROWS + i, k0 + lane, Tq, TK, off, window, scale, cap, km, qs, ks, &f);
      s[i] = attn_grad(sc, f, dp[i], L[i], D[i], round, &p);
    }
    attn_acc<T, NC>(acc, s, ca, sm, k + kvo, k0, hi, HD);
  }
#pragma unroll
  for (int i = 0; i < ATT_ROWS; i++) {
    int qi = q0 + w * ATT_ROWS + i;
    if (qi >= Tq) continue;
#pragma unroll
    for (int c = 0; c < NC; c++) {
      int d = c * ATT_TILE + lane;
      if (d < HD) st(dq, qo + (long long)qi * HD + d, scale * acc[i][c]);
    }
  }
}

// Backward, dk and dv of 32 keys of key/value head blockIdx.y (= b·KVH +
// kvh): dv = Σ p·do and dk = scale · Σ ds·q over its G query heads and the
// queries that see the keys; grid (⌈TK/32⌉, B·KVH). Steps from TK on are
// left alone.
template <typename T, int NC>
__device__ void attn_bwd_kv_(T* dk, T* dv, const T* dO, const T* q, const T* k, const T* v, const float* lse,
                             const float* dsum, const int* km, const int* qs, const int* ks, int H, int KVH, int Tq,
                             int TK, int TMax, int HD, int off, int window, float scale, float cap) {
  __shared__ __align__(16) att_chunk ca, cb;
  __shared__ float sm[ATT_TILE][ATT_TILE * NC];
  const bool round = sizeof(T) == 2;
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int bk = blockIdx.y, b = bk / KVH, kvh = bk % KVH, G = H / KVH;
  const int k0 = blockIdx.x * ATT_TILE, k1 = min(TK, k0 + ATT_TILE);
  const long long kvo = (long long)bk * TMax * HD;
  // The queries that may see keys [k0, k1) by position: i ≥ j − off, and
  // with a window i < j − off + window.
  const int qlo = max(0, k0 - off), qhi = window > 0 ? min(Tq, k1 - 1 - off + window) : Tq;
  float gk[ATT_ROWS][NC], gv[ATT_ROWS][NC];
#pragma unroll
  for (int i = 0; i < ATT_ROWS; i++)
#pragma unroll
    for (int c = 0; c < NC; c++) gk[i][c] = gv[i][c] = 0.f;
  for (int g = 0; g < G; g++) {
    const long long bh = (long long)b * H + kvh * G + g;
    const T* qh = q + bh * Tq * HD;
    const T* doh = dO + bh * Tq * HD;
    for (int q0 = qlo; q0 < qhi; q0 += ATT_TILE) {
      const int qi = q0 + lane;
      const float L = qi < qhi ? lse[bh * Tq + qi] : -INFINITY;
      const float D = qi < qhi ? dsum[bh * Tq + qi] : 0.f;
      float s[ATT_ROWS], dp[ATT_ROWS], p[ATT_ROWS];
      attn_dots(s, ca, cb, k + kvo, k0, k1, qh, q0, qhi, HD);
      attn_dots(dp, ca, cb, v + kvo, k0, k1, doh, q0, qhi, HD);
#pragma unroll
      for (int i = 0; i < ATT_ROWS; i++) {
        float f;
        float sc = attn_score(s[i], b, qi, k0 + w * ATT_ROWS + i, Tq, TK, off, window, scale, cap, km, qs, ks, &f);
        s[i] = attn_grad(sc, f, dp[i], L, D, round, &p[i]);
      }
      attn_acc<T, NC>(gv, p, ca, sm, doh, q0, qhi, HD);
      attn_acc<T, NC>(gk, s, ca, sm, qh, q0, qhi, HD);
    }
  }
#pragma unroll
  for (int i = 0; i < ATT_ROWS; i++) {
    int j = k0 + w * ATT_ROWS + i;
    if (j >= k1) continue;
#pragma unroll
    for (int c = 0; c < NC; c++) {
      int d = c * ATT_TILE + lane;
      if (d < HD) {
        st(dk, kvo + (long long)j * HD + d, scale * gk[i][c]);
        st(dv, kvo + (long long)j * HD + d, gv[i][c]);
      }
    }
  }
}

// The kernels for heads of up to 64, 128 and 256 (NC = 2, 4, 8 chunks).
#define ATT_SHAPE int H, int KVH, int Tq, int TK, int TMax, int HD, int off, int window, float scale, float cap
#define ATT_SHAPE_ARGS H, KVH, Tq, TK, TMax, HD, off, window, scale, cap
#define ATT_FWD(T) T *o, float *lse, const T *q, const T *k, const T *v, const int *km, const int *qs, const int *ks
#define ATT_BQ(T)                                                                                               \
  T *dq, const T *dO, const T *q, const T *k, const T *v, const float *lse, const float *dsum, const int *km, \
      const int *qs, const int *ks
#define ATT_BKV(T)                                                                                              \
  T *dk, T *dv, const T *dO, const T *q, const T *k, const T *v, const float *lse, const float *dsum,          \
      const int *km, const int *qs, const int *ks
#define INST_ATTN(N, T)                                                                                        \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS) attn_fwd64_##N(ATT_FWD(T), ATT_SHAPE) {           \
    attn_fwd_<T, 2>(o, lse, q, k, v, km, qs, ks, ATT_SHAPE_ARGS);                                              \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS) attn_fwd128_##N(ATT_FWD(T), ATT_SHAPE) {          \
    attn_fwd_<T, 4>(o, lse, q, k, v, km, qs, ks, ATT_SHAPE_ARGS);                                              \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS) attn_fwd256_##N(ATT_FWD(T), ATT_SHAPE) {          \
    attn_fwd_<T, 8>(o, lse, q, k, v, km, qs, ks, ATT_SHAPE_ARGS);                                              \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS) attn_bwd_q64_##N(ATT_BQ(T), ATT_SHAPE) {          \
    attn_bwd_q_<T, 2>(dq, dO, q, k, v, lse, dsum, km, qs, ks, ATT_SHAPE_ARGS);                                 \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS) attn_bwd_q128_##N(ATT_BQ(T), ATT_SHAPE) {         \
    attn_bwd_q_<T, 4>(dq, dO, q, k, v, lse, dsum, km, qs, ks, ATT_SHAPE_ARGS);                                 \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS) attn_bwd_q256_##N(ATT_BQ(T), ATT_SHAPE) {         \
    attn_bwd_q_<T, 8>(dq, dO, q, k, v, lse, dsum, km, qs, ks, ATT_SHAPE_ARGS);                                 \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS) attn_bwd_kv64_##N(ATT_BKV(T), ATT_SHAPE) {        \
    attn_bwd_kv_<T, 2>(dk, dv, dO, q, k, v, lse, dsum, km, qs, ks, ATT_SHAPE_ARGS);                            \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS) attn_bwd_kv128_##N(ATT_BKV(T), ATT_SHAPE) {       \
    attn_bwd_kv_<T, 4>(dk, dv, dO, q, k, v, lse, dsum, km, qs, ks, ATT_SHAPE_ARGS);                            \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS) attn_bwd_kv256_##N(ATT_BKV(T), ATT_SHAPE) {       \
    attn_bwd_kv_<T, 8>(dk, dv, dO, q, k, v, lse, dsum, km, qs, ks, ATT_SHAPE_ARGS);                            \
  }

BOTH(INST_ATTN)
