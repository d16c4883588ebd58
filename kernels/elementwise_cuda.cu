// Element-wise kernels: purely bandwidth-bound. When every pointer is 16-byte
// aligned (the usual case: whole arrays), each thread moves kUnroll float4s,
// issuing all its loads before its first store, so several 16-byte loads per
// thread are in flight; the last n % 4 elements are done by scalar accesses.
// A block then covers kThreads * kUnroll * 4 elements, so the grid is a few
// thousand blocks, not one per 256 elements. Views at odd offsets take a
// scalar path with the same unrolled structure.
#include <cstdint>

#include "cuda_check.h"
#include "elementwise.h"

namespace pya::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;

__host__ __device__ bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// An Op holds the pointers and parameters; Op::load(i) returns the values of
// item i (a float or a float4 of each input) and Op::store(i, item) writes its
// results. Each thread does kUnroll items from `base`, kThreads apart, loads first.
template <class Op>
__device__ __forceinline__ void unrolled_items(const Op& op, int64_t base, int64_t n) {
  typename Op::Item item[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    int64_t i = base + int64_t(u) * kThreads;
    if (i < n) item[u] = op.load(i);
  }
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    int64_t i = base + int64_t(u) * kThreads;
    if (i < n) op.store(i, item[u]);
  }
}

// Grid-stride over items [0, n).
template <class Op>
__device__ __forceinline__ void unrolled_loop(const Op& op, int64_t n) {
  int64_t stride = int64_t(gridDim.x) * kThreads * kUnroll;
  for (int64_t base = int64_t(blockIdx.x) * kThreads * kUnroll + threadIdx.x; base < n; base += stride)
    unrolled_items(op, base, n);
}

__device__ __forceinline__ float relu4(float a) { return relu_value(a); }
__device__ __forceinline__ float4 relu4(float4 a) {
  return make_float4(relu_value(a.x), relu_value(a.y), relu_value(a.z), relu_value(a.w));
}
__device__ __forceinline__ float relu_grad4(float g, float y) { return relu_grad(g, y); }
__device__ __forceinline__ float4 relu_grad4(float4 g, float4 y) {
  return make_float4(relu_grad(g.x, y.x), relu_grad(g.y, y.y), relu_grad(g.z, y.z), relu_grad(g.w, y.w));
}

// T is float4 (vector path: indices count float4s) or float (scalar path).
template <class T>
struct ReluForward {
  const T* __restrict__ x;
  T* __restrict__ y;
  using Item = T;
  __device__ T load(int64_t i) const { return x[i]; }
  __device__ void store(int64_t i, T v) const { y[i] = relu4(v); }
};

template <class T>
struct ReluBackward {
  const T* __restrict__ dy;
  const T* __restrict__ y;
  T* __restrict__ dx;
  struct Item {
    T g, y;
  };
  __device__ Item load(int64_t i) const { return {dy[i], y[i]}; }
  __device__ void store(int64_t i, Item v) const { dx[i] = relu_grad4(v.g, v.y); }
};

template <class T>
struct SgdUpdate {
  T* __restrict__ w;
  const T* __restrict__ dw;
  T* __restrict__ v;
  float lr, momentum, weight_decay;
  struct Item {
    T w, dw, v;
  };
  __device__ Item load(int64_t i) const { return {w[i], dw[i], v[i]}; }
  __device__ void step(float& wi, float dwi, float& vi) const {
    sgd_momentum_step(wi, dwi, vi, lr, momentum, weight_decay);
  }
  __device__ void store(int64_t i, Item it) const {
    if constexpr (sizeof(T) == sizeof(float4)) {
      step(it.w.x, it.dw.x, it.v.x);
      step(it.w.y, it.dw.y, it.v.y);
      step(it.w.z, it.dw.z, it.v.z);
      step(it.w.w, it.dw.w, it.v.w);
    } else {
      step(it.w, it.dw, it.v);
    }
    w[i] = it.w;
    v[i] = it.v;
  }
};

// Vector path: n / 4 float4 items, then the n % 4 tail (at most 3 elements)
// by the first threads of block 0 through the scalar Op.
template <class VecOp, class ScalarOp>
__global__ void __launch_bounds__(kThreads) vector_kernel(VecOp vec, ScalarOp tail, int64_t n) {
  unrolled_loop(vec, n / 4);
  int64_t t = n / 4 * 4 + threadIdx.x;
  if (blockIdx.x == 0 && t < n) tail.store(t, tail.load(t));
}

template <class Op>
__global__ void __launch_bounds__(kThreads) scalar_kernel(Op op, int64_t n) {
  unrolled_loop(op, n);
}

// The SGD update of up to kSgdTensorsPerLaunch parameters in one launch: the table travels as the kernel's
// argument (1.3 KB of the 4 KB allowed; __grid_constant__ so indexing it does not copy it to local memory),
// and each block does kSgdChunk elements of one tensor: tensor i owns blocks [block_end[i-1], block_end[i]).
constexpr int kSgdTensorsPerLaunch = 32;
constexpr int kSgdChunk = kThreads * kUnroll * 4;  // elements a block does: one float4 per thread and unroll
constexpr int64_t kMaxGridX = 2147483647;
struct SgdTable {
  SgdTensor tensor[kSgdTensorsPerLaunch];
  int64_t block_end[kSgdTensorsPerLaunch];
  int count;
  float lr, momentum, weight_decay;
};

// One block's `rounds` * kThreads * kUnroll items from `first`, none at or past `end`.
template <class Op>
__device__ __forceinline__ void chunk_loop(const Op& op, int64_t first, int64_t end, int rounds) {
  for (int r = 0; r < rounds; ++r) unrolled_items(op, first + int64_t(r) * kThreads * kUnroll + threadIdx.x, end);
}

__global__ void __launch_bounds__(kThreads) sgd_table_kernel(const __grid_constant__ SgdTable table) {
  int i = 0;
  while (i + 1 < table.count && int64_t(blockIdx.x) >= table.block_end[i]) ++i;
  const SgdTensor x = table.tensor[i];
  const int64_t block = int64_t(blockIdx.x) - (i ? table.block_end[i - 1] : 0);
  const int64_t first = block * kSgdChunk;  // this block's elements: [first, min(first + kSgdChunk, n))
  const int64_t end = first + kSgdChunk < x.n ? first + kSgdChunk : x.n;
  const SgdUpdate<float> scalar{x.w, x.dw, x.v, table.lr, table.momentum, table.weight_decay};
  if (aligned16(x.w) && aligned16(x.dw) && aligned16(x.v)) {  // uniform across the block
    const SgdUpdate<float4> vec{reinterpret_cast<float4*>(x.w), reinterpret_cast<const float4*>(x.dw),
                                reinterpret_cast<float4*>(x.v), table.lr, table.momentum, table.weight_decay};
    chunk_loop(vec, first / 4, end / 4, 1);
    const int64_t t = end / 4 * 4 + threadIdx.x;  // the last block's n % 4 tail
    if (end == x.n && t < end) scalar.store(t, scalar.load(t));
  } else {
    chunk_loop(scalar, first, end, 4);
  }
}

unsigned int blocks_for(int64_t items) { return grid_for((items + kUnroll - 1) / kUnroll, kThreads); }

}  // namespace

void relu_forward(const float* x, float* y, int64_t n, Stream stream) {
  if (n == 0) return;
  if (aligned16(x) && aligned16(y)) {
    ReluForward<float4> vec{reinterpret_cast<const float4*>(x), reinterpret_cast<float4*>(y)};
    ReluForward<float> tail{x, y};
    vector_kernel<<<blocks_for(n / 4), kThreads, 0, stream>>>(vec, tail, n);
  } else {
    scalar_kernel<<<blocks_for(n), kThreads, 0, stream>>>(ReluForward<float>{x, y}, n);
  }
  PYA_CHECK_LAUNCH("relu_forward");
}

void relu_backward(const float* dy, const float* y, float* dx, int64_t n, Stream stream) {
  if (n == 0) return;
  if (aligned16(dy) && aligned16(y) && aligned16(dx)) {
    ReluBackward<float4> vec{reinterpret_cast<const float4*>(dy), reinterpret_cast<const float4*>(y),
                             reinterpret_cast<float4*>(dx)};
    ReluBackward<float> tail{dy, y, dx};
    vector_kernel<<<blocks_for(n / 4), kThreads, 0, stream>>>(vec, tail, n);
  } else {
    scalar_kernel<<<blocks_for(n), kThreads, 0, stream>>>(ReluBackward<float>{dy, y, dx}, n);
  }
  PYA_CHECK_LAUNCH("relu_backward");
}

void sgd_update(const SgdTensor* tensors, int count, float lr, float momentum, float weight_decay, Stream stream) {
  SgdTable table{};
  table.lr = lr;
  table.momentum = momentum;
  table.weight_decay = weight_decay;
  int64_t blocks = 0;
  auto launch = [&] {
    if (table.count == 0) return;
    sgd_table_kernel<<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(table);
    PYA_CHECK_LAUNCH("sgd_update");
    table.count = 0;
    blocks = 0;
  };
  for (int t = 0; t < count; ++t) {
    const SgdTensor& x = tensors[t];
    if (x.n == 0) continue;
    const int64_t need = (x.n + kSgdChunk - 1) / kSgdChunk;
    if (need > kMaxGridX) throw KernelError("sgd_update: a parameter of " + std::to_string(x.n) + " elements is too large");
    if (table.count == kSgdTensorsPerLaunch || blocks + need > kMaxGridX) launch();
    table.tensor[table.count] = x;
    blocks += need;
    table.block_end[table.count++] = blocks;
  }
  launch();
}

}  // namespace pya::cuda
