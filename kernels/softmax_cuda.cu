// Softmax rows: one warp per row (AlexNet's rows are 1000 wide), lanes stride
// along the row so loads are coalesced; the max and the sum are warp shuffles,
// and the row's three passes re-read it from cache.
#include <math_constants.h>

#include "cuda_check.h"
#include "softmax.h"

namespace pya::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = 32 * kWarpsPerBlock;

struct RowStats {
  float max, sum_exp;
};

__device__ RowStats warp_row_stats(const float* __restrict__ x, int64_t K, int lane) {
  float m = x[0];
  for (int64_t j = lane; j < K; j += 32) m = nan_max(m, x[j]);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) m = nan_max(m, __shfl_xor_sync(0xffffffffu, m, off));
  float s = 0.f;
  for (int64_t j = lane; j < K; j += 32) s += softmax_exp(x[j] - m);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  return {m, s};
}

__global__ void softmax_kernel(const float* __restrict__ x, float* __restrict__ p, int64_t N, int64_t K) {
  int lane = threadIdx.x & 31;
  int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock;
  // The loop bound is uniform across a warp, so every lane reaches the shuffles.
  for (int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; r < N; r += warps) {
    const float* xr = x + r * K;
    RowStats st = warp_row_stats(xr, K, lane);
    float inv_sum = 1.f / st.sum_exp;
    for (int64_t j = lane; j < K; j += 32) p[r * K + j] = softmax_exp(xr[j] - st.max) * inv_sum;
  }
}

template <class Label>
__global__ void cross_entropy_kernel(const float* __restrict__ x, const Label* __restrict__ labels,
                                     float* __restrict__ row_loss, float* __restrict__ dx, int64_t N, int64_t K) {
  int lane = threadIdx.x & 31;
  int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock;
  float inv_batch = 1.f / static_cast<float>(N);
  for (int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; r < N; r += warps) {
    const float* xr = x + r * K;
    RowStats st = warp_row_stats(xr, K, lane);
    float inv_sum = 1.f / st.sum_exp;
    int64_t label = static_cast<int64_t>(labels[r]);
    for (int64_t j = lane; j < K; j += 32)
      dx[r * K + j] = cross_entropy_grad(softmax_exp(xr[j] - st.max) * inv_sum, j == label, inv_batch);
    if (lane == 0)
      row_loss[r] = (label >= 0 && label < K) ? cross_entropy_row_loss(st.max, st.sum_exp, xr[label]) : CUDART_NAN_F;
  }
}

unsigned int blocks_for_rows(int64_t N) { return grid_for((N + kWarpsPerBlock - 1) / kWarpsPerBlock, 1); }

template <class Label>
void launch_cross_entropy(const float* x, const Label* labels, float* row_loss, float* dx, int64_t N, int64_t K,
                          Stream stream) {
  if (N == 0) return;
  cross_entropy_kernel<Label><<<blocks_for_rows(N), kThreads, 0, stream>>>(x, labels, row_loss, dx, N, K);
  PYA_CHECK_LAUNCH("softmax_cross_entropy");
}

}  // namespace

void softmax_forward(const float* x, float* p, int64_t N, int64_t K, Stream stream) {
  if (N == 0) return;
  softmax_kernel<<<blocks_for_rows(N), kThreads, 0, stream>>>(x, p, N, K);
  PYA_CHECK_LAUNCH("softmax");
}

void softmax_cross_entropy(const float* x, const int32_t* labels, float* row_loss, float* dx, int64_t N, int64_t K,
                           Stream stream) {
  launch_cross_entropy(x, labels, row_loss, dx, N, K, stream);
}

void softmax_cross_entropy(const float* x, const int64_t* labels, float* row_loss, float* dx, int64_t N, int64_t K,
                           Stream stream) {
  launch_cross_entropy(x, labels, row_loss, dx, N, K, stream);
}

}  // namespace pya::cuda
