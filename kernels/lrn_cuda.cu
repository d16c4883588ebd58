// LRN on the GPU: memory-bound, so the aim is many loads in flight and no
// extra passes over the tensors.
//
// Each thread owns one pixel (n, y, x) and a chunk of CH consecutive channels;
// the threads of a warp hold neighbouring pixels, so every access to a channel
// plane is coalesced. The thread first loads its chunk plus the halo its
// windows reach into registers (zero outside [0, C)): the loops are unrolled
// at compile time, so all those loads are issued before any arithmetic waits
// on them. It then sums each window directly from registers: no running sum
// to drift, nothing read twice. Splitting the channels into chunks gives C/CH
// times as many threads as one per pixel (lrn2 has only 93k pixels, too few to
// hide memory latency), at the cost of re-reading the halo; the chunks of the
// same pixels have neighbouring block ids, so they run together and the halo
// re-reads hit in L2.
//
// The backward recomputes the denominators it needs from x (a halo of
// 2 * half channels) instead of writing them to the workspace and reading them
// back: the workspace is not used on this path. It does not read y either: the
// ratio dy[j] * y[j] / d[j] takes y[j] = lrn_output(x[j], d[j]), recomputed
// from the same x with the squares summed in the same order as the forward
// kernel's; the backward moves x, dy and dx only. Not always the forward's y bit
// for bit: ptxas fuses some of the backward's window sums into FMAs differently
// (at alpha 0.05 about 15% of its denominators differ by 1-2 ulp, read in the
// sm_90 SASS); harmless next to the gradient's own rounding.
//
// Window sizes 1 to 7 have compiled kernels. Larger windows, and images too
// large for 32-bit offsets within one image, take the one-thread-per-pixel
// walk of lrn.h (denominators through the workspace).
#include <algorithm>
#include <cstdint>

#include "cuda_check.h"
#include "lrn.h"

namespace pya::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kForwardChunk = 32;  // channels per thread, forward
constexpr int kBackwardChunk = 16;  // backward: the x and dy halos held in registers
// Blocks per SM the register allocation must allow. Measured on an H100 (lrn1,
// lrn2 at batch 128): the forward at 4 (64 registers, no spills) reached 86% /
// 83% of copy bandwidth, against 48% when the compiler took 146 registers (one
// block); the backward at 2, reading x and dy (44 loads in flight at window 5),
// reached 65% / 65% (session 4). Its SASS then held ~170 instructions per output
// (at 16 warps per SM that is about as long to issue as its bytes take to move):
// log2f is a ~28-instruction software routine per channel, and each IEEE
// division's slow-path branch cut the unrolled channels into basic blocks. Now
// (not yet timed on a GPU): the paper's beta = 3/4 takes two reciprocal roots and
// the ratio an approximate division, ~98 instructions per output (ptxas, CUDA 13.0,
// sm_90: window 5 at 128 registers, no spills; other betas spill 36 bytes there,
// a path off the paper's constants). Chunks 20, 24 and 32 spill, so 16 stays.
constexpr int kForwardMinBlocks = 4;
constexpr int kBackwardMinBlocks = 2;
constexpr int64_t kMaxGridY = 65535;

// Offset of channel 0 of pixel p (= n * HW + hw) in an (N, C, HW) tensor.
__device__ __forceinline__ int64_t pixel_offset(int64_t p, int64_t HW, int C) {
  int64_t n, hw;
  if (p <= 0xffffffffLL && HW <= 0xffffffffLL) {  // 32-bit division: far cheaper
    uint32_t q = static_cast<uint32_t>(p) / static_cast<uint32_t>(HW);
    n = q;
    hw = static_cast<uint32_t>(p) - q * static_cast<uint32_t>(HW);
  } else {
    n = p / HW;
    hw = p - n * HW;
  }
  return n * C * HW + hw;
}

// v[t] = channel c_first + t of the pixel at p (channel planes hw apart), 0 outside [0, C). Unrolled, so
// every load is issued before any arithmetic waits on one.
template <int N>
__device__ __forceinline__ void load_channels(const float* __restrict__ p, int c_first, int C, int hw,
                                              float (&v)[N]) {
#pragma unroll
  for (int t = 0; t < N; ++t) {
    int c = c_first + t;
    v[t] = (c >= 0 && c < C) ? p[c * hw] : 0.f;
  }
}

// The window sum of squares of the 2H + 1 channels starting at v, in channel order (as lrn.h's direct sums).
// (Starting from the first square rather than 0 + it: the same bits, as squares are never -0; one add fewer.)
template <int H>
__device__ __forceinline__ float window_square_sum(const float* v) {
  float s = lrn_square(v[0]);
#pragma unroll
  for (int u = 1; u <= 2 * H; ++u) s += lrn_square(v[u]);
  return s;
}

// blockIdx.x: the chunk (channels [blockIdx.x * CH, + CH)); blockIdx.y strides
// over tiles of kThreads pixels. The launcher guarantees
// (C + CH + 4 * H) * HW <= INT32_MAX, so in-image offsets fit an int.
// kThreeQuarters: beta == 3/4 (lrn_beta_is_three_quarters).
template <int CH, int H, bool kThreeQuarters>
__global__ void __launch_bounds__(kThreads, kForwardMinBlocks)
    lrn_forward_chunk_kernel(const float* __restrict__ x, float* __restrict__ y, int C, int64_t HW, int64_t pixels,
                             float alpha, float beta, float k) {
  constexpr int W = CH + 2 * H;  // channels c0 - H .. c0 + CH + H - 1
  const int c0 = blockIdx.x * CH;
  const int hw = static_cast<int>(HW);
  for (int64_t tile = blockIdx.y; tile * kThreads < pixels; tile += gridDim.y) {
    int64_t p = tile * kThreads + threadIdx.x;
    if (p >= pixels) break;  // later tiles only hold larger p
    int64_t off = pixel_offset(p, HW, C);
    const float* xp = x + off;
    float* yp = y + off;

    float v[W];
    load_channels(xp, c0 - H, C, hw, v);
#pragma unroll
    for (int t = 0; t < CH; ++t) {
      int c = c0 + t;
      if (c < C) {
        float d = lrn_denominator(window_square_sum<H>(v + t), alpha, k);
        yp[c * hw] = lrn_output_from_pow(v[t + H], lrn_pow_neg_with<kThreeQuarters>(d, beta));
      }
    }
  }
}

// One fused pass: for the chunk's outputs i it needs the ratios of channels
// i - H .. i + H, whose denominators need x on channels i - 2H .. i + 2H.
template <int CH, int H, bool kThreeQuarters>
__global__ void __launch_bounds__(kThreads, H < 3 ? kBackwardMinBlocks : 1)
    lrn_backward_chunk_kernel(const float* __restrict__ dy, const float* __restrict__ x, float* __restrict__ dx, int C,
                              int64_t HW, int64_t pixels, float alpha, float beta, float k) {
  constexpr int X = CH + 4 * H;  // x on channels c0 - 2H .. c0 + CH + 2H - 1
  constexpr int R = CH + 2 * H;  // dy and the ratios on channels c0 - H .. c0 + CH + H - 1
  const int c0 = blockIdx.x * CH;
  const int hw = static_cast<int>(HW);
  const float two_alpha_beta = 2.f * alpha * beta;
  for (int64_t tile = blockIdx.y; tile * kThreads < pixels; tile += gridDim.y) {
    int64_t p = tile * kThreads + threadIdx.x;
    if (p >= pixels) break;
    int64_t off = pixel_offset(p, HW, C);

    float a[X], g[R];
    load_channels(x + off, c0 - 2 * H, C, hw, a);
    load_channels(dy + off, c0 - H, C, hw, g);
    // Ratios of channels c0 - H + t, and d^-beta of the chunk's own channels
    // (one power per channel, shared by its y and its dx). A channel outside
    // [0, C) is in no window: its ratio must be 0, and is, with no test (which
    // would make a branch per channel): its x and dy were loaded as 0, so the
    // ratio is 0 * (0 * p) / d = 0 for any d >= k (+inf included), p being finite:
    // the bindings refuse k^-beta above 1e38, the largest p. Only a NaN d could
    // break that, from a NaN or inf x in the chunk's edge channels, and those
    // make the same outputs NaN through their own ratios anyway.
    float r[R], pw[CH];
#pragma unroll
    for (int t = 0; t < R; ++t) {
      float dt = lrn_denominator(window_square_sum<H>(a + t), alpha, k);
      float pt = lrn_pow_neg_with<kThreeQuarters>(dt, beta);
      r[t] = lrn_ratio_from_pow(g[t], a[t + H], pt, dt);
      if (t >= H && t < H + CH) pw[t - H] = pt;
    }
#pragma unroll
    for (int t = 0; t < CH; ++t) {
      int c = c0 + t;
      if (c < C) {
        float s = 0.f;
#pragma unroll
        for (int u = 0; u <= 2 * H; ++u) s += r[t + u];
        dx[off + c * hw] = lrn_input_grad_from_pow(g[t + H], pw[t], a[t + 2 * H], s, two_alpha_beta);
      }
    }
  }
}

// One thread per pixel walking all channels (lrn.h): any window size, any shape.
__global__ void lrn_forward_pixel_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t N, int C,
                                         int64_t HW, int half, float alpha, float beta, float k) {
  int64_t pixels = N * HW;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < pixels; p += stride) {
    int64_t off = pixel_offset(p, HW, C);
    lrn_forward_pixel(x + off, y + off, C, HW, half, alpha, beta, k);
  }
}

// The denominators are written and read back by the same thread, so no
// synchronisation is needed between the two passes.
__global__ void lrn_backward_pixel_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                          const float* __restrict__ y, float* __restrict__ dx, float* __restrict__ d,
                                          int64_t N, int C, int64_t HW, int half, float alpha, float beta, float k) {
  int64_t pixels = N * HW;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < pixels; p += stride) {
    int64_t off = pixel_offset(p, HW, C);
    lrn_denominators(x + off, d + off, C, HW, half, alpha, k);
    lrn_backward_pixel(dy + off, x + off, y + off, d + off, dx + off, C, HW, half, alpha, beta);
  }
}

// Whether the chunked kernels apply: a compiled window, and every offset they
// form within one image (channels up to C + CH + 2H) fits an int.
static_assert(kLrnDirectHalf == 3, "the launchers' switches compile windows 1, 3, 5 and 7");
bool use_chunks(int C, int64_t HW, int half, int chunk) {
  return half <= kLrnDirectHalf && (int64_t(C) + chunk + 4 * kLrnDirectHalf) * HW <= INT32_MAX;
}

dim3 chunk_grid(int C, int64_t pixels, int chunk) {
  int64_t tiles = (pixels + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned int>((C + chunk - 1) / chunk),
              static_cast<unsigned int>(std::min(tiles, kMaxGridY)));
}

template <int H>
void forward_chunks(const float* x, float* y, int C, int64_t HW, int64_t pixels, float alpha, float beta, float k,
                    Stream stream) {
  const dim3 grid = chunk_grid(C, pixels, kForwardChunk);
  with_lrn_formula(beta, [&](auto three_quarters) {
    lrn_forward_chunk_kernel<kForwardChunk, H, decltype(three_quarters)::value>
        <<<grid, kThreads, 0, stream>>>(x, y, C, HW, pixels, alpha, beta, k);
  });
}

template <int H>
void backward_chunks(const float* dy, const float* x, float* dx, int C, int64_t HW, int64_t pixels, float alpha,
                     float beta, float k, Stream stream) {
  const dim3 grid = chunk_grid(C, pixels, kBackwardChunk);
  with_lrn_formula(beta, [&](auto three_quarters) {
    lrn_backward_chunk_kernel<kBackwardChunk, H, decltype(three_quarters)::value>
        <<<grid, kThreads, 0, stream>>>(dy, x, dx, C, HW, pixels, alpha, beta, k);
  });
}

}  // namespace

int64_t lrn_workspace_floats(int64_t N, int C, int64_t HW, int size) {
  return use_chunks(C, HW, size / 2, kBackwardChunk) ? 0 : N * C * HW;
}

void lrn_forward(const float* x, float* y, int64_t N, int C, int64_t HW, int size, float alpha, float beta, float k,
                 Stream stream) {
  int64_t pixels = N * HW;
  if (pixels == 0 || C == 0) return;
  int half = size / 2;
  if (use_chunks(C, HW, half, kForwardChunk)) {
    switch (half) {
      case 0: forward_chunks<0>(x, y, C, HW, pixels, alpha, beta, k, stream); break;
      case 1: forward_chunks<1>(x, y, C, HW, pixels, alpha, beta, k, stream); break;
      case 2: forward_chunks<2>(x, y, C, HW, pixels, alpha, beta, k, stream); break;
      default: forward_chunks<3>(x, y, C, HW, pixels, alpha, beta, k, stream); break;
    }
  } else {
    lrn_forward_pixel_kernel<<<grid_for(pixels, kThreads), kThreads, 0, stream>>>(x, y, N, C, HW, half, alpha, beta,
                                                                                  k);
  }
  PYA_CHECK_LAUNCH("lrn_forward");
}

void lrn_backward(const float* dy, const float* x, const float* y, float* dx, float* workspace, int64_t N, int C,
                  int64_t HW, int size, float alpha, float beta, float k, Stream stream) {
  int64_t pixels = N * HW;
  if (pixels == 0 || C == 0) return;
  int half = size / 2;
  if (use_chunks(C, HW, half, kBackwardChunk)) {
    switch (half) {
      case 0: backward_chunks<0>(dy, x, dx, C, HW, pixels, alpha, beta, k, stream); break;
      case 1: backward_chunks<1>(dy, x, dx, C, HW, pixels, alpha, beta, k, stream); break;
      case 2: backward_chunks<2>(dy, x, dx, C, HW, pixels, alpha, beta, k, stream); break;
      default: backward_chunks<3>(dy, x, dx, C, HW, pixels, alpha, beta, k, stream); break;
    }
  } else {
    lrn_backward_pixel_kernel<<<grid_for(pixels, kThreads), kThreads, 0, stream>>>(dy, x, y, dx, workspace, N, C, HW,
                                                                                   half, alpha, beta, k);
  }
  PYA_CHECK_LAUNCH("lrn_backward");
}

}  // namespace pya::cuda
