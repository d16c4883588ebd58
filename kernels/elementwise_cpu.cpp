#include "elementwise.h"
#include "cpu_parallel.h"

#include <algorithm>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace pya::cpu {

void relu_forward(const float* x, float* y, int64_t n, Stream) {
#pragma omp parallel for simd schedule(static) if (parallel : n > kStreamParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = relu_value(x[i]);
}

void relu_backward(const float* dy, const float* y, float* dx, int64_t n, Stream) {
#pragma omp parallel for simd schedule(static) if (parallel : n > kStreamParallelMin)
  for (int64_t i = 0; i < n; ++i) dx[i] = relu_grad(dy[i], y[i]);
}

// The tensors are one index space of sum(n) elements, cut into equal contiguous shares, one per thread: a
// single parallel region however many tensors, and none at all below kStreamParallelMin in total.
void sgd_update(const SgdTensor* tensors, int count, float lr, float momentum, float weight_decay, Stream) {
  int64_t total = 0;
  for (int t = 0; t < count; ++t) total += tensors[t].n;
#pragma omp parallel if (total > kStreamParallelMin)
  {
    int threads = 1, me = 0;
#ifdef _OPENMP
    threads = omp_get_num_threads();
    me = omp_get_thread_num();
#endif
    const int64_t begin = total * me / threads, end = total * (me + 1) / threads;
    int64_t offset = 0;  // of tensor t in the index space
    for (int t = 0; t < count && offset < end; offset += tensors[t].n, ++t) {
      const SgdTensor& x = tensors[t];
      const int64_t lo = std::max<int64_t>(begin - offset, 0), hi = std::min<int64_t>(end - offset, x.n);
#pragma omp simd
      for (int64_t i = lo; i < hi; ++i) sgd_momentum_step(x.w[i], x.dw[i], x.v[i], lr, momentum, weight_decay);
    }
  }
}

}  // namespace pya::cpu
