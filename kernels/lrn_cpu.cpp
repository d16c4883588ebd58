#include "lrn.h"
#include "cpu_parallel.h"

namespace pya::cpu {
namespace {

// The channel window of centre channel c.
void window(int c, int C, int half, int& lo, int& hi) {
  lo = c - half < 0 ? 0 : c - half;
  hi = c + half < C ? c + half : C - 1;
}

// acc[p] = k + alpha * sum_{j = lo..hi} a[j][p]^2 over one plane of HW pixels, the sum in channel order
// from 0 (the channel order of lrn_cuda.cu's chunked kernels; which products the compilers fuse into FMAs
// differs, so the two backends' denominators can differ by 1-2 ulp). The pixel loops vectorise; the channel loop stays
// outside them so that each element still sees its terms in the same order.
void plane_denominators(const float* a, float* acc, int lo, int hi, int64_t HW, float alpha, float k) {
  for (int64_t p = 0; p < HW; ++p) acc[p] = 0.f;
  for (int j = lo; j <= hi; ++j) {
    const float* aj = a + j * HW;
    for (int64_t p = 0; p < HW; ++p) acc[p] += lrn_square(aj[p]);
  }
  for (int64_t p = 0; p < HW; ++p) acc[p] = lrn_denominator(acc[p], alpha, k);
}

}  // namespace

// Windows up to 2 * kLrnDirectHalf + 1: one (image, channel) plane per iteration. Longer windows: one pixel
// per iteration, walking down the channels with lrn.h's running sum.
void lrn_forward(const float* x, float* y, int64_t N, int C, int64_t HW, int size, float alpha, float beta, float k,
                 Stream) {
  // Nothing to do, and the per-pixel loop below would walk N * HW pixels of no channels: (1, 0, 2^30, 2^30)
  // ran for years with the GIL released.
  if (N == 0 || C == 0 || HW == 0) return;
  const int half = size / 2;
  if (half <= kLrnDirectHalf) {
    const int64_t planes = N * C;
#pragma omp parallel for schedule(static) if (planes * HW > kComputeParallelMin)
    for (int64_t pl = 0; pl < planes; ++pl) {
      const int c = int(pl % C);
      const float* xn = x + (pl - c) * HW;  // image pl / C, channel 0
      float* yp = y + pl * HW;
      int lo, hi;
      window(c, C, half, lo, hi);
      plane_denominators(xn, yp, lo, hi, HW, alpha, k);  // y holds d until it is overwritten
      const float* xp = x + pl * HW;
      with_lrn_formula(beta, [&](auto three_quarters) {
        constexpr bool kThreeQuarters = decltype(three_quarters)::value;
        for (int64_t p = 0; p < HW; ++p)
          yp[p] = lrn_output_from_pow(xp[p], lrn_pow_neg_with<kThreeQuarters>(yp[p], beta));
      });
    }
    return;
  }
  const int64_t pixels = N * HW;
#pragma omp parallel for schedule(static) if (pixels * C > kComputeParallelMin)
  for (int64_t p = 0; p < pixels; ++p) {
    const int64_t off = (p / HW) * C * HW + p % HW;
    lrn_forward_pixel(x + off, y + off, C, HW, half, alpha, beta, k);
  }
}

// workspace: the denominators d (N*C*HW floats).
void lrn_backward(const float* dy, const float* x, const float* y, float* dx, float* workspace, int64_t N, int C,
                  int64_t HW, int size, float alpha, float beta, float k, Stream) {
  if (N == 0 || C == 0 || HW == 0) return;  // as in the forward
  const int half = size / 2;
  float* d = workspace;
  if (half <= kLrnDirectHalf) {
    const int64_t planes = N * C;
    const float two_alpha_beta = 2.f * alpha * beta;
#pragma omp parallel if (planes * HW > kComputeParallelMin)
    {
#pragma omp for schedule(static)
      for (int64_t pl = 0; pl < planes; ++pl) {
        const int c = int(pl % C);
        int lo, hi;
        window(c, C, half, lo, hi);
        plane_denominators(x + (pl - c) * HW, d + pl * HW, lo, hi, HW, alpha, k);
      }
      // (the implicit barrier: every plane's d is ready)
#pragma omp for schedule(static)
      for (int64_t pl = 0; pl < planes; ++pl) {
        const int c = int(pl % C);
        const int64_t base = (pl - c) * HW;  // image pl / C, channel 0
        int lo, hi;
        window(c, C, half, lo, hi);
        float* dxp = dx + pl * HW;  // holds the window's sum of ratios until it is overwritten
        for (int64_t p = 0; p < HW; ++p) dxp[p] = 0.f;
        for (int j = lo; j <= hi; ++j) {
          const float *dyj = dy + base + j * HW, *yj = y + base + j * HW, *dj = d + base + j * HW;
          for (int64_t p = 0; p < HW; ++p) dxp[p] += lrn_ratio_value(dyj[p], yj[p], dj[p]);
        }
        const float *dyp = dy + pl * HW, *xp = x + pl * HW, *dp = d + pl * HW;
        with_lrn_formula(beta, [&](auto three_quarters) {
          constexpr bool kThreeQuarters = decltype(three_quarters)::value;
          for (int64_t p = 0; p < HW; ++p)
            dxp[p] = lrn_input_grad_from_pow(dyp[p], lrn_pow_neg_with<kThreeQuarters>(dp[p], beta), xp[p], dxp[p],
                                             two_alpha_beta);
        });
      }
    }
    return;
  }
  const int64_t pixels = N * HW;
#pragma omp parallel for schedule(static) if (pixels * C > kComputeParallelMin)
  for (int64_t p = 0; p < pixels; ++p) {
    const int64_t off = (p / HW) * C * HW + p % HW;
    lrn_denominators(x + off, d + off, C, HW, half, alpha, k);
    lrn_backward_pixel(dy + off, x + off, y + off, d + off, dx + off, C, HW, half, alpha, beta);
  }
}

}  // namespace pya::cpu
