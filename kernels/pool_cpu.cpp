// CPU max-pooling: one plane per OpenMP iteration, nested row/column loops (no
// integer division on the hot path).
//
// The backward is a scatter here, not the GPU's gather: each window, visited in
// row-major order, adds its dy to its first maximal element (pool_beats, the
// rule both backends share). An input therefore receives exactly the additions
// the gather makes, in the same order starting from zero, so the results are
// bit-identical to the GPU's, at a quarter of the window scans.
//
// From stored winners (max_pool_forward_with_indices' bytes) the backward is a
// scatter too: each window, in row-major order, adds its dy to the input its byte
// names; the same additions in the same order as the GPU's gather from the bytes,
// so the same bits again. (A gather per input, the GPU's shape, measured 2.5-4x
// slower here than even the recomputing scatter: several compares per input
// against one add per window.)
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "pool.h"

namespace pya::cpu {
namespace {

constexpr int64_t kRowChunk = 256;  // windows of one output row scanned together

// The winners of windows ow0 .. ow0 + n - 1 of output row oh: taps in row-major order outside, windows
// inside, so the compiler vectorises across windows (a window's scan alone is a serial chain of compares).
// Each window sees the same visits and the same pool_beats rule as pool_window_argmax: the same winner.
// best[i]: the winner's value; tap[i]: its position dh * tap_pitch + dw in the window (tap_pitch g.W: its
// offset from the window's top-left element in the plane; tap_pitch size: the stored winner byte).
template <class Size>
void row_winners(const float* plane, const PoolGeometry& g, int64_t oh, int64_t ow0, int64_t n, Size size,
                 int64_t tap_pitch, float* best, int32_t* tap) {
  const int64_t s = g.stride;
  const float* top = plane + oh * s * g.W + ow0 * s;
  for (int64_t i = 0; i < n; ++i) best[i] = top[i * s], tap[i] = 0;
  for (int dh = 0; dh < size; ++dh)
    for (int dw = 0; dw < size; ++dw) {
      if (dh == 0 && dw == 0) continue;
      const float* src = top + dh * g.W + dw;
      const int32_t t = static_cast<int32_t>(dh * tap_pitch + dw);
      for (int64_t i = 0; i < n; ++i) {
        const float v = src[i * s];
        const bool take = pool_beats(v, best[i]);
        best[i] = take ? v : best[i];
        tap[i] = take ? t : tap[i];
      }
    }
}

// winner: null for the plain forward, else where each window's winner byte goes.
template <class Size>
void forward_planes(const float* x, float* y, uint8_t* winner, int64_t planes, const PoolGeometry& g, Size size) {
  const int64_t in = g.H * g.W, out = g.OH * g.OW;
#pragma omp parallel for schedule(static) if (planes * in > (1 << 15))
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * in;
    float* yp = y + p * out;
    int32_t tap[kRowChunk];
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow0 = 0; ow0 < g.OW; ow0 += kRowChunk) {
        const int64_t n = std::min(kRowChunk, g.OW - ow0), o = p * out + oh * g.OW + ow0;
        row_winners(xp, g, oh, ow0, n, size, winner ? int64_t(size) : g.W, yp + oh * g.OW + ow0, tap);
        if (winner)
          for (int64_t i = 0; i < n; ++i) winner[o + i] = static_cast<uint8_t>(tap[i]);
      }
  }
}

template <class Size>
void backward_planes(const float* dy, const float* x, float* dx, int64_t planes, const PoolGeometry& g, Size size) {
  const int64_t in = g.H * g.W, out = g.OH * g.OW;
#pragma omp parallel for schedule(static) if (planes * in > (1 << 15))
  for (int64_t p = 0; p < planes; ++p) {
    const float *xp = x + p * in, *dyp = dy + p * out;
    float* dxp = dx + p * in;
    std::memset(dxp, 0, sizeof(float) * in);
    float best[kRowChunk];
    int32_t tap[kRowChunk];
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow0 = 0; ow0 < g.OW; ow0 += kRowChunk) {
        const int64_t n = std::min(kRowChunk, g.OW - ow0);
        row_winners(xp, g, oh, ow0, n, size, g.W, best, tap);
        float* top = dxp + oh * g.stride * g.W + ow0 * g.stride;
        for (int64_t i = 0; i < n; ++i) top[i * g.stride + tap[i]] += dyp[oh * g.OW + ow0 + i];  // window order
      }
  }
}

// offset_of[tap]: pool_tap_offset for every byte value, so the scatter neither divides nor branches on a
// byte's range beyond one sign test.
void backward_planes_from_winners(const float* dy, const uint8_t* winner, float* dx, int64_t planes,
                                  const PoolGeometry& g, const int64_t* offset_of) {
  const int64_t in = g.H * g.W, out = g.OH * g.OW, s = g.stride;
#pragma omp parallel for schedule(static) if (planes * in > (1 << 15))
  for (int64_t p = 0; p < planes; ++p) {
    const uint8_t* wp = winner + p * out;
    const float* dyp = dy + p * out;
    float* dxp = dx + p * in;
    std::memset(dxp, 0, sizeof(float) * in);
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      float* top = dxp + oh * s * g.W;
      for (int64_t ow = 0; ow < g.OW; ++ow) {  // window order
        const int64_t at = offset_of[wp[oh * g.OW + ow]];
        if (at >= 0) top[ow * s + at] += dyp[oh * g.OW + ow];
      }
    }
  }
}

using Paper3 = std::integral_constant<int, 3>;  // AlexNet's windows: a compile-time size unrolls the scan

// The forward, with (winner non-null) or without the winner bytes.
void forward(const float* x, float* y, uint8_t* winner, int64_t planes, int64_t H, int64_t W, int size, int stride) {
  PoolGeometry g = pool_geometry(H, W, size, stride);
  if (size == 3)
    forward_planes(x, y, winner, planes, g, Paper3{});
  else
    forward_planes(x, y, winner, planes, g, size);
}

}  // namespace

void max_pool_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int size, int stride, Stream) {
  forward(x, y, nullptr, planes, H, W, size, stride);
}

void max_pool_forward_with_indices(const float* x, float* y, uint8_t* winner, int64_t planes, int64_t H, int64_t W,
                                   int size, int stride, Stream) {
  forward(x, y, winner, planes, H, W, size, stride);
}

void max_pool_backward_from_indices(const float* dy, const uint8_t* winner, float* dx, int64_t planes, int64_t H,
                                    int64_t W, int size, int stride, Stream) {
  PoolGeometry g = pool_geometry(H, W, size, stride);
  int64_t offset_of[256];
  for (int tap = 0; tap < 256; ++tap) offset_of[tap] = pool_tap_offset<int64_t>(tap, size, W);
  backward_planes_from_winners(dy, winner, dx, planes, g, offset_of);
}

void max_pool_backward(const float* dy, const float* x, const float* y, float* dx, int64_t planes, int64_t H,
                       int64_t W, int size, int stride, Stream) {
  (void)y;  // the scatter recomputes each window's argmax; y only serves the GPU's gather filter
  PoolGeometry g = pool_geometry(H, W, size, stride);
  if (size == 3)
    backward_planes(dy, x, dx, planes, g, Paper3{});
  else
    backward_planes(dy, x, dx, planes, g, size);
}

}  // namespace pya::cpu
