// Stand-ins for the CUDA built-ins used by kernels/conv_cuda.cu, so it compiles as OpenMP C++ (see run.sh).
#pragma once
#include <omp.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include "common.h"
struct dim3 { unsigned x, y, z; dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
struct float4 { float x, y, z, w; };
struct float2 { float x, y; };
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
template <class T> T __ldg(const T* p) { return *p; }
using std::min;
#define PYA_CHECK_LAUNCH(x)
#define PYA_CUDA_CHECK(x) (x)
inline int cudaMemsetAsync(void* p, int v, size_t n, pya::Stream) { std::memset(p, v, n); return 0; }
namespace pya {
inline unsigned int grid_for(int64_t n, int threads, int64_t max_blocks = 65535LL * 16) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > max_blocks) blocks = max_blocks;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned int>(blocks);
}
}
template <class F> void emu_launch(dim3 grid, unsigned threads, F f) {
  emu_grid_dim = grid;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        emu_block_idx = dim3(x, y, z);
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
