#include "dropout.h"
#include "cpu_parallel.h"

namespace pya::cpu {

void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, uint64_t seed, uint32_t drop_threshold,
                     float scale, Stream) {
  int64_t groups = (n + 3) / 4;  // one Philox call serves four consecutive elements
#pragma omp parallel for schedule(static) if (n > kStreamParallelMin)
  for (int64_t g = 0; g < groups; ++g) {
    Philox4x32 r = random_words4(seed, kDropoutSubsequence, static_cast<uint64_t>(g));
    for (int lane = 0; lane < 4; ++lane) {
      int64_t i = 4 * g + lane;
      if (i >= n) break;
      uint8_t keep = dropout_keep(r.v[lane], drop_threshold);
      mask[i] = keep;
      y[i] = dropout_apply(x[i], keep, scale);
    }
  }
}

void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float scale, Stream) {
#pragma omp parallel for simd schedule(static) if (parallel : n > kStreamParallelMin)
  for (int64_t i = 0; i < n; ++i) dx[i] = dropout_apply(dy[i], mask[i], scale);
}

}  // namespace pya::cpu
