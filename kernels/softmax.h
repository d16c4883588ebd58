// Softmax and the fused softmax cross-entropy over rows of (N, K) logits.
// Stable for logits of any magnitude: every exponent is taken of x - max(row) <= 0.
//   p = exp(x - m) / sum_j exp(x_j - m)
//   loss_row = log(sum_j exp(x_j - m)) - (x[label] - m)
//   dlogits = (p - onehot(label)) / N           (the gradient of the batch mean)
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "common.h"

namespace pya {

PYA_HD float softmax_exp(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return std::exp(x);
#endif
}

PYA_HD float softmax_log(float x) {
#if defined(__CUDA_ARCH__)
  return logf(x);
#else
  return std::log(x);
#endif
}

// max that propagates NaN (a NaN logit gives a NaN row, never a silent wrong one).
PYA_HD float nan_max(float m, float v) { return (v > m || v != v) ? v : m; }

// Per-element gradient of the batch-mean cross-entropy.
PYA_HD float cross_entropy_grad(float p, bool is_label, float inv_batch) {
  return (is_label ? p - 1.f : p) * inv_batch;
}

// The row loss from the row's max m, its sum of exp(x - m) and the label's logit.
PYA_HD float cross_entropy_row_loss(float m, float sum_exp, float label_logit) {
  return softmax_log(sum_exp) - (label_logit - m);
}

// The loss of row xr (K logits) for `label`: NaN for a label outside [0, K), which reads nothing (the caller
// raises on the label range afterwards; the NaN keeps the sum from looking valid meanwhile).
PYA_HD float cross_entropy_row_loss(const float* xr, int64_t label, int64_t K, float m, float sum_exp) {
  return (label >= 0 && label < K) ? cross_entropy_row_loss(m, sum_exp, xr[label])
                                   : std::numeric_limits<float>::quiet_NaN();
}

// The batch's loss from the row losses, in one fixed order on both backends (so the result does not depend
// on scheduling, and the CPU and GPU sum the same terms the same way): kLossLanes partial sums in double,
// lane l adding rows l, l + kLossLanes, l + 2 kLossLanes, ... in turn (cross_entropy_lane_sum), then a
// pairwise tree over the lanes: for half = kLossLanes / 2, ..., 1: part[i] += part[i + half] for i < half.
// The labels' minimum and maximum (for the range check) come from the same lanes.
constexpr int kLossLanes = 256;

struct LossLane {
  double sum;
  int64_t lo, hi;  // smallest and largest label of the lane's rows (INT64_MAX, INT64_MIN when it has none)
};

PYA_HD LossLane cross_entropy_lane_start() { return LossLane{0.0, INT64_MAX, INT64_MIN}; }

// One row into its lane (the GPU's finalize loads the rows itself, from L2, and calls this in the same order).
PYA_HD void cross_entropy_lane_add(LossLane& lane, float row_loss, int64_t label) {
  lane.sum += static_cast<double>(row_loss);
  lane.lo = label < lane.lo ? label : lane.lo;
  lane.hi = label > lane.hi ? label : lane.hi;
}

template <class Label>
PYA_HD LossLane cross_entropy_lane(const float* row_loss, const Label* labels, int64_t N, int lane) {
  LossLane r = cross_entropy_lane_start();
  for (int64_t i = lane; i < N; i += kLossLanes)
    cross_entropy_lane_add(r, row_loss[i], static_cast<int64_t>(labels[i]));
  return r;
}

PYA_HD void cross_entropy_combine(LossLane& a, const LossLane& b) {
  a.sum += b.sum;
  a.lo = b.lo < a.lo ? b.lo : a.lo;
  a.hi = b.hi > a.hi ? b.hi : a.hi;
}

// What softmax_cross_entropy hands back, as 3 doubles: the sum of the row losses (the caller divides by N:
// a double division on the GPU would bring a slow-path call, and spills, into the kernel's last block), and
// the smallest and largest label (a label outside [0, K) is the caller's error to raise; its row's loss is
// NaN, so the sum is too).
PYA_HD void cross_entropy_stats(const LossLane& total, double* stats) {
  stats[0] = total.sum;
  stats[1] = static_cast<double>(total.lo);
  stats[2] = static_cast<double>(total.hi);
}

// softmax_cross_entropy's `counter`: one uint32 in the backend's memory, 0 before the call and 0 after it.
// The CUDA kernel's blocks take tickets from it so that the last block to finish sums the batch (in the one
// launch); the CPU backend ignores it (the argument keeps the two signatures the same). Calls that may run
// at the same time (two streams) need a counter each; calls on one stream may share one.
namespace cpu {
void softmax_forward(const float* x, float* p, int64_t N, int64_t K, Stream stream);
// One call: the rows (row_loss: N floats, the per-row losses; dx: the logits' gradient) and the batch's
// stats (3 doubles, cross_entropy_stats: the loss sum and the label range). Labels must be in [0, K):
// ops.softmax_cross_entropy raises on stats[1] < 0 or stats[2] >= K; an out-of-range label here gives a
// NaN row loss and no one-hot term, never an out-of-bounds read. N >= 1.
void softmax_cross_entropy(const float* x, const int32_t* labels, float* row_loss, float* dx, double* stats,
                           uint32_t* counter, int64_t N, int64_t K, Stream stream);
void softmax_cross_entropy(const float* x, const int64_t* labels, float* row_loss, float* dx, double* stats,
                           uint32_t* counter, int64_t N, int64_t K, Stream stream);
}  // namespace cpu

namespace cuda {
void softmax_forward(const float* x, float* p, int64_t N, int64_t K, Stream stream);
// One launch on `stream`: the rows, then (the grid's last block) stats, in device memory; `counter` is device
// memory too.
void softmax_cross_entropy(const float* x, const int32_t* labels, float* row_loss, float* dx, double* stats,
                           uint32_t* counter, int64_t N, int64_t K, Stream stream);
void softmax_cross_entropy(const float* x, const int64_t* labels, float* row_loss, float* dx, double* stats,
                           uint32_t* counter, int64_t N, int64_t K, Stream stream);
}  // namespace cuda

}  // namespace pya
