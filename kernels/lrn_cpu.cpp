#include "lrn.h"

namespace pya::cpu {

// One pixel per iteration; consecutive pixels of one thread share cache lines
// of every channel plane, so the strided channel walk stays in cache.
void lrn_forward(const float* x, float* y, int64_t N, int C, int64_t HW, int size, float alpha, float beta, float k,
                 Stream) {
  int64_t pixels = N * HW;
#pragma omp parallel for schedule(static) if (pixels * C > (1 << 15))
  for (int64_t p = 0; p < pixels; ++p) {
    int64_t off = (p / HW) * C * HW + p % HW;
    lrn_forward_pixel(x + off, y + off, C, HW, size / 2, alpha, beta, k);
  }
}

void lrn_backward(const float* dy, const float* x, const float* y, float* dx, float* workspace, int64_t N, int C,
                  int64_t HW, int size, float alpha, float beta, float k, Stream) {
  int64_t pixels = N * HW;
#pragma omp parallel for schedule(static) if (pixels * C > (1 << 15))
  for (int64_t p = 0; p < pixels; ++p) {
    int64_t off = (p / HW) * C * HW + p % HW;
    lrn_denominators(x + off, workspace + off, C, HW, size / 2, alpha, k);
    lrn_backward_pixel(dy + off, x + off, y + off, workspace + off, dx + off, C, HW, size / 2, alpha, beta);
  }
}

}  // namespace pya::cpu
