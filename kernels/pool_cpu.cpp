// CPU max-pooling: one plane per OpenMP iteration, nested row/column loops (no
// integer division on the hot path).
//
// The backward is a scatter here, not the GPU's gather: each window, visited in
// row-major order, adds its dy to its first maximal element (pool_argmax, the
// rule both backends share). An input therefore receives exactly the additions
// the gather makes, in the same order starting from zero, so the results are
// bit-identical to the GPU's, at a quarter of the window scans.
#include <cstring>

#include "pool.h"

namespace pya::cpu {

void max_pool_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int size, int stride, Stream) {
  PoolGeometry g = pool_geometry(H, W, size, stride);
  int64_t out = g.OH * g.OW;
#pragma omp parallel for schedule(static) if (planes * H * W > (1 << 15))
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * H * W;
    float* yp = y + p * out;
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) yp[oh * g.OW + ow] = xp[pool_argmax(xp, g, oh, ow)];
  }
}

void max_pool_backward(const float* dy, const float* x, const float* y, float* dx, int64_t planes, int64_t H,
                       int64_t W, int size, int stride, Stream) {
  (void)y;  // the scatter recomputes each window's argmax; y only serves the GPU's gather filter
  PoolGeometry g = pool_geometry(H, W, size, stride);
  int64_t in = H * W, out = g.OH * g.OW;
#pragma omp parallel for schedule(static) if (planes * in > (1 << 15))
  for (int64_t p = 0; p < planes; ++p) {
    const float *xp = x + p * in, *dyp = dy + p * out;
    float* dxp = dx + p * in;
    std::memset(dxp, 0, sizeof(float) * in);
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) dxp[pool_argmax(xp, g, oh, ow)] += dyp[oh * g.OW + ow];
  }
}

}  // namespace pya::cpu
