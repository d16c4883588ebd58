// Stand-ins for the CUDA built-ins used by kernels/{lrn,pool,softmax}_cuda.cu, so that make_emu.py's
// rewrite of them compiles as OpenMP C++ (see run.sh). The built-ins both harnesses share are in
// tests/cuda_emulation_common/emu_builtins.h; this adds dynamic and per-block static shared memory, warp
// shuffles, atomicInc, __threadfence, __ldcg and __launch_bounds__ checks.
//
// A launch runs its blocks one after another; a block is an OpenMP team of blockDim.x threads, so
// __syncthreads is an omp barrier. Warp-synchronous built-ins (__shfl_*_sync, __syncwarp) exchange
// through a per-warp buffer between two per-warp barriers: valid when the 32 lanes of a warp (fewer in a
// block's last, partial warp) all call them with the full mask, as the kernels here must; a lane that
// never arrives (it left the loop or the kernel) makes the others fail after a timeout, not hang.
#pragma once
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "emu_builtins.h"

// Grids sized with grid_for get at most this many blocks (make_emu.py sends the kernels' grid_for here): a check
// lowers it so that the kernels' grid-stride loops, which AlexNet's shapes never take, run.
inline int64_t emu_grid_for_cap = 65535LL * 16;
inline unsigned int emu_grid_for(int64_t n, int threads, int64_t max_blocks = 65535LL * 16) {
  return pya::grid_for(n, threads, std::min(max_blocks, emu_grid_for_cap));
}
inline long emu_launches = 0;  // launches made (dry or not): lets a check count them
inline bool emu_blocks_backwards = false;  // run blockIdx.x from the last to the first (the GPU's order is any)

constexpr size_t kEmuSharedLimit = 48 * 1024;  // static + dynamic, per block, without an opt-in
constexpr unsigned char kEmuPoisonByte = 0xff;  // a float of four of these is a NaN; an int is -1

// ---- per-block state -----------------------------------------------------------------------------------------

struct EmuWarp {
  std::mutex m;
  std::condition_variable cv;
  int lanes = 32, arrived = 0;
  unsigned generation = 0;
  uint64_t value[32];
};

struct EmuBlock {
  unsigned threads = 0;
  std::unique_ptr<unsigned char[]> dynamic_smem;  // exactly the launch's size: ASan sees overruns
  size_t dynamic_bytes = 0;
  std::mutex static_mutex;
  std::map<int, std::unique_ptr<unsigned char[]>> static_smem;  // one allocation per __shared__ declaration
  size_t static_bytes = 0;
  std::unique_ptr<EmuWarp[]> warps;
};
inline EmuBlock* emu_block = nullptr;

inline void* emu_dynamic_smem() { return emu_block->dynamic_smem.get(); }

// The buffer of __shared__ declaration `id` in the running block: allocated and poisoned by the first
// thread that reaches the declaration, the same for every thread of the block.
inline void* emu_static_smem(size_t bytes, int id) {
  std::lock_guard<std::mutex> lock(emu_block->static_mutex);
  auto& slot = emu_block->static_smem[id];
  if (!slot) {
    slot.reset(new unsigned char[bytes]);
    std::memset(slot.get(), kEmuPoisonByte, bytes);
    emu_block->static_bytes += bytes;
    if (emu_block->static_bytes + emu_block->dynamic_bytes > kEmuSharedLimit)
      emu_fail("static + dynamic shared memory over 48 KiB (the GPU needs an opt-in above that)");
  }
  return slot.get();
}

inline void emu_check_launch_bounds(int max_threads) {
  if (int(blockDim.x) > max_threads) emu_fail("launch with more threads per block than the kernel's __launch_bounds__");
}

// ---- warp-synchronous built-ins -------------------------------------------------------------------------------

inline int emu_lane() { return int(threadIdx.x) % 32; }
inline EmuWarp& emu_warp() { return emu_block->warps[threadIdx.x / 32]; }

inline void emu_warp_barrier() {
  EmuWarp& w = emu_warp();
  std::unique_lock<std::mutex> lock(w.m);
  unsigned gen = w.generation;
  if (++w.arrived == w.lanes) {
    w.arrived = 0;
    ++w.generation;
    w.cv.notify_all();
    return;
  }
  if (!w.cv.wait_for(lock, std::chrono::seconds(60), [&] { return w.generation != gen; }))
    emu_fail("a warp-synchronous call (__shfl_*_sync, __syncwarp) was not reached by every lane of its warp");
}

inline void emu_check_mask(unsigned mask) {
  unsigned lanes = unsigned(emu_warp().lanes);
  unsigned full = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
  if (mask != full) emu_fail("warp-synchronous call with a partial mask (the emulation supports full warps only)");
}

template <class T> T emu_shfl(unsigned mask, T v, int src_lane) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a type wider than 8 bytes");
  emu_check_mask(mask);
  EmuWarp& w = emu_warp();
  std::memcpy(&w.value[emu_lane()], &v, sizeof(T));
  emu_warp_barrier();
  T r;
  std::memcpy(&r, &w.value[src_lane], sizeof(T));
  emu_warp_barrier();  // nobody overwrites a value before every lane has read it
  return r;
}

// width: a power of two <= 32, dividing the warp into segments of that many lanes (as on the GPU).
template <class T> T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  int lane = emu_lane(), base = lane & ~(width - 1);
  return emu_shfl(mask, v, base + (src & (width - 1)));
}
template <class T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  int lane = emu_lane(), src = lane ^ lane_mask;
  if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
  if (src >= emu_warp().lanes) src = lane;  // a missing lane of a partial warp: the value is undefined on the GPU
  return emu_shfl(mask, v, src);
}
template <class T> T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  int lane = emu_lane(), src = lane + int(delta);
  if ((src & ~(width - 1)) != (lane & ~(width - 1)) || src >= emu_warp().lanes) src = lane;
  return emu_shfl(mask, v, src);
}
template <class T> T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  int lane = emu_lane(), src = lane - int(delta);
  if (src < 0 || (src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
  return emu_shfl(mask, v, src);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  emu_check_mask(mask);
  emu_warp_barrier();
}

// ---- global-memory atomics, fences and L2 loads ---------------------------------------------------------------
// Blocks run one after another, so a kernel's "last block" (the one that draws the last ticket from a counter)
// is the last to run, and a fence has nothing to order; what these check is the kernels' use of them: the
// counter's wrap, and that loads bypassing L1 read what the other blocks wrote.

inline unsigned int atomicInc(unsigned int* address, unsigned int limit) {  // CUDA's: old >= limit ? 0 : old + 1
  unsigned int old = __atomic_load_n(address, __ATOMIC_SEQ_CST);
  while (!__atomic_compare_exchange_n(address, &old, old >= limit ? 0u : old + 1u, false, __ATOMIC_SEQ_CST,
                                      __ATOMIC_SEQ_CST)) {
  }
  return old;
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
template <class T> T __ldcg(const T* p) { return __ldg(p); }  // with __ldg's alignment check

// ---- launches --------------------------------------------------------------------------------------------------

template <class F> void emu_launch(dim3 grid, unsigned threads, size_t dynamic_smem, pya::Stream stream, F f) {
  ++emu_launches;
  // What the GPU would refuse (or run on the wrong stream), checked before anything runs.
  if (stream != emu_expected_stream) emu_fail("kernel launched on a stream other than the caller's");
  if (grid.x < 1 || grid.y < 1 || grid.z < 1) emu_fail("empty grid");
  if (grid.x > 2147483647u || grid.y > 65535u || grid.z > 65535u) emu_fail("grid dimension over the CUDA limit");
  if (threads < 1 || threads > 1024) emu_fail("block size over the CUDA limit");
  if (dynamic_smem > kEmuSharedLimit) emu_fail("dynamic shared memory over 48 KiB: would need cudaFuncSetAttribute");
  if (emu_dry_run) return;
  emu_grid_dim = grid;
  const unsigned nwarps = (threads + 31) / 32;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        emu_block_idx = dim3(emu_blocks_backwards ? grid.x - 1 - x : x, y, z);
        if (emu_run_block && !emu_run_block(emu_block_idx, grid)) continue;
        EmuBlock block;
        block.threads = threads;
        block.dynamic_bytes = dynamic_smem;
        block.dynamic_smem.reset(new unsigned char[dynamic_smem]);
        std::memset(block.dynamic_smem.get(), kEmuPoisonByte, dynamic_smem);
        block.warps.reset(new EmuWarp[nwarps]);
        for (unsigned w = 0; w < nwarps; ++w) block.warps[w].lanes = int(std::min(32u, threads - 32 * w));
        emu_block = &block;
#pragma omp parallel num_threads(threads)
        {
          if (omp_get_num_threads() != int(threads)) std::abort();
          f();
        }
        emu_block = nullptr;
      }
}
