// Shared by every kernel, CPU and CUDA alike. No Python, no CUDA headers:
// the CPU backend is compiled by a plain C++ compiler.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

// Per-element math used by both backends is written once, in PYA_HD helpers,
// so the CPU tests exercise the exact arithmetic the GPU runs.
#if defined(__CUDACC__)
#define PYA_HD __host__ __device__ __forceinline__
#else
#define PYA_HD inline
#endif

// cudaStream_t is `CUstream_st*`; forward-declaring it lets the CPU and CUDA
// launchers share one signature without the CPU side including CUDA headers.
struct CUstream_st;

namespace pya {

using Stream = CUstream_st*;

// Raised by kernels for conditions the bindings could not have caught
// (for example a CUDA launch failure). pybind11 maps it to RuntimeError.
struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Blocks for a 1-D grid-stride launch over n elements, capped so the grid stays legal. Here rather than in
// cuda_check.h so the CPU emulation of the CUDA kernels (tests/*_cuda_emulation) uses the same rule.
inline unsigned int grid_for(int64_t n, int threads, int64_t max_blocks = 65535LL * 16) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > max_blocks) blocks = max_blocks;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned int>(blocks);
}

}  // namespace pya
