// Runs the fused attention kernels of kernels.cu on the CPU (shim.h) for
// one problem read from standard input and writes o, lse, dq, dk and dv as
// float32 to standard output. Input: 12 int32 (element type 0 f32 / 1 bf16,
// B, H, KVH, T, TK, TMax, HD, Off, Window, has key mask, has segments),
// 2 float32 (scale, soft cap), then float32 q, k, v, do, dsum, the initial
// dk/dv, and int32 key mask [B·TK], query segments [B·T], key segments
// [B·TK] when present.
#include <cstdint>

#include "shim.h"
#include "kernels_attn.cu"

static void rd(void* p, size_t n) {
  if (n && fread(p, 1, n, stdin) != n) {
    fprintf(stderr, "short input\n");
    exit(2);
  }
}
static std::vector<float> rdf(size_t n) {
  std::vector<float> v(n);
  rd(v.data(), n * 4);
  return v;
}
static std::vector<int> rdi(size_t n) {
  std::vector<int> v(n);
  rd(v.data(), n * 4);
  return v;
}
static void conv(std::vector<float>& dst, const std::vector<float>& v) { dst = v; }
static void conv(std::vector<bf16_t>& dst, const std::vector<float>& v) {
  dst.resize(v.size());
  for (size_t i = 0; i < v.size(); i++) dst[i] = (bf16_t)(__float_as_uint(v[i]) >> 16);
}
static float wide(float v) { return v; }
static float wide(bf16_t v) { return __uint_as_float((unsigned)v << 16); }
template <typename T>
static void out(const std::vector<T>& v) {
  for (auto x : v) {
    float f = wide(x);
    fwrite(&f, 4, 1, stdout);
  }
}

#define DISPATCH(W, N, T)                                                                                  \
  if (w == W) {                                                                                            \
    if (nq) emu_launch((Tq + 31) / 32, B * H, 128, [&] {                                                       \
      attn_fwd##W##_##N(o.data(), lse.data(), q.data(), k.data(), v.data(), km, qs, ks, H, KVH, Tq, TK, TMax, \
                        HD, off, window, scale, cap);                                                      \
    });                                                                                                    \
    if (nq) emu_launch((Tq + 31) / 32, B * H, 128, [&] {                                                       \
      attn_bwd_q##W##_##N(dq.data(), dO.data(), q.data(), k.data(), v.data(), lse.data(), dsum.data(), km, qs, \
                          ks, H, KVH, Tq, TK, TMax, HD, off, window, scale, cap);                          \
    });                                                                                                    \
    if (B * KVH * TK) emu_launch((TK + 31) / 32, B * KVH, 128, [&] {                                           \
      attn_bwd_kv##W##_##N(dk.data(), dv.data(), dO.data(), q.data(), k.data(), v.data(), lse.data(),      \
                           dsum.data(), km, qs, ks, H, KVH, Tq, TK, TMax, HD, off, window, scale, cap);    \
    });                                                                                                    \
  }

template <typename T>
static void run(const int* h, float scale, float cap) {
  int B = h[1], H = h[2], KVH = h[3], Tq = h[4], TK = h[5], TMax = h[6], HD = h[7], off = h[8], window = h[9];
  size_t nq = (size_t)B * H * Tq * HD, nk = (size_t)B * KVH * TMax * HD, nr = (size_t)B * H * Tq;
  std::vector<T> q, k, v, dO, dk, dv;
  conv(q, rdf(nq));
  conv(k, rdf(nk));
  conv(v, rdf(nk));
  conv(dO, rdf(nq));
  std::vector<float> dsum = rdf(nr), dkv0 = rdf(nk);
  conv(dk, dkv0);
  conv(dv, dkv0);
  std::vector<int> kmv, qsv, ksv;
  const int *km = nullptr, *qs = nullptr, *ks = nullptr;
  if (h[10]) km = (kmv = rdi((size_t)B * TK)).data();
  if (h[11]) {
    qs = (qsv = rdi((size_t)B * Tq)).data();
    ks = (ksv = rdi((size_t)B * TK)).data();
  }
  std::vector<T> o(nq), dq(nq);
  std::vector<float> lse(nr);
  int w = HD <= 64 ? 64 : HD <= 128 ? 128 : 256;
  if constexpr (sizeof(T) == 4) {
    DISPATCH(64, f32, T) DISPATCH(128, f32, T) DISPATCH(256, f32, T)
  } else {
    DISPATCH(64, bf16, T) DISPATCH(128, bf16, T) DISPATCH(256, bf16, T)
  }
  out(o);
  out(lse);
  out(dq);
  out(dk);
  out(dv);
}

int main() {
  int h[12];
  float sc[2];
  rd(h, sizeof h);
  rd(sc, sizeof sc);
  if (h[0] == 0) run<float>(h, sc[0], sc[1]);
  else run<bf16_t>(h, sc[0], sc[1]);
  return 0;
}
