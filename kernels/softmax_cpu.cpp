#include "softmax.h"
#include "cpu_parallel.h"

namespace pya::cpu {
namespace {

struct RowStats {
  float max, sum_exp;
};

RowStats row_stats(const float* x, int64_t K) {
  float m = x[0];
  for (int64_t j = 1; j < K; ++j) m = nan_max(m, x[j]);
  float s = 0.f;
  for (int64_t j = 0; j < K; ++j) s += softmax_exp(x[j] - m);
  return {m, s};
}

// The batch's stats in softmax.h's fixed order (the GPU kernel's last block adds the same terms the same way).
template <class Label>
void finalize(const float* row_loss, const Label* labels, double* stats, int64_t N) {
  LossLane part[kLossLanes];
  for (int l = 0; l < kLossLanes; ++l) part[l] = cross_entropy_lane(row_loss, labels, N, l);
  for (int half = kLossLanes / 2; half >= 1; half /= 2)
    for (int i = 0; i < half; ++i) cross_entropy_combine(part[i], part[i + half]);
  cross_entropy_stats(part[0], stats);
}

template <class Label>
void cross_entropy(const float* x, const Label* labels, float* row_loss, float* dx, double* stats, int64_t N,
                   int64_t K) {
  float inv_batch = 1.f / static_cast<float>(N);
#pragma omp parallel for schedule(static) if (N * K > kComputeParallelMin)
  for (int64_t r = 0; r < N; ++r) {
    const float* xr = x + r * K;
    float* dr = dx + r * K;
    RowStats st = row_stats(xr, K);
    float inv_sum = 1.f / st.sum_exp;
    int64_t label = static_cast<int64_t>(labels[r]);
    for (int64_t j = 0; j < K; ++j) dr[j] = cross_entropy_grad(softmax_exp(xr[j] - st.max) * inv_sum, j == label, inv_batch);
    row_loss[r] = cross_entropy_row_loss(xr, label, K, st.max, st.sum_exp);
  }
  finalize(row_loss, labels, stats, N);
}

}  // namespace

void softmax_forward(const float* x, float* p, int64_t N, int64_t K, Stream) {
#pragma omp parallel for schedule(static) if (N * K > kComputeParallelMin)
  for (int64_t r = 0; r < N; ++r) {
    RowStats st = row_stats(x + r * K, K);
    float inv_sum = 1.f / st.sum_exp;
    for (int64_t j = 0; j < K; ++j) p[r * K + j] = softmax_exp(x[r * K + j] - st.max) * inv_sum;
  }
}

void softmax_cross_entropy(const float* x, const int32_t* labels, float* row_loss, float* dx, double* stats,
                           uint32_t* /*counter: only the CUDA kernel needs it*/, int64_t N, int64_t K, Stream) {
  cross_entropy(x, labels, row_loss, dx, stats, N, K);
}

void softmax_cross_entropy(const float* x, const int64_t* labels, float* row_loss, float* dx, double* stats,
                           uint32_t* /*counter: only the CUDA kernel needs it*/, int64_t N, int64_t K, Stream) {
  cross_entropy(x, labels, row_loss, dx, stats, N, K);
}

}  // namespace pya::cpu
