// The CUDA built-ins both CPU emulations need (tests/conv_cuda_emulation, tests/layer_cuda_emulation):
// a block is an OpenMP team, so the thread and block indices come from OpenMP and the launch loop, and
// __syncthreads is an omp barrier. Each harness's emu_prelude.h adds its launch and shared memory.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "common.h"

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
// Aligned like CUDA's, so -fsanitize=alignment (run.sh) flags a misaligned vector access, shared or global.
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(4) uchar4 { unsigned char x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline dim3 emu_block_idx, emu_grid_dim;
#define blockIdx emu_block_idx
#define gridDim emu_grid_dim
#define threadIdx (dim3(unsigned(omp_get_thread_num())))
#define blockDim (dim3(unsigned(omp_get_num_threads())))
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __grid_constant__
#define __syncthreads() _Pragma("omp barrier")
#define CUDART_NAN_F std::numeric_limits<float>::quiet_NaN()
#define CUDART_INF_F std::numeric_limits<float>::infinity()
template <class T> T __ldg(const T* p) {
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(T) != 0) {
    std::fprintf(stderr, "misaligned __ldg of %zu bytes at %p\n", sizeof(T), static_cast<const void*>(p));
    std::abort();
  }
  return *p;
}
using std::max;
using std::min;
#define PYA_CHECK_LAUNCH(x)
#define PYA_CUDA_CHECK(x) (x)

// Every launch (and memset) must go to the stream the caller passed (compare_with_cpu.cpp passes a fake,
// non-default one); a dry run only checks the launch configurations; emu_run_block, when set, picks which
// blocks run (the big-shape checks run a few blocks of batch-128 AlexNet layers).
inline pya::Stream emu_expected_stream = nullptr;
inline bool emu_dry_run = false;
inline bool (*emu_run_block)(dim3 block, dim3 grid) = nullptr;
[[noreturn]] inline void emu_fail(const char* what) {
  std::fprintf(stderr, "EMULATION CHECK FAILED: %s\n", what);
  std::fflush(stdout);
  std::abort();
}
