// Stand-ins for the CUDA built-ins used by kernels/conv_cuda.cu, so it compiles as OpenMP C++ (see run.sh).
#pragma once
#include "emu_builtins.h"
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
inline int cudaMemsetAsync(void* p, int v, size_t n, pya::Stream stream) {
  if (stream != emu_expected_stream) emu_fail("cudaMemsetAsync not on the caller's stream");
  if (!emu_dry_run) std::memset(p, v, n);
  return 0;
}
// Grid-stride kernels sized with grid_for get at most this many blocks: the batch-128 Winograd checks lower
// it so their transforms (millions of elements, run whole) take a few blocks that loop, not ~10^4 blocks of
// 256 OpenMP threads each.
inline int64_t emu_grid_for_cap = 65535LL * 16;
inline unsigned int emu_grid_for(int64_t n, int threads) {  // make_emu.py sends the kernels' grid_for calls here
  return pya::grid_for(n, threads, std::min<int64_t>(65535LL * 16, emu_grid_for_cap));
}
// Run the blocks from the last to the first (a GPU runs them in any order): a block that reads what another block
// of the same launch writes (or memory past its own) then sees it before it is written.
inline bool emu_blocks_backwards = false;
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
        emu_block_idx = emu_blocks_backwards ? dim3(grid.x - 1 - x, grid.y - 1 - y, grid.z - 1 - z) : dim3(x, y, z);
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
