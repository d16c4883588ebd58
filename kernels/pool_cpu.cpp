#include "pool.h"

namespace pya::cpu {

void max_pool_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int size, int stride, Stream) {
  PoolGeometry g = pool_geometry(H, W, size, stride);
  int64_t out = g.OH * g.OW;
#pragma omp parallel for schedule(static) if (planes * H * W > (1 << 15))
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * H * W;
    for (int64_t o = 0; o < out; ++o) y[p * out + o] = xp[pool_argmax(xp, g, o / g.OW, o % g.OW)];
  }
}

void max_pool_backward(const float* dy, const float* x, const float* y, float* dx, int64_t planes, int64_t H,
                       int64_t W, int size, int stride, Stream) {
  PoolGeometry g = pool_geometry(H, W, size, stride);
  int64_t in = H * W, out = g.OH * g.OW;
#pragma omp parallel for schedule(static) if (planes * in > (1 << 15))
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t i = 0; i < in; ++i)
      dx[p * in + i] = pool_input_grad(x + p * in, y + p * out, dy + p * out, g, i / W, i % W);
  }
}

}  // namespace pya::cpu
