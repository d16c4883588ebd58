// CPU max-pooling. Each window's winner (first maximal element in row-major order, pool_beats) is found in
// two flat passes over a band of whole input rows: the winner of every run of `size` neighbours along a row
// (at every column, not only the windows' first ones), then the winner of `size` of those stacked a row
// apart. Both passes run over the band as one contiguous array, with unit stride, so they vectorise into
// whole registers; the window rows alone (AlexNet's 27, 13 and 6 windows, or the small preset's 15) are too
// short for that, and their stride-2 loads were gathers: pool1 ran at 13% of the copy bandwidth. The passes
// compute `stride` times more positions than there are windows, and the windows then read theirs.
//
// The two passes give the row-major scan's winner: a row's winner is its first NaN, else its first maximum,
// and the winner of the rows' winners, taken in order, is then the window's first NaN, else its first
// maximum. Values are only moved, never computed, so every output is the scan's bits.
//
// A band is a group of whole planes when they fit the scratch (the small planes of pool2 and pool5: one
// band for many planes; the positions that mix two planes are computed and never read), else some rows
// of one plane; a plane so wide that `size` of its rows do not fit (over 2730 columns for 3x3 windows)
// takes each window's scan in turn (pool_window_winner).
//
// The backward is a scatter here, not the GPU's gather: each window, visited in row-major order, adds its
// dy to its winner. An input therefore receives exactly the additions the gather makes, in the same order
// starting from zero, so the results are bit-identical to the GPU's. A plane's bands run in order on one
// thread, so no two threads add into the same input.
//
// From stored winners (max_pool_forward_with_indices' bytes) the backward is a scatter too: each window, in
// row-major order, adds its dy to the input its byte names; the same additions in the same order as the
// GPU's gather from the bytes, so the same bits again. (A gather per input, the GPU's shape, measured
// 2.5-4x slower here than even the recomputing scatter: several compares per input against one add per
// window.)
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "cpu_parallel.h"
#include "gemm_cpu.h"  // cpu_threads_available
#include "pool.h"

namespace pya::cpu {
namespace {

// Floats of a band (and of each of the passes' arrays): 4 arrays of 32 KB on each thread's stack, in L2.
constexpr int64_t kBandFloats = 8192;

struct BandScratch {
  float row_best[kBandFloats], best[kBandFloats];
  int32_t row_tap[kBandFloats], tap[kBandFloats];
};

// The winners of every window whose rows start in the band `src[0 .. n)` (rows of `W` floats): at position
// t (a window's top-left element), s.best[t] and s.tap[t] = dh * tap_pitch + dw, for t < n - (size - 1) *
// (W + 1). Positions of other windows' corners hold their winners too; those of no window hold junk.
// With the side known at compile time each pass is one loop over t, the taps unrolled inside it and the
// winner kept in registers; with a runtime side GCC vectorises only the loop over t innermost, so each tap
// is a pass of its own over the band (on the paper's 3x3 windows 1.7x slower than the fused form; on 7x7
// windows still 1.4x faster than scanning each window). The same visits in the same order either way.
template <class Size>
void band_winners(const float* __restrict src, int64_t n, int64_t W, Size size, int64_t tap_pitch, BandScratch& s) {
  const int64_t m = n - (size - 1), m2 = m - (size - 1) * W;
  float *__restrict row_best = s.row_best, *__restrict best = s.best;
  int32_t *__restrict row_tap = s.row_tap, *__restrict tap = s.tap;
  if constexpr (!std::is_same_v<Size, int>) {
    for (int64_t t = 0; t < m; ++t) {
      float b = src[t];
      int32_t k = 0;
      for (int dw = 1; dw < size; ++dw) {
        const float v = src[t + dw];
        const bool take = pool_beats(v, b);
        b = take ? v : b;
        k = take ? dw : k;
      }
      row_best[t] = b, row_tap[t] = k;
    }
    for (int64_t t = 0; t < m2; ++t) {
      float b = row_best[t];
      int32_t k = row_tap[t];
      for (int dh = 1; dh < size; ++dh) {
        const float v = row_best[t + dh * W];
        const bool take = pool_beats(v, b);
        b = take ? v : b;
        k = take ? row_tap[t + dh * W] + static_cast<int32_t>(dh * tap_pitch) : k;
      }
      best[t] = b, tap[t] = k;
    }
  } else {
    for (int64_t t = 0; t < m; ++t) row_best[t] = src[t], row_tap[t] = 0;
    for (int dw = 1; dw < size; ++dw)
      for (int64_t t = 0; t < m; ++t) {
        const float v = src[t + dw];
        const bool take = pool_beats(v, row_best[t]);
        row_best[t] = take ? v : row_best[t];
        row_tap[t] = take ? dw : row_tap[t];
      }
    for (int64_t t = 0; t < m2; ++t) best[t] = row_best[t], tap[t] = row_tap[t];
    for (int dh = 1; dh < size; ++dh) {
      const int64_t below = dh * W;
      const int32_t row = static_cast<int32_t>(dh * tap_pitch);
      for (int64_t t = 0; t < m2; ++t) {
        const float v = row_best[t + below];
        const bool take = pool_beats(v, best[t]);
        best[t] = take ? v : best[t];
        tap[t] = take ? row_tap[t + below] + row : tap[t];
      }
    }
  }
}

// Calls visit(p, oh, ow0, n, best, tap) for windows (oh, ow0 .. ow0 + n - 1) of every plane p of x (planes of
// H x W), in row-major window order within a plane, where best[i * stride] and tap[i * stride] are window
// (oh, ow0 + i)'s winner and its tap dh * tap_pitch + dw (int32 from the bands, whose rows fit kBandFloats;
// int64 from the wide rows' scans, so `visit` takes either). A plane's windows come in order on one thread;
// threads share the planes (not when the work is small).
template <class Size, class Visit>
void for_each_window_row(const float* x, int64_t planes, const PoolGeometry& g, Size size, int64_t tap_pitch,
                         const Visit& visit) {
  const int64_t in = g.H * g.W, s = g.stride;
  const bool parallel = planes * in > kComputeParallelMin;
  if (in <= kBandFloats) {  // groups of whole planes, enough groups to share among the threads
    const int64_t threads = parallel ? cpu_threads_available() : 1;
    const int64_t group = std::max<int64_t>(1, std::min(kBandFloats / in, (planes + 4 * threads - 1) / (4 * threads)));
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t p0 = 0; p0 < planes; p0 += group) {
      BandScratch scratch;
      const int64_t np = std::min(group, planes - p0);
      band_winners(x + p0 * in, np * in, g.W, size, tap_pitch, scratch);
      for (int64_t p = 0; p < np; ++p)
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t t = p * in + oh * s * g.W;
          visit(p0 + p, oh, int64_t(0), g.OW, scratch.best + t, scratch.tap + t);
        }
    }
  } else if (int64_t(size) * g.W <= kBandFloats) {  // bands of rows of one plane, in order
    const int64_t rows = std::min<int64_t>(g.OH, (kBandFloats / g.W - size) / s + 1);
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t p = 0; p < planes; ++p) {
      BandScratch scratch;
      for (int64_t oh0 = 0; oh0 < g.OH; oh0 += rows) {
        const int64_t nr = std::min(rows, g.OH - oh0);
        band_winners(x + p * in + oh0 * s * g.W, ((nr - 1) * s + size) * g.W, g.W, size, tap_pitch, scratch);
        for (int64_t r = 0; r < nr; ++r) {
          const int64_t t = r * s * g.W;
          visit(p, oh0 + r, int64_t(0), g.OW, scratch.best + t, scratch.tap + t);
        }
      }
    }
  } else {  // rows too wide for a band: each window's own scan
    // Taps as int64 here: the backward's tap_pitch is W, and dh * W passes 2^31 on planes this wide (3x3
    // windows on rows of 2^30 + 1: an int32 tap wrapped negative and the scatter wrote before dx).
    const int64_t chunk = kBandFloats / s;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t p = 0; p < planes; ++p) {
      float best[kBandFloats];
      int64_t tap[kBandFloats];
      for (int64_t oh = 0; oh < g.OH; ++oh)
        for (int64_t ow0 = 0; ow0 < g.OW; ow0 += chunk) {
          const int64_t n = std::min(chunk, g.OW - ow0);
          const float* top = x + p * in + oh * s * g.W + ow0 * s;
          for (int64_t i = 0; i < n; ++i) {
            const PoolWinner<int64_t> w = pool_window_winner<int64_t>(top + i * s, g.W, size);
            best[i * s] = top[i * s + w.at];
            tap[i * s] = w.tap / size * tap_pitch + w.tap % size;
          }
          visit(p, oh, ow0, n, best, tap);
        }
    }
  }
}

// Size: the window side as an int, or from 2 to 5 (the paper's 3 among them) a compile-time constant, so
// the passes fuse (see band_winners).
template <class F>
void with_window_size(int size, const F& f) {
  switch (size) {
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    default: return f(size);
  }
}

}  // namespace

void max_pool_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int size, int stride, Stream) {
  const PoolGeometry g = pool_geometry(H, W, size, stride);
  with_window_size(size, [&](auto sz) {
    for_each_window_row(x, planes, g, sz, int64_t(sz), [&](int64_t p, int64_t oh, int64_t ow0, int64_t n,
                                                            const float* best, const auto*) {
      float* yr = y + (p * g.OH + oh) * g.OW + ow0;
      for (int64_t i = 0; i < n; ++i) yr[i] = best[i * stride];
    });
  });
}

void max_pool_forward_with_indices(const float* x, float* y, uint8_t* winner, int64_t planes, int64_t H, int64_t W,
                                   int size, int stride, Stream) {
  const PoolGeometry g = pool_geometry(H, W, size, stride);
  with_window_size(size, [&](auto sz) {
    for_each_window_row(x, planes, g, sz, int64_t(sz), [&](int64_t p, int64_t oh, int64_t ow0, int64_t n,
                                                            const float* best, const auto* tap) {
      const int64_t o = (p * g.OH + oh) * g.OW + ow0;
      for (int64_t i = 0; i < n; ++i) y[o + i] = best[i * stride], winner[o + i] = static_cast<uint8_t>(tap[i * stride]);
    });
  });
}

void max_pool_backward(const float* dy, const float* x, const float* y, float* dx, int64_t planes, int64_t H,
                       int64_t W, int size, int stride, Stream) {
  (void)y;  // the scatter recomputes each window's winner; y only serves the GPU's gather filter
  const PoolGeometry g = pool_geometry(H, W, size, stride);
  const int64_t in = H * W;
  with_window_size(size, [&](auto sz) {
    for_each_window_row(x, planes, g, sz, W, [&](int64_t p, int64_t oh, int64_t ow0, int64_t n, const float*,
                                                 const auto* at) {
      float* dxp = dx + p * in;
      if (oh == 0 && ow0 == 0) std::memset(dxp, 0, sizeof(float) * in);  // a plane's first window comes first
      float* top = dxp + oh * stride * W + ow0 * stride;
      const float* dyr = dy + (p * g.OH + oh) * g.OW + ow0;
      for (int64_t i = 0; i < n; ++i) top[i * stride + at[i * stride]] += dyr[i];  // window order
    });
  });
}

void max_pool_backward_from_indices(const float* dy, const uint8_t* winner, float* dx, int64_t planes, int64_t H,
                                    int64_t W, int size, int stride, Stream) {
  const PoolGeometry g = pool_geometry(H, W, size, stride);
  // offset_of[byte]: pool_tap_offset for every byte value, so the scatter neither divides nor branches on a
  // byte's range beyond one sign test.
  int64_t offset_of[256];
  for (int tap = 0; tap < 256; ++tap) offset_of[tap] = pool_tap_offset<int64_t>(tap, size, W);
  const int64_t in = H * W, out = g.OH * g.OW, s = stride;
#pragma omp parallel for schedule(static) if (planes * in > kStreamParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const uint8_t* wp = winner + p * out;
    const float* dyp = dy + p * out;
    float* dxp = dx + p * in;
    std::memset(dxp, 0, sizeof(float) * in);
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      float* top = dxp + oh * s * W;
      for (int64_t ow = 0; ow < g.OW; ++ow) {  // window order
        const int64_t at = offset_of[wp[oh * g.OW + ow]];
        if (at >= 0) top[ow * s + at] += dyp[oh * g.OW + ow];
      }
    }
  }
}

}  // namespace pya::cpu
