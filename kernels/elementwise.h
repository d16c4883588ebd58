// ReLU and the SGD update: element-wise, memory-bound.
#pragma once
#include "common.h"

namespace pya {

// A NaN passes through, as numpy's maximum and PyTorch's relu let it: mapped to 0, a NaN weight or
// activation vanished here and training ran on with a finite loss. Negatives and -0 give +0.
PYA_HD float relu_value(float x) { return x <= 0.f ? 0.f : x; }
// Gradient passes where the forward output was positive (ReLU at 0 has gradient 0).
PYA_HD float relu_grad(float dy, float y) { return y > 0.f ? dy : 0.f; }

// The paper's rule, exactly: v <- m*v - wd*lr*w - lr*dw ; w <- w + v.
PYA_HD void sgd_momentum_step(float& w, float dw, float& v, float lr, float momentum, float weight_decay) {
  float nv = momentum * v - weight_decay * lr * w - lr * dw;
  v = nv;
  w = w + nv;
}

// One parameter of an SGD update: `n` elements of w, its gradient dw and its velocity v. sgd_update takes all
// of a model's parameters in one call (AlexNet has 16 to 30): one OpenMP region on the CPU and one launch per
// kSgdTensorsPerLaunch on the GPU, where a call per parameter cost a launch (or a region's wake-up) and, in
// Python, ~16 us each. The caller makes sure no written array overlaps another (the bindings check).
struct SgdTensor {
  float* w;
  const float* dw;
  float* v;
  int64_t n;
};

namespace cpu {
void relu_forward(const float* x, float* y, int64_t n, Stream stream);
void relu_backward(const float* dy, const float* y, float* dx, int64_t n, Stream stream);
void sgd_update(const SgdTensor* tensors, int count, float lr, float momentum, float weight_decay, Stream stream);
}  // namespace cpu

namespace cuda {
void relu_forward(const float* x, float* y, int64_t n, Stream stream);
void relu_backward(const float* dy, const float* y, float* dx, int64_t n, Stream stream);
void sgd_update(const SgdTensor* tensors, int count, float lr, float momentum, float weight_decay, Stream stream);
}  // namespace cuda

}  // namespace pya
