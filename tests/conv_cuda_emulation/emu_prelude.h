// Stand-ins for the CUDA built-ins used by kernels/conv_cuda.cu, so it compiles as OpenMP C++ (see run.sh).
#pragma once
#include <omp.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include "common.h"
struct dim3 { unsigned x, y, z; dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
// Aligned like CUDA's, so -fsanitize=alignment (run.sh) flags a misaligned vector access, shared or global.
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
inline dim3 emu_block_idx, emu_grid_dim;
#define blockIdx emu_block_idx
#define gridDim emu_grid_dim
#define threadIdx (dim3(unsigned(omp_get_thread_num())))
#define blockDim (dim3(unsigned(omp_get_num_threads())))
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __syncthreads() _Pragma("omp barrier")
template <class T> T __ldg(const T* p) {
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(T) != 0) {
    std::fprintf(stderr, "misaligned __ldg of %zu bytes at %p\n", sizeof(T), static_cast<const void*>(p));
    std::abort();
  }
  return *p;
}
using std::min;
#define PYA_CHECK_LAUNCH(x)
#define PYA_CUDA_CHECK(x) (x)
// Every launch and memset must go to the stream the caller passed (compare_with_cpu.cpp passes a fake,
// non-default one); a dry run only checks the launch configurations; emu_run_block, when set, picks which
// blocks run (the big-shape checks run a few blocks of batch-128 AlexNet layers).
inline pya::Stream emu_expected_stream = nullptr;
inline bool emu_dry_run = false;
inline bool (*emu_run_block)(dim3 block, dim3 grid) = nullptr;
[[noreturn]] inline void emu_fail(const char* what) { std::fprintf(stderr, "EMULATION CHECK FAILED: %s\n", what); std::abort(); }
inline int cudaMemsetAsync(void* p, int v, size_t n, pya::Stream stream) {
  if (stream != emu_expected_stream) emu_fail("cudaMemsetAsync not on the caller's stream");
  if (!emu_dry_run) std::memset(p, v, n);
  return 0;
}
// Grid-stride kernels sized with grid_for get at most this many blocks: the batch-128 Winograd checks lower
// it so their transforms (millions of elements, run whole) take a few blocks that loop, not ~10^4 blocks of
// 256 OpenMP threads each.
inline int64_t emu_grid_for_cap = 65535LL * 16;
template <class F> void emu_launch(dim3 grid, unsigned threads, size_t dynamic_smem, pya::Stream stream, F f) {
  // What the GPU would refuse (or run on the wrong stream), checked before anything runs.
  if (stream != emu_expected_stream) emu_fail("kernel launched on a stream other than the caller's");
  if (grid.x < 1 || grid.y < 1 || grid.z < 1) emu_fail("empty grid");
  if (grid.x > 2147483647u || grid.y > 65535u || grid.z > 65535u) emu_fail("grid dimension over the CUDA limit");
  if (threads < 1 || threads > 1024) emu_fail("block size over the CUDA limit");
  if (dynamic_smem != 0) emu_fail("dynamic shared memory: would need cudaFuncSetAttribute above 48 KiB");
  if (emu_dry_run) return;
  emu_grid_dim = grid;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        emu_block_idx = dim3(x, y, z);
        if (emu_run_block && !emu_run_block(emu_block_idx, grid)) continue;
#pragma omp parallel num_threads(threads)
        {
          if (omp_get_num_threads() != int(threads)) std::abort();
          f();
        }
      }
}
enum { cudaDevAttrMultiProcessorCount = 16 };
// Device 0 looks like an H100 (132 SMs); device 1 has one SM, so even tiny grids fill several waves and
// the forward and data-gradient launchers pick 128-row tiles (compare_with_cpu.cpp runs both).
inline int emu_device = 0;
inline int cudaGetDevice(int* d) { *d = emu_device; return 0; }
inline int cudaDeviceGetAttribute(int* v, int, int device) { *v = device == 0 ? 132 : 1; return 0; }
