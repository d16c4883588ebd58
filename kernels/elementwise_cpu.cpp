#include "elementwise.h"
#include "cpu_parallel.h"

namespace pya::cpu {

void relu_forward(const float* x, float* y, int64_t n, Stream) {
#pragma omp parallel for simd schedule(static) if (parallel : n > kStreamParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = relu_value(x[i]);
}

void relu_backward(const float* dy, const float* y, float* dx, int64_t n, Stream) {
#pragma omp parallel for simd schedule(static) if (parallel : n > kStreamParallelMin)
  for (int64_t i = 0; i < n; ++i) dx[i] = relu_grad(dy[i], y[i]);
}

void sgd_update(float* w, const float* dw, float* v, int64_t n, float lr, float momentum, float weight_decay,
                Stream) {
#pragma omp parallel for simd schedule(static) if (parallel : n > kStreamParallelMin)
  for (int64_t i = 0; i < n; ++i) sgd_momentum_step(w[i], dw[i], v[i], lr, momentum, weight_decay);
}

}  // namespace pya::cpu
