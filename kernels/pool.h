// Overlapping max-pooling (the paper's 3/2 windows; any size >= stride >= 1),
// no padding, output size floor((H - size) / stride) + 1.
//
// Backward: each window's gradient goes to the FIRST maximal element of that
// window in row-major order (a NaN counts as maximal, the first NaN winning, so
// NaNs propagate), and an input shared by overlapping windows sums them. It is
// a gather over the windows that cover each input (cuda-convnet's
// convLocalMaxUndo recomputes the max the same way rather than storing an
// argmax): no atomics, so results are identical run to run, and since both
// backends run the routines below in the same order, CPU and GPU agree bit for bit.
#pragma once
#include "common.h"

namespace pya {

struct PoolGeometry {
  int64_t H, W, OH, OW;
  int size, stride;
};

// Row-major index (within the plane) of the first maximal element of window (oh, ow).
PYA_HD int64_t pool_argmax(const float* plane, const PoolGeometry& g, int64_t oh, int64_t ow) {
  int64_t h0 = oh * g.stride, w0 = ow * g.stride;
  int64_t best_at = h0 * g.W + w0;
  float best = plane[best_at];
  for (int dh = 0; dh < g.size; ++dh) {
    for (int dw = 0; dw < g.size; ++dw) {
      int64_t at = (h0 + dh) * g.W + w0 + dw;
      float v = plane[at];
      // Strictly greater keeps the first of equal values; a NaN replaces a number once.
      if (v > best || (v != v && best == best)) {
        best = v;
        best_at = at;
      }
    }
  }
  return best_at;
}

// First and last output index whose window covers input coordinate i.
PYA_HD void pool_covering(int64_t i, int size, int stride, int64_t out, int64_t& first, int64_t& last) {
  first = i < size ? 0 : (i - size) / stride + 1;
  last = i / stride;
  if (last > out - 1) last = out - 1;
}

// The gradient reaching input (h, w) of one plane from the windows oh0..oh1 x
// ow0..ow1 that cover it: the sum, in row-major window order, of dy over the
// windows whose first maximal element it is.
PYA_HD float pool_input_grad_in(const float* x_plane, const float* y_plane, const float* dy_plane,
                                const PoolGeometry& g, int64_t h, int64_t w, int64_t oh0, int64_t oh1, int64_t ow0,
                                int64_t ow1) {
  int64_t at = h * g.W + w;
  float v = x_plane[at];
  float grad = 0.f;
  for (int64_t oh = oh0; oh <= oh1; ++oh) {
    for (int64_t ow = ow0; ow <= ow1; ++ow) {
      // Cheap filter first: only an element not below the window's max can be
      // its argmax; the exact rule (first maximal) is then checked in full.
      float m = y_plane[oh * g.OW + ow];
      if (!(v < m) && pool_argmax(x_plane, g, oh, ow) == at) grad += dy_plane[oh * g.OW + ow];
    }
  }
  return grad;
}

// The same for one input, finding its covering windows itself (the GPU's
// one-thread-per-input form; the CPU hoists the covering ranges out of its loops).
PYA_HD float pool_input_grad(const float* x_plane, const float* y_plane, const float* dy_plane, const PoolGeometry& g,
                             int64_t h, int64_t w) {
  int64_t oh0, oh1, ow0, ow1;
  pool_covering(h, g.size, g.stride, g.OH, oh0, oh1);
  pool_covering(w, g.size, g.stride, g.OW, ow0, ow1);
  return pool_input_grad_in(x_plane, y_plane, dy_plane, g, h, w, oh0, oh1, ow0, ow1);
}

namespace cpu {
// x: (planes, H, W); y and dy: (planes, OH, OW); all contiguous.
void max_pool_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int size, int stride,
                      Stream stream);
void max_pool_backward(const float* dy, const float* x, const float* y, float* dx, int64_t planes, int64_t H,
                       int64_t W, int size, int stride, Stream stream);
}  // namespace cpu

namespace cuda {
void max_pool_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int size, int stride,
                      Stream stream);
void max_pool_backward(const float* dy, const float* x, const float* y, float* dx, int64_t planes, int64_t H,
                       int64_t W, int size, int stride, Stream stream);
}  // namespace cuda

// Output extent of one dimension (the caller has checked size <= extent).
PYA_HD int64_t pool_out_size(int64_t extent, int size, int stride) { return (extent - size) / stride + 1; }

inline PoolGeometry pool_geometry(int64_t H, int64_t W, int size, int stride) {
  return PoolGeometry{H, W, pool_out_size(H, size, stride), pool_out_size(W, size, stride), size, stride};
}

}  // namespace pya
