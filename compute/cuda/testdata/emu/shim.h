// CPU stand-ins for the CUDA built-ins the fused attention kernels use, so
// that kernels.cu's attention section compiles as C++ and runs on the CPU
// (x86-64): every GPU thread of a block is a fiber with its own stack, run
// one at a time; __syncthreads and the warp shuffles are barriers where a
// fiber waits for its block or warp. Blocks run one after another, so
// static variables stand in for shared memory.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#undef INFINITY
#define __expf(x) expf(x)
#define __logf(x) logf(x)
#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(n)
#define __align__(n) __attribute__((aligned(n)))

struct dim3e {
  unsigned x, y, z;
};
static dim3e threadIdx, blockIdx, blockDim, gridDim;

static inline float __int_as_float(int i) {
  float f;
  memcpy(&f, &i, 4);
  return f;
}
static inline float __uint_as_float(unsigned i) {
  float f;
  memcpy(&f, &i, 4);
  return f;
}
static inline unsigned __float_as_uint(float f) {
  unsigned i;
  memcpy(&i, &f, 4);
  return i;
}
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }

// emu_switch saves the callee-saved registers and stack pointer of the
// running context in *from and resumes the one saved in to.
extern "C" void emu_switch(void** from, void* to);
asm(R"(
.text
.globl emu_switch
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
)");

struct emu_fiber {
  void* sp;
  std::vector<char> stack;
  bool done, waiting;
};
struct emu_barrier {
  int count, arrived;
  std::vector<int> waiters;
};
static std::vector<emu_fiber> emu_fibers;
static void* emu_sched_sp;
static int emu_cur;
static void (*emu_body)(void*);
static void* emu_arg;
static emu_barrier emu_block_bar, emu_warp_bar[32];
static float emu_warp_buf[32][32];

static void emu_yield() { emu_switch(&emu_fibers[emu_cur].sp, emu_sched_sp); }

static void emu_wait(emu_barrier& b) {
  if (++b.arrived < b.count) {
    b.waiters.push_back(emu_cur);
    emu_fibers[emu_cur].waiting = true;
    emu_yield();
    return;
  }
  b.arrived = 0;
  for (int f : b.waiters) emu_fibers[f].waiting = false;
  b.waiters.clear();
}

static inline void __syncthreads() { emu_wait(emu_block_bar); }
static inline float emu_shfl(float v, int src) {
  int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  emu_warp_buf[w][lane] = v;
  emu_wait(emu_warp_bar[w]);
  float r = emu_warp_buf[w][src & 31];
  emu_wait(emu_warp_bar[w]);
  return r;
}
static inline float __shfl_sync(unsigned, float v, int src) { return emu_shfl(v, src); }
static inline float __shfl_xor_sync(unsigned, float v, int o) { return emu_shfl(v, (threadIdx.x % 32) ^ o); }

static void emu_entry() {
  emu_body(emu_arg);
  emu_fibers[emu_cur].done = true;
  emu_yield();
  abort(); // a finished fiber is never resumed
}

// emu_launch runs f on a grid of gx × gy blocks of `threads` threads.
template <typename F>
static void emu_launch(unsigned gx, unsigned gy, unsigned threads, F f) {
  const size_t stackSize = 256 << 10;
  blockDim = {threads, 1, 1};
  gridDim = {gx, gy, 1};
  emu_fibers.resize(threads);
  for (auto& fb : emu_fibers) fb.stack.resize(stackSize);
  emu_body = [](void* a) { (*(F*)a)(); };
  emu_arg = &f;
  for (unsigned by = 0; by < gy; by++)
    for (unsigned bx = 0; bx < gx; bx++) {
      emu_block_bar = {(int)threads, 0, {}};
      for (unsigned w = 0; w < threads / 32; w++) emu_warp_bar[w] = {32, 0, {}};
      for (unsigned t = 0; t < threads; t++) {
        emu_fiber& fb = emu_fibers[t];
        fb.done = fb.waiting = false;
        // The first switch pops six registers and returns into emu_entry
        // with the stack aligned as at a call.
        uintptr_t top = ((uintptr_t)fb.stack.data() + stackSize) & ~(uintptr_t)15;
        void** sp = (void**)(top - 16);
        sp[0] = (void*)emu_entry;
        sp -= 6;
        for (int r = 0; r < 6; r++) sp[r] = nullptr;
        fb.sp = sp;
      }
      for (;;) {
        bool progress = false, live = false;
        for (unsigned t = 0; t < threads; t++) {
          emu_fiber& fb = emu_fibers[t];
          if (fb.done) continue;
          live = true;
          if (fb.waiting) continue;
          emu_cur = t;
          threadIdx = {t, 0, 0};
          blockIdx = {bx, by, 0};
          emu_switch(&emu_sched_sp, fb.sp);
          progress = true;
        }
        if (!live) break;
        if (!progress) {
          fprintf(stderr, "emulator: block (%u, %u) deadlocked: every live thread waits at a barrier\n", bx, by);
          exit(3);
        }
      }
    }
}
