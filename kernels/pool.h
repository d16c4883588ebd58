// Overlapping max-pooling (the paper's 3/2 windows; any size >= stride >= 1),
// no padding, output size floor((H - size) / stride) + 1.
//
// Backward: each window's gradient goes to the FIRST maximal element of that
// window in row-major order (a NaN counts as maximal, the first NaN winning, so
// NaNs propagate), and an input shared by overlapping windows sums them. It is
// a gather over the windows that cover each input (cuda-convnet's
// convLocalMaxUndo recomputes the max the same way rather than storing an
// argmax): no atomics, so results are identical run to run. Both backends find
// each window's winner with pool_window_argmax and add an input's terms in
// row-major window order starting from zero (the CPU as a scatter, the GPU as a
// gather), so CPU and GPU agree bit for bit.
//
// With stored winners: the forward can also write each window's winner as one
// byte, its tap dh * size + dw (windows up to 16x16), and the backward then reads
// dy and those bytes instead of recomputing the argmax from x (a training step has
// them from its forward; PyTorch keeps int64 indices): again a gather on the GPU
// (pool_grad_from_winners) and a scatter on the CPU (pool_tap_offset). Each input
// adds the same terms in the same order as above, so both backwards, and both
// backends, agree bit for bit.
#pragma once
#include "common.h"

namespace pya {

struct PoolGeometry {
  int64_t H, W, OH, OW;
  int size, stride;
};

// Whether element v, visited after the window's best so far, replaces it: strictly greater keeps the first
// of equal values; a NaN replaces a number once (so NaNs propagate, the first NaN winning).
PYA_HD bool pool_beats(float v, float best) { return v > best || (v != v && best == best); }

// Windows whose winner fits a byte: taps 0 .. size * size - 1 <= 255.
constexpr int kPoolMaxIndexedSize = 16;

// A window's first maximal element: `at`, its offset dh * pitch + dw from the window's top-left element, and
// `tap`, its position dh * size + dw within the window (what the stored winner byte holds).
template <class I>
struct PoolWinner {
  I at;
  int tap;
};

// The winner of the window whose top-left element is `win` (rows `pitch` apart), in row-major order.
// The one comparison rule of both backends: the CPU calls it on planes, the GPU
// on planes or on shared-memory tiles (int offsets), with the same visiting order.
// `size` is an int, or on the CPU a std::integral_constant for the paper's 3x3
// windows, so the loops unroll (same visits, same winner). A caller that reads only
// `at` pays nothing for `tap` (the compiler drops it).
template <class I, class Size = int>
PYA_HD PoolWinner<I> pool_window_winner(const float* win, I pitch, Size size) {
  PoolWinner<I> best_w{0, 0};
  float best = win[0];
  for (int dh = 0; dh < size; ++dh) {
    for (int dw = 0; dw < size; ++dw) {
      I at = dh * pitch + dw;
      float v = win[at];
      if (pool_beats(v, best)) {
        best = v;
        best_w.at = at;
        best_w.tap = dh * size + dw;
      }
    }
  }
  return best_w;
}

// The winner's offset alone (see pool_window_winner).
template <class I, class Size = int>
PYA_HD I pool_window_argmax(const float* win, I pitch, Size size) {
  return pool_window_winner<I>(win, pitch, size).at;
}

// Row-major index (within the plane) of the first maximal element of window (oh, ow); `size` is g.size, as
// an int or a compile-time constant (see pool_window_argmax).
template <class Size>
PYA_HD int64_t pool_argmax(const float* plane, const PoolGeometry& g, int64_t oh, int64_t ow, Size size) {
  int64_t top_left = oh * g.stride * g.W + ow * g.stride;
  return top_left + pool_window_argmax<int64_t>(plane + top_left, g.W, size);
}
PYA_HD int64_t pool_argmax(const float* plane, const PoolGeometry& g, int64_t oh, int64_t ow) {
  return pool_argmax(plane, g, oh, ow, g.size);
}

// First and last output index whose window covers input coordinate i (first > last: none).
template <class I>
PYA_HD void pool_covering(I i, int size, int stride, I out, I& first, I& last) {
  first = i < size ? 0 : (i - size) / stride + 1;
  last = i / stride;
  if (last > out - 1) last = out - 1;
}

// The gradient of one input from the windows oh0..oh1 x ow0..ow1 covering it,
// given each window's winner (the offset of its first maximal element, in the
// same coordinates as `at`) and dy, both at [oh * pitch + ow]: the sum, in
// row-major window order, of dy over the windows whose winner is the input.
// The CPU's scatter adds the same terms in the same order, starting from zero.
template <class I>
PYA_HD float pool_gather(const I* winner, const float* dy, I pitch, I oh0, I oh1, I ow0, I ow1, I at) {
  float grad = 0.f;
  for (I oh = oh0; oh <= oh1; ++oh) {
    for (I ow = ow0; ow <= ow1; ++ow) {
      if (winner[oh * pitch + ow] == at) grad += dy[oh * pitch + ow];
    }
  }
  return grad;
}

// The gradient reaching input (h, w) of one plane, recomputing the argmax of
// each covering window (the GPU's fallback for planes too wide for its tiles).
PYA_HD float pool_input_grad(const float* x_plane, const float* y_plane, const float* dy_plane, const PoolGeometry& g,
                             int64_t h, int64_t w) {
  int64_t oh0, oh1, ow0, ow1;
  pool_covering<int64_t>(h, g.size, g.stride, g.OH, oh0, oh1);
  pool_covering<int64_t>(w, g.size, g.stride, g.OW, ow0, ow1);
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

// The gradient of input (h, w) of one plane from its windows' stored winner bytes (tap = dh * size + dw, at
// [oh * OW + ow] like dy), given the windows oh0..oh1 x ow0..ow1 that cover it (pool_covering): the sum, in
// row-major window order starting from zero, of dy over the windows whose winner is this input: the GPU's
// backward from stored winners. The same terms in the same order as pool_gather and as the CPU's scatters,
// so the same bits. A byte that is no tap of the window (>= size * size) matches no input: it is compared,
// never used as an offset.
// Branch-free: ceil(size / stride) window rows and columns always (2 for the paper's 3/2; a fixed count when
// `size` and `stride` are compile-time constants), those past oh1 or ow1 reading window (oh1, ow1), always in
// bounds, and adding +0.f. That changes no bit: the sum starts at +0.f and
// so is never -0.f, and x + 0.f == x for every other x. Every byte and dy is read whether it is used or not,
// and the tests combine with & rather than &&: a load under a condition cannot be hoisted, so `covers &&
// winner[o]` and `wins ? dy[o] : 0` compiled to a branch around each load, 8 dependent round trips in turn
// per input, where unconditional reads put all 8 in flight at once.
template <class I, class Size, class Stride>
PYA_HD float pool_grad_from_winners(const uint8_t* winner, const float* dy, I OW, I oh0, I oh1, I ow0, I ow1, I h,
                                    I w, Size size, Stride stride) {
  const int cover = (size + stride - 1) / stride;
  float grad = 0.f;
  for (int a = 0; a < cover; ++a) {
    const I oh = oh0 + a;
    const I row_tap = (h - oh * stride) * size;  // this input's dh * size in window row oh
    for (int b = 0; b < cover; ++b) {
      const I ow = ow0 + b;
      const bool covers = oh <= oh1 && ow <= ow1;
      const I o = covers ? oh * OW + ow : oh1 * OW + ow1;
      const I tap = winner[o];
      const float g = dy[o];
      const bool wins = covers & (tap == row_tap + (w - ow * stride));
      grad += wins ? g : 0.f;
    }
  }
  return grad;
}

// The same for input (h, w), finding its covering windows first.
template <class I, class Size, class Stride>
PYA_HD float pool_input_grad_from_winners(const uint8_t* winner, const float* dy, I OH, I OW, I h, I w, Size size,
                                          Stride stride) {
  I oh0, oh1, ow0, ow1;
  pool_covering<I>(h, size, stride, OH, oh0, oh1);
  pool_covering<I>(w, size, stride, OW, ow0, ow1);
  return pool_grad_from_winners<I>(winner, dy, OW, oh0, oh1, ow0, ow1, h, w, size, stride);
}

// The offset, from its window's top-left element (rows `pitch` apart), of the input a winner byte names;
// -1 for a byte that is no tap of the window (>= size * size). The CPU's scatter from the bytes uses it.
template <class I, class Size>
PYA_HD I pool_tap_offset(int tap, Size size, I pitch) {
  return tap < size * size ? I(tap / size) * pitch + I(tap % size) : I(-1);
}

namespace cpu {
// x: (planes, H, W); y and dy: (planes, OH, OW); all contiguous.
void max_pool_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int size, int stride,
                      Stream stream);
void max_pool_backward(const float* dy, const float* x, const float* y, float* dx, int64_t planes, int64_t H,
                       int64_t W, int size, int stride, Stream stream);
// The forward, also writing each window's winner tap (dh * size + dw) to `winner` (planes, OH, OW); size <= 16.
void max_pool_forward_with_indices(const float* x, float* y, uint8_t* winner, int64_t planes, int64_t H, int64_t W,
                                   int size, int stride, Stream stream);
// dx of the input (planes, H, W) from dy and the winners max_pool_forward_with_indices wrote; x is not needed.
void max_pool_backward_from_indices(const float* dy, const uint8_t* winner, float* dx, int64_t planes, int64_t H,
                                    int64_t W, int size, int stride, Stream stream);
}  // namespace cpu

namespace cuda {
void max_pool_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int size, int stride,
                      Stream stream);
void max_pool_backward(const float* dy, const float* x, const float* y, float* dx, int64_t planes, int64_t H,
                       int64_t W, int size, int stride, Stream stream);
void max_pool_forward_with_indices(const float* x, float* y, uint8_t* winner, int64_t planes, int64_t H, int64_t W,
                                   int size, int stride, Stream stream);
void max_pool_backward_from_indices(const float* dy, const uint8_t* winner, float* dx, int64_t planes, int64_t H,
                                    int64_t W, int size, int stride, Stream stream);
}  // namespace cuda

// Output extent of one dimension (the caller has checked size <= extent).
PYA_HD int64_t pool_out_size(int64_t extent, int size, int stride) { return (extent - size) / stride + 1; }

inline PoolGeometry pool_geometry(int64_t H, int64_t W, int size, int stride) {
  return PoolGeometry{H, W, pool_out_size(H, size, stride), pool_out_size(W, size, stride), size, stride};
}

}  // namespace pya
