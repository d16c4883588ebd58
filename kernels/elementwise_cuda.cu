// Element-wise kernels: grid-stride loops. Purely bandwidth-bound, so the
// only aim is coalesced accesses and enough blocks to fill the GPU.
#include "cuda_check.h"
#include "elementwise.h"

namespace pya::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void relu_forward_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = relu_value(x[i]);
}

__global__ void relu_backward_kernel(const float* __restrict__ dy, const float* __restrict__ y,
                                     float* __restrict__ dx, int64_t n) {
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) dx[i] = relu_grad(dy[i], y[i]);
}

__global__ void sgd_update_kernel(float* __restrict__ w, const float* __restrict__ dw, float* __restrict__ v,
                                  int64_t n, float lr, float momentum, float weight_decay) {
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float wi = w[i], vi = v[i];
    sgd_momentum_step(wi, dw[i], vi, lr, momentum, weight_decay);
    w[i] = wi;
    v[i] = vi;
  }
}

}  // namespace

void relu_forward(const float* x, float* y, int64_t n, Stream stream) {
  if (n == 0) return;
  relu_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, y, n);
  PYA_CHECK_LAUNCH("relu_forward");
}

void relu_backward(const float* dy, const float* y, float* dx, int64_t n, Stream stream) {
  if (n == 0) return;
  relu_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(dy, y, dx, n);
  PYA_CHECK_LAUNCH("relu_backward");
}

void sgd_update(float* w, const float* dw, float* v, int64_t n, float lr, float momentum, float weight_decay,
                Stream stream) {
  if (n == 0) return;
  sgd_update_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(w, dw, v, n, lr, momentum, weight_decay);
  PYA_CHECK_LAUNCH("sgd_update");
}

}  // namespace pya::cuda
