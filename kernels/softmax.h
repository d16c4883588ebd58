// Softmax and the fused softmax cross-entropy over rows of (N, K) logits.
// Stable for logits of any magnitude: every exponent is taken of x - max(row) <= 0.
//   p = exp(x - m) / sum_j exp(x_j - m)
//   loss_row = log(sum_j exp(x_j - m)) - (x[label] - m)
//   dlogits = (p - onehot(label)) / N           (the gradient of the batch mean)
#pragma once
#include <cmath>

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

namespace cpu {
void softmax_forward(const float* x, float* p, int64_t N, int64_t K, Stream stream);
// row_loss: N floats (the caller takes their mean). Labels must be in [0, K):
// ops.softmax_cross_entropy checks them after the launch; an out-of-range label
// here gives a NaN row loss and no one-hot term, never an out-of-bounds read.
void softmax_cross_entropy(const float* x, const int32_t* labels, float* row_loss, float* dx, int64_t N, int64_t K,
                           Stream stream);
void softmax_cross_entropy(const float* x, const int64_t* labels, float* row_loss, float* dx, int64_t N, int64_t K,
                           Stream stream);
}  // namespace cpu

namespace cuda {
void softmax_forward(const float* x, float* p, int64_t N, int64_t K, Stream stream);
void softmax_cross_entropy(const float* x, const int32_t* labels, float* row_loss, float* dx, int64_t N, int64_t K,
                           Stream stream);
void softmax_cross_entropy(const float* x, const int64_t* labels, float* row_loss, float* dx, int64_t N, int64_t K,
                           Stream stream);
}  // namespace cuda

}  // namespace pya
