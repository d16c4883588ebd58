// Cross-map local response normalisation, exactly the paper's formula:
//   d[i] = k + alpha * sum_{j = max(0, i-n/2)}^{min(C-1, i+n/2)} a[j]^2     (alpha NOT divided by n)
//   b[i] = a[i] * d[i]^-beta
//   da[i] = db[i] * d[i]^-beta - 2 alpha beta a[i] * sum_{j in window(i)} db[j] b[j] / d[j]
// (the windows are symmetric, so "j whose window holds i" is window(i) itself).
//
// The CPU sums each window directly, a channel plane at a time (vectorised over
// the pixels); for long windows it runs the per-pixel routines below, one pass
// down the channels at one (n, y, x) with a running window sum. The GPU holds a
// chunk of channels in registers and sums each window directly (see
// lrn_cuda.cu). Both build every value from the same per-element helpers
// (lrn_denominator, lrn_output, lrn_ratio_value, lrn_input_grad; the GPU's
// backward calls their *_from_pow forms, which share one d^-beta per channel).
#pragma once
#include <cmath>
#include <type_traits>

#include "common.h"

namespace pya {

// d^-beta for d >= k > 0. The paper's beta = 3/4 goes through reciprocal square roots: d^-3/4 = r * (r * rsqrt(r))
// with r = d^-1/2, each factor within float range for every finite d and the result a few ulp from exact; on the
// GPU that is two hardware instructions where log2f alone is a ~28-instruction software routine, the largest cost
// of the LRN kernels. d = inf (an overflowed square) gives 0, as exp2(-inf) does: r = 0, and the max keeps the
// second root finite (0 * rsqrt(0) would be NaN) without a branch. Other betas: exp2/log2 of d, no
// overflow for large d where d^beta itself could overflow before the division. Both backends choose by the same
// test (lrn_beta_is_three_quarters), so they use the same formula for the same beta.
PYA_HD float lrn_rsqrt(float v) {
#if defined(__CUDA_ARCH__)
  return rsqrtf(v);
#else
  return 1.f / std::sqrt(v);
#endif
}
// max(v, m) for m > 0, and m for a NaN v (so the product it feeds stays NaN through its other factors). On the
// host a select (one maxss), not fmaxf: with no -ffast-math GCC calls libm's fmaxf for its NaN rules, a call
// per element that kept the CPU loops from vectorising. fmaxf returns m for a NaN v too: the same bits.
PYA_HD float lrn_at_least(float v, float m) {
#if defined(__CUDA_ARCH__)
  return fmaxf(v, m);
#else
  return v > m ? v : m;
#endif
}
PYA_HD bool lrn_beta_is_three_quarters(float beta) { return beta == 0.75f; }
PYA_HD float lrn_pow_neg_three_quarters(float d) {
  float r = lrn_rsqrt(d);
  return r * (r * lrn_rsqrt(lrn_at_least(r, 1.17549435e-38f)));  // FLT_MIN: r >= 5e-20 for every finite d
}
PYA_HD float lrn_pow_neg_general(float d, float beta) {
#if defined(__CUDA_ARCH__)
  return exp2f(-beta * log2f(d));
#else
  return std::exp2(-beta * std::log2(d));
#endif
}
// The formula chosen at compile time (the GPU kernels are templates on it: a runtime test would split their
// unrolled channel loops into basic blocks), and at run time from beta.
template <bool kThreeQuarters>
PYA_HD float lrn_pow_neg_with(float d, float beta) {
  return kThreeQuarters ? lrn_pow_neg_three_quarters(d) : lrn_pow_neg_general(d, beta);
}
PYA_HD float lrn_pow_neg(float d, float beta) {
  return lrn_beta_is_three_quarters(beta) ? lrn_pow_neg_with<true>(d, beta) : lrn_pow_neg_with<false>(d, beta);
}
// Host code: calls f(std::bool_constant<beta is 3/4>{}), so code whose loops must not test beta takes the
// formula at compile time: the GPU launchers as their kernels' template parameter, the CPU's pixel loops
// (GCC does not vectorise a loop with a branch in it).
template <class F>
void with_lrn_formula(float beta, F&& f) {
  if (lrn_beta_is_three_quarters(beta))
    f(std::true_type{});
  else
    f(std::false_type{});
}

PYA_HD float lrn_square(float a) { return a * a; }

// d = k + alpha * (window sum of squares).
PYA_HD float lrn_denominator(float sum_sq, float alpha, float k) { return k + alpha * sum_sq; }

// b = a * d^-beta, from p = d^-beta (lrn_pow_neg) when the caller also needs p.
PYA_HD float lrn_output_from_pow(float a, float p) { return a * p; }
PYA_HD float lrn_output(float a, float d, float beta) { return lrn_output_from_pow(a, lrn_pow_neg(d, beta)); }

// The backward's per-channel ratio db[j] * b[j] / d[j].
PYA_HD float lrn_ratio_value(float dy, float y, float d) { return dy * y / d; }

// The same ratio from a and p = d^-beta, b = a * p as the forward makes it. On the GPU the division is the
// hardware's approximate one (within 2 ulp, and 0 for d beyond 2^126, where the exact ratio is below 2^-126 *
// |db * b| anyway): IEEE division's slow-path call splits each channel of an unrolled kernel into its own basic
// block, which keeps the scheduler from overlapping one channel's log/exp/divide chain with the next one's.
PYA_HD float lrn_ratio_from_pow(float dy, float a, float p, float d) {
#if defined(__CUDA_ARCH__)
  return __fdividef(dy * lrn_output_from_pow(a, p), d);
#else
  return lrn_ratio_value(dy, lrn_output_from_pow(a, p), d);
#endif
}

// da[i] = db[i] * d[i]^-beta - 2 alpha beta a[i] * (window sum of ratios);
// two_alpha_beta = 2 * alpha * beta, computed once by the caller; p = d[i]^-beta.
PYA_HD float lrn_input_grad_from_pow(float dy, float p, float a, float sum_ratio, float two_alpha_beta) {
  return dy * p - two_alpha_beta * a * sum_ratio;
}
PYA_HD float lrn_input_grad(float dy, float d, float a, float sum_ratio, float beta, float two_alpha_beta) {
  return lrn_input_grad_from_pow(dy, lrn_pow_neg(d, beta), a, sum_ratio, two_alpha_beta);
}

// Sum of squares over channels [lo, hi] of one pixel (channel stride cs).
PYA_HD float lrn_window_sum(const float* a, int64_t cs, int lo, int hi) {
  float s = 0.f;
  for (int j = lo; j <= hi; ++j) s += lrn_square(a[j * cs]);
  return s;
}

// After subtracting the leaving square `leaving` the running sum `s` may carry
// the rounding error of that larger value (up to 2^-24 * leaving), or be
// negative, inf (an overflowed square) or NaN (inf - inf). Recompute it from
// the window when that error could exceed ~2^-20 of the denominator; with the
// paper's k = 2 this needs |a| > ~560, so ordinary data rarely pays for it.
PYA_HD bool lrn_sum_is_unreliable(float s, float leaving, float alpha, float k) {
  if (!(s >= 0.f) || s == INFINITY) return true;
  return alpha * leaving > 16.f * (k + alpha * s);
}

// The running window sum of squares at one pixel, for centre channel i.
struct LrnSquareSum {
  const float* a;
  int64_t cs;
  int C, half;
  float alpha, k, s;

  PYA_HD LrnSquareSum(const float* a_, int64_t cs_, int C_, int half_, float alpha_, float k_)
      : a(a_), cs(cs_), C(C_), half(half_), alpha(alpha_), k(k_) {
    s = lrn_window_sum(a, cs, 0, half < C - 1 ? half : C - 1);
  }

  PYA_HD float denominator() const { return lrn_denominator(s, alpha, k); }

  // Slides the window from [i-half, i+half] to [i+1-half, i+1+half].
  PYA_HD void advance(int i) {
    int enter = i + 1 + half, leave = i - half;
    if (enter < C) s += lrn_square(a[enter * cs]);
    if (leave >= 0) {
      float gone = lrn_square(a[leave * cs]);
      s -= gone;
      if (lrn_sum_is_unreliable(s, gone, alpha, k)) {
        int lo = i + 1 - half, hi = i + 1 + half;
        s = lrn_window_sum(a, cs, lo < 0 ? 0 : lo, hi < C ? hi : C - 1);
      }
    }
  }
};

// Windows up to 2 * kLrnDirectHalf + 1 channels (the paper's 5 among them) are summed directly, in
// channel order, on both backends (lrn_cpu.cpp plane by plane, lrn_cuda.cu in registers): a running sum
// carries the rounding of every channel it has passed (1.6e-5 relative after 96 channels at alpha 0.05,
// beta 1.3). Longer windows take the per-pixel running sums below, on both backends.
constexpr int kLrnDirectHalf = 3;

// Forward for one pixel (C channels, channel stride cs): y[i] = a[i] * d[i]^-beta.
PYA_HD void lrn_forward_pixel(const float* a, float* y, int C, int64_t cs, int half, float alpha, float beta,
                              float k) {
  LrnSquareSum w(a, cs, C, half, alpha, k);
  for (int i = 0; i < C; ++i) {
    y[i * cs] = lrn_output(a[i * cs], w.denominator(), beta);
    if (i + 1 < C) w.advance(i);
  }
}

// Denominators d[i] for one pixel: the forward's sums, kept for the backward.
PYA_HD void lrn_denominators(const float* a, float* d, int C, int64_t cs, int half, float alpha, float k) {
  LrnSquareSum w(a, cs, C, half, alpha, k);
  for (int i = 0; i < C; ++i) {
    d[i * cs] = w.denominator();
    if (i + 1 < C) w.advance(i);
  }
}

PYA_HD float lrn_ratio(const float* dy, const float* y, const float* d, int j, int64_t cs) {
  return lrn_ratio_value(dy[j * cs], y[j * cs], d[j * cs]);
}

// The window sum of ratios over channels [lo, hi], directly.
PYA_HD float lrn_ratio_window_sum(const float* dy, const float* y, const float* d, int64_t cs, int lo, int hi) {
  float s = 0.f;
  for (int j = lo; j <= hi; ++j) s += lrn_ratio(dy, y, d, j, cs);
  return s;
}

// Whether the signed running sum `s`, just moved by a term of size |t|, may now be mostly the rounding left by
// earlier, larger terms (up to 2^-24 of each): it lost four bits or more to cancellation. The error matters
// because da multiplies the sum by a[i]: a channel of 1e8 among ones took the ~1e-7 left when the ratios near
// it cancelled and gave -4.5e-3 where the exact gradient is -5e-10. Random signs trigger it a few percent of
// the time; the recomputed sum is the direct one.
PYA_HD bool lrn_ratio_sum_is_unreliable(float s, float t) { return !(16.f * fabsf(s) >= fabsf(t)); }

// Backward for one pixel, given the denominators `d` (lrn_denominators). The window sum of ratios runs like the
// forward's and is recomputed from its window after a cancellation (lrn_ratio_sum_is_unreliable).
PYA_HD void lrn_backward_pixel(const float* dy, const float* a, const float* y, const float* d, float* dx, int C,
                               int64_t cs, int half, float alpha, float beta) {
  const float two_alpha_beta = 2.f * alpha * beta;
  float s = lrn_ratio_window_sum(dy, y, d, cs, 0, half < C - 1 ? half : C - 1);
  for (int i = 0; i < C; ++i) {
    dx[i * cs] = lrn_input_grad(dy[i * cs], d[i * cs], a[i * cs], s, beta, two_alpha_beta);
    int enter = i + 1 + half, leave = i - half;
    bool unreliable = false;
    if (enter < C) {
      float t = lrn_ratio(dy, y, d, enter, cs);
      s += t;
      unreliable = lrn_ratio_sum_is_unreliable(s, t);
    }
    if (leave >= 0) {
      float t = lrn_ratio(dy, y, d, leave, cs);
      s -= t;
      unreliable = unreliable || lrn_ratio_sum_is_unreliable(s, t);
    }
    if (unreliable && i + 1 < C) {
      int lo = i + 1 - half, hi = i + 1 + half;
      s = lrn_ratio_window_sum(dy, y, d, cs, lo < 0 ? 0 : lo, hi < C ? hi : C - 1);
    }
  }
}

namespace cpu {
// x, y: (N, C, HW) contiguous; size odd >= 1; k > 0.
void lrn_forward(const float* x, float* y, int64_t N, int C, int64_t HW, int size, float alpha, float beta, float k,
                 Stream stream);
// Floats of workspace lrn_backward needs: N*C*HW (the denominators), on every path.
inline int64_t lrn_workspace_floats(int64_t N, int C, int64_t HW, int /*size*/) { return N * C * HW; }
void lrn_backward(const float* dy, const float* x, const float* y, float* dx, float* workspace, int64_t N, int C,
                  int64_t HW, int size, float alpha, float beta, float k, Stream stream);
}  // namespace cpu

namespace cuda {
// Floats of workspace lrn_backward needs: 0 (the workspace may be null) on the chunked path, N*C*HW on the
// per-pixel path (window sizes above 7, or images too large for the chunked kernels' int offsets). The
// chunked path does not read y either.
int64_t lrn_workspace_floats(int64_t N, int C, int64_t HW, int size);
void lrn_forward(const float* x, float* y, int64_t N, int C, int64_t HW, int size, float alpha, float beta, float k,
                 Stream stream);
void lrn_backward(const float* dy, const float* x, const float* y, float* dx, float* workspace, int64_t N, int C,
                  int64_t HW, int size, float alpha, float beta, float k, Stream stream);
}  // namespace cuda

}  // namespace pya
