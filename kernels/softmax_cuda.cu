// Softmax rows: one warp per row, lanes stride along the row so loads are coalesced; the max and the sum
// are warp shuffles (an xor butterfly: every lane ends with the same, bit-identical value).
//
// Rows up to kMaxRegisterRow (1024) wide, AlexNet's 1000 among them, are held in registers: each lane
// loads its V = ceil(K / 32) values at once (all in flight together), and the row is read once from
// memory and its gradient written once. Wider rows take three passes over the row (max, sum, output),
// the second and third from cache.
//
// softmax_cross_entropy is two launches: the row kernel (row losses and dlogits), then a one-block
// finalize that sums the row losses in softmax.h's fixed order (deterministic, the CPU's order) and takes
// the labels' range, writing 3 doubles that the caller reads back in one small copy.
#include <math_constants.h>

#include <type_traits>

#include "cuda_check.h"
#include "softmax.h"

namespace pya::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kThreads = 32 * kWarpsPerBlock;
constexpr int kMaxRegisterRow = 32 * 32;  // V up to 32 values per lane
constexpr unsigned kFullWarp = 0xffffffffu;

__device__ __forceinline__ float warp_max(float m) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) m = nan_max(m, __shfl_xor_sync(kFullWarp, m, off));
  return m;
}

__device__ __forceinline__ float warp_sum(float s) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(kFullWarp, s, off);
  return s;
}

// A row of K <= 32 V logits in registers: lane `lane` holds elements lane + 32 i, i < V.
template <int V>
struct RegisterRow {
  float v[V];
  float max, sum_exp;

  // Loads the row and its statistics; then v[i] = exp(x - max) (0 past the end of the row). K <= 32 V.
  __device__ __forceinline__ void load(const float* __restrict__ xr, int K, int lane) {
#pragma unroll
    for (int i = 0; i < V; ++i) {
      int j = lane + 32 * i;
      v[i] = j < K ? xr[j] : -CUDART_INF_F;  // -inf leaves the max alone; it is never summed
    }
    float m = v[0];
#pragma unroll
    for (int i = 1; i < V; ++i) m = nan_max(m, v[i]);
    max = warp_max(m);
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < V; ++i) {
      int j = lane + 32 * i;
      v[i] = j < K ? softmax_exp(v[i] - max) : 0.f;
      s += v[i];
    }
    sum_exp = warp_sum(s);
  }
};

template <int V>
__global__ void __launch_bounds__(kThreads)
    softmax_register_kernel(const float* __restrict__ x, float* __restrict__ p, int64_t N, int64_t K) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock;
  // The loop bound is uniform across a warp, so every lane reaches the shuffles.
  for (int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; r < N; r += warps) {
    const int k = static_cast<int>(K);
    RegisterRow<V> row;
    row.load(x + r * K, k, lane);
    const float inv_sum = 1.f / row.sum_exp;
    float* pr = p + r * K;
#pragma unroll
    for (int i = 0; i < V; ++i) {
      int j = lane + 32 * i;
      if (j < k) pr[j] = row.v[i] * inv_sum;
    }
  }
}

template <int V, class Label>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_register_kernel(const float* __restrict__ x, const Label* __restrict__ labels,
                                  float* __restrict__ row_loss, float* __restrict__ dx, int64_t N, int64_t K) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock;
  const float inv_batch = 1.f / static_cast<float>(N);
  for (int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; r < N; r += warps) {
    const int64_t label = static_cast<int64_t>(labels[r]);
    const int k = static_cast<int>(K);
    const float* xr = x + r * K;
    RegisterRow<V> row;
    row.load(xr, k, lane);
    const float inv_sum = 1.f / row.sum_exp;
    float* dr = dx + r * K;
#pragma unroll
    for (int i = 0; i < V; ++i) {
      int j = lane + 32 * i;
      if (j < k) dr[j] = cross_entropy_grad(row.v[i] * inv_sum, j == label, inv_batch);
    }
    // The label's logit is read again (it is in cache); a bad label reads nothing.
    if (lane == 0)
      row_loss[r] = cross_entropy_row_loss(xr, label, K, row.max, row.sum_exp);
  }
}

// ---- rows wider than kMaxRegisterRow: three passes, the last two from cache ----------------------------------

struct RowStats {
  float max, sum_exp;
};

__device__ RowStats warp_row_stats(const float* __restrict__ x, int64_t K, int lane) {
  float m = x[0];
  for (int64_t j = lane; j < K; j += 32) m = nan_max(m, x[j]);
  m = warp_max(m);
  float s = 0.f;
  for (int64_t j = lane; j < K; j += 32) s += softmax_exp(x[j] - m);
  return {m, warp_sum(s)};
}

__global__ void __launch_bounds__(kThreads)
    softmax_wide_kernel(const float* __restrict__ x, float* __restrict__ p, int64_t N, int64_t K) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock;
  for (int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; r < N; r += warps) {
    const float* xr = x + r * K;
    RowStats st = warp_row_stats(xr, K, lane);
    float inv_sum = 1.f / st.sum_exp;
    for (int64_t j = lane; j < K; j += 32) p[r * K + j] = softmax_exp(xr[j] - st.max) * inv_sum;
  }
}

template <class Label>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_wide_kernel(const float* __restrict__ x, const Label* __restrict__ labels,
                              float* __restrict__ row_loss, float* __restrict__ dx, int64_t N, int64_t K) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock;
  const float inv_batch = 1.f / static_cast<float>(N);
  for (int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; r < N; r += warps) {
    const float* xr = x + r * K;
    RowStats st = warp_row_stats(xr, K, lane);
    float inv_sum = 1.f / st.sum_exp;
    int64_t label = static_cast<int64_t>(labels[r]);
    for (int64_t j = lane; j < K; j += 32)
      dx[r * K + j] = cross_entropy_grad(softmax_exp(xr[j] - st.max) * inv_sum, j == label, inv_batch);
    if (lane == 0)
      row_loss[r] = cross_entropy_row_loss(xr, label, K, st.max, st.sum_exp);
  }
}

// ---- the batch's stats ----------------------------------------------------------------------------------------

// One block of kLossLanes threads: thread l sums lane l (softmax.h), then the tree, half by half. (No
// __launch_bounds__: with it, ptxas for sm_80 held the int64 version to 32 registers and spilled.)
template <class Label>
__global__ void cross_entropy_finalize_kernel(const float* __restrict__ row_loss, const Label* __restrict__ labels, int64_t N,
                                  double* __restrict__ stats) {
  __shared__ double sum[kLossLanes];
  __shared__ int64_t lo[kLossLanes];
  __shared__ int64_t hi[kLossLanes];
  const int l = threadIdx.x;
  LossLane mine = cross_entropy_lane(row_loss, labels, N, l);
  sum[l] = mine.sum;
  lo[l] = mine.lo;
  hi[l] = mine.hi;
  __syncthreads();
  for (int half = kLossLanes / 2; half >= 1; half /= 2) {
    if (l < half) {
      LossLane a{sum[l], lo[l], hi[l]};
      cross_entropy_combine(a, LossLane{sum[l + half], lo[l + half], hi[l + half]});
      sum[l] = a.sum;
      lo[l] = a.lo;
      hi[l] = a.hi;
    }
    __syncthreads();
  }
  if (l == 0) cross_entropy_stats(LossLane{sum[0], lo[0], hi[0]}, stats);
}

unsigned int blocks_for_rows(int64_t N) { return grid_for((N + kWarpsPerBlock - 1) / kWarpsPerBlock, 1); }

// Calls f(std::integral_constant<int, V>) with the smallest compiled V for which 32 V >= K; false if K is
// too wide for registers.
template <class F>
bool with_register_width(int64_t K, F&& f) {
  if (K <= 32) f(std::integral_constant<int, 1>{});
  else if (K <= 64) f(std::integral_constant<int, 2>{});
  else if (K <= 128) f(std::integral_constant<int, 4>{});
  else if (K <= 256) f(std::integral_constant<int, 8>{});
  else if (K <= 512) f(std::integral_constant<int, 16>{});
  else if (K <= kMaxRegisterRow) f(std::integral_constant<int, 32>{});
  else return false;
  return true;
}

template <class Label>
void launch_cross_entropy(const float* x, const Label* labels, float* row_loss, float* dx, double* stats, int64_t N,
                          int64_t K, Stream stream) {
  if (N == 0) return;
  const unsigned int blocks = blocks_for_rows(N);
  bool in_registers = with_register_width(K, [&](auto width) {
    constexpr int V = decltype(width)::value;
    cross_entropy_register_kernel<V, Label><<<blocks, kThreads, 0, stream>>>(x, labels, row_loss, dx, N, K);
  });
  if (!in_registers)
    cross_entropy_wide_kernel<Label><<<blocks, kThreads, 0, stream>>>(x, labels, row_loss, dx, N, K);
  PYA_CHECK_LAUNCH("softmax_cross_entropy");
  cross_entropy_finalize_kernel<Label><<<1, kLossLanes, 0, stream>>>(row_loss, labels, N, stats);
  PYA_CHECK_LAUNCH("softmax_cross_entropy (finalize)");
}

}  // namespace

void softmax_forward(const float* x, float* p, int64_t N, int64_t K, Stream stream) {
  if (N == 0) return;
  const unsigned int blocks = blocks_for_rows(N);
  bool in_registers = with_register_width(K, [&](auto width) {
    constexpr int V = decltype(width)::value;
    softmax_register_kernel<V><<<blocks, kThreads, 0, stream>>>(x, p, N, K);
  });
  if (!in_registers) softmax_wide_kernel<<<blocks, kThreads, 0, stream>>>(x, p, N, K);
  PYA_CHECK_LAUNCH("softmax");
}

void softmax_cross_entropy(const float* x, const int32_t* labels, float* row_loss, float* dx, double* stats,
                           int64_t N, int64_t K, Stream stream) {
  launch_cross_entropy(x, labels, row_loss, dx, stats, N, K, stream);
}

void softmax_cross_entropy(const float* x, const int64_t* labels, float* row_loss, float* dx, double* stats,
                           int64_t N, int64_t K, Stream stream) {
  launch_cross_entropy(x, labels, row_loss, dx, stats, N, K, stream);
}

}  // namespace pya::cuda
