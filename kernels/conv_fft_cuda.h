// FFT filter gradient (algorithm "fft") for stride-1 convolutions whose padded planes fit 32x32: kernels and
// launcher. The math, the predicate and the workspace layout are in conv_fft.h. Included ONLY by conv_cuda.cu;
// tests/conv_cuda_emulation/make_emu.py inlines it there. No cuFFT: the transforms are written out below.
//
// Why: conv2's filter gradient (batch 128, 48 channels and 128 filters per group, 5x5 on 27x27) is 57 GFLOP
// of direct arithmetic; at the H100's float32 peak that alone would take 0.86 ms, against cuDNN's 0.41 ms
// (which uses an FFT). In the frequency domain it is one complex product per (image, filter, channel,
// bin): 2 groups x 544 bins (L = 32) of 128x48 complex GEMMs over the 128 images, 6.8 GFLOP, plus
// transforms that are cheap next to it (about 30 kFLOP per 27x27 plane) but memory-bound (the spectra are
// 1.5x the planes: bins*2 = 1088 floats per 729-float plane, written once and read once).
//
// Scheme (three kernels; per chunk of images the first two, then the third once):
//   (a) fft_forward_kernel<L>: x and dy planes -> half spectra Xhat[g][bin][n][c], DYhat[g][bin][n][k].
//       One block per (image, kPlanes consecutive channels): it loads the planes (one contiguous range of
//       global memory) into shared memory; each thread FFTs two real rows as one complex L-point FFT
//       (z = a + i b, then A[v] = (Z[v] + conj Z[L-v]) / 2, B[v] = (Z[v] - conj Z[L-v]) / 2i), unrolled in
//       registers, writing the row spectra back over the planes; then each thread FFTs one of the L/2 + 1
//       columns and writes its L bins. Threads run channel-fastest, so each bin's writes are kPlanes
//       consecutive complex values (64 or 128 bytes). Bin-major output lets the GEMM read contiguous
//       (image x channel) matrices. One task per thread per phase (the planes live in registers across the
//       barrier that hands their shared memory to the spectra), so the block size covers the most tasks.
//   (b) fft_gemm_kernel: per (group, bin), DW[bin][k][c] (+)= sum_n conj(DYhat[n][k]) * Xhat[n][c], a
//       complex GEMM (Kg x Cg, reduction over the chunk's images). 128x48 tiles (conv2's whole 128x48
//       problem per bin is one block, so every spectrum is read once), 256 threads with 4x6 complex
//       accumulators each, operands staged 8 images deep through double-buffered shared memory as in
//       conv_cuda.cu's implicit GEMM. Each block reduces its whole chunk in a fixed order; with several
//       chunks it adds its result to the previous chunks' sum (chunk order): deterministic, no atomics.
//   (c) fft_inverse_kernel<L>: dw[k][c][r][s] from DW, only the R x S lags that are outputs: separably,
//       T[u][s] = sum_v w_v DW[u][v] e^{2 pi i v s' / L} (L*S*(L/2+1) complex multiply-adds per plane),
//       then dw[r][s] = Re sum_u T[u][s] e^{2 pi i u r' / L} / L^2 (R*S*L): 25 kFLOP per conv2 plane
//       instead of 54 for a direct sum over the bins, from a twiddle table in shared memory. A block does
//       as many (k, c) planes as fit its 40 KB of shared memory and writes w's layout (K, C/groups, R, S).
// Design choices: an FFT rather than direct DFTs in the transforms (a direct 32-point DFT of a plane costs
// ~6x the FLOPs); radix 2 fully unrolled, so twiddles are compile-time constants (and the multiplies by
// 1 and -i vanish); no warp shuffles (the CPU emulation has none, and the shared-memory exchange between
// the row and column passes is needed anyway); float32 throughout (the FFT's rounding error grows like
// log2(L) * eps relative to the planes' energy: measured in tests/conv_cuda_emulation).
//
// No circular wrap: the planes sit at the origin of the L x L grid; the correlation at lag d = r - pad
// collects the pairs (h, p) with h - p = d, h - p ranging over [-(P-1), H-1]. Another lag d +- L in that
// range would alias onto d; none is when L >= H + pad (and P - 1 + (R - 1 - pad) = H + pad - 1 < L on the
// other side), implied by L >= H + 2*pad.
#pragma once
#include "conv_fft.h"

namespace pya::cuda {
namespace {

// cos(2 pi m / 32) for any integer m, from the first quadrant; sin(2 pi m / 32) = cos(2 pi (m - 8) / 32).
// In the unrolled FFTs m is a compile-time constant and the switch folds away.
PYA_HD float cos_32nds(int m) {
  m &= 31;
  if (m > 16) m = 32 - m;
  const bool negate = m > 8;
  if (negate) m = 16 - m;
  float c = 0.f;
  switch (m) {
    case 0: c = 1.f; break;
    case 1: c = 0.98078528040323043f; break;
    case 2: c = 0.92387953251128674f; break;
    case 3: c = 0.83146961230254524f; break;
    case 4: c = 0.70710678118654757f; break;
    case 5: c = 0.55557023301960218f; break;
    case 6: c = 0.38268343236508984f; break;
    case 7: c = 0.19509032201612833f; break;
    default: c = 0.f; break;
  }
  return negate ? -c : c;
}
PYA_HD float sin_32nds(int m) { return cos_32nds(m - 8); }

template <int L>
PYA_HD int bit_reverse(int k) {
  int r = 0;
#pragma unroll
  for (int b = 1; b < L; b <<= 1) {
    r = (r << 1) | (k & 1);
    k >>= 1;
  }
  return r;
}

// In place: X[k] = sum_t x[t] exp(-2 pi i k t / L) (L = 16 or 32), radix-2 decimation in frequency; X[k]
// ends at index bit_reverse<L>(k). Fully unrolled: every index and twiddle is a compile-time constant.
template <int L>
PYA_HD void fft_dif(float (&re)[L], float (&im)[L]) {
  static_assert(L == 16 || L == 32, "FFT sizes 16 and 32");
  constexpr int kStages = L == 32 ? 5 : 4;
#pragma unroll
  for (int stage = 0; stage < kStages; ++stage) {
    const int half = L >> (stage + 1);  // butterfly span
#pragma unroll
    for (int i = 0; i < L / 2; ++i) {
      const int j = i % half, a = (i / half) * 2 * half + j, b = a + half;
      const float tr = re[a] - re[b], ti = im[a] - im[b];
      re[a] += re[b];
      im[a] += im[b];
      const int m = (j * (32 / L)) << stage;  // twiddle exp(-2 pi i j / (2 half)) = exp(-2 pi i m / 32)
      if (m == 0) {
        re[b] = tr, im[b] = ti;
      } else if (m == 8) {  // times -i
        re[b] = ti, im[b] = -tr;
      } else {
        const float c = cos_32nds(m), s = sin_32nds(m);
        re[b] = tr * c + ti * s;
        im[b] = ti * c - tr * s;
      }
    }
  }
}

template <int L>
struct FftForwardConfig {
  static constexpr int kHalf = L / 2 + 1;             // columns of a real plane's half spectrum
  static constexpr int kPlanes = L == 32 ? 8 : 16;    // planes per block
  static constexpr int kBins = L * kHalf;
  static constexpr int kSmemFloats = kPlanes * L * kHalf * 2;  // row spectra (>= the planes: L*L <= L*(L+2))
};
constexpr int kFftForwardThreads = 160;  // at least each phase's tasks: 8*16 rows, 8*17 columns (L=32)
static_assert(FftForwardConfig<32>::kPlanes * 17 <= kFftForwardThreads, "one column task per thread");
static_assert(FftForwardConfig<16>::kPlanes * 9 <= kFftForwardThreads, "one column task per thread");

// out[((g*bins + bin)*imgs + img)*per_group + c % per_group] = DFT of plane (img, c) of `in` (channels
// planes of rows x cols per image, imgs images), placed at the origin of an L x L grid; bin = u*(L/2+1) + v.
// Grid: imgs * channel_blocks blocks, kFftForwardThreads threads.
template <int L>
__global__ void __launch_bounds__(kFftForwardThreads, 3)
    fft_forward_kernel(const float* __restrict__ in, float2* __restrict__ out, int channels, int rows, int cols,
                       int per_group, int imgs, int channel_blocks) {
  using Cfg = FftForwardConfig<L>;
  constexpr int kHalf = Cfg::kHalf, kPlanes = Cfg::kPlanes;
  __shared__ __align__(16) float buf[Cfg::kSmemFloats];  // the planes, then their row spectra [p][row][v]
  const int img = int(blockIdx.x) / channel_blocks, ch0 = (int(blockIdx.x) % channel_blocks) * kPlanes;
  const int planes = min(kPlanes, channels - ch0), plane_size = rows * cols;
  const float* src = in + (int64_t(img) * channels + ch0) * plane_size;
  // 8 independent loads per thread in flight before their stores (the kernel is memory-bound, ~5 warps a block).
  const int total = planes * plane_size;
  for (int i0 = int(threadIdx.x); i0 < total; i0 += 8 * int(blockDim.x)) {
    float v[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int i = i0 + j * int(blockDim.x);
      v[j] = i < total ? load(src + i) : 0.f;
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int i = i0 + j * int(blockDim.x);
      if (i < total) buf[i] = v[j];
    }
  }
  __syncthreads();

  // Rows: thread t transforms rows 2j and 2j + 1 (zero past the last) of plane p = t % planes.
  const int t = int(threadIdx.x), row_pairs = (rows + 1) / 2;
  const bool row_task = t < planes * row_pairs;
  const int rp = row_task ? t % planes : 0, rj = row_task ? t / planes : 0;
  float re[L], im[L];
  if (row_task) {
    const float* a = buf + rp * plane_size + 2 * rj * cols;
    const bool has_b = 2 * rj + 1 < rows;
#pragma unroll
    for (int c = 0; c < L; ++c) {
      re[c] = c < cols ? a[c] : 0.f;
      im[c] = has_b && c < cols ? a[cols + c] : 0.f;
    }
    fft_dif<L>(re, im);
  }
  __syncthreads();  // every plane is in registers: the buffer now takes the row spectra
  float2* spec = reinterpret_cast<float2*>(buf);
  if (row_task) {
    float2* row_a = spec + (rp * rows + 2 * rj) * kHalf;
    const bool has_b = 2 * rj + 1 < rows;
#pragma unroll
    for (int v = 0; v < kHalf; ++v) {  // split Z = A + iB into the two real rows' spectra
      const int iv = bit_reverse<L>(v), iw = bit_reverse<L>((L - v) % L);
      row_a[v] = float2{(re[iv] + re[iw]) * 0.5f, (im[iv] - im[iw]) * 0.5f};
      if (has_b) row_a[kHalf + v] = float2{(im[iv] + im[iw]) * 0.5f, (re[iw] - re[iv]) * 0.5f};
    }
  }
  __syncthreads();

  // Columns: thread t transforms column v = t / planes of plane p = t % planes (channel-fastest writes).
  if (t < planes * kHalf) {
    const int p = t % planes, v = t / planes;
    const float2* col = spec + p * rows * kHalf + v;
#pragma unroll
    for (int u = 0; u < L; ++u) {
      const float2 e = u < rows ? col[u * kHalf] : float2{0.f, 0.f};
      re[u] = e.x, im[u] = e.y;
    }
    fft_dif<L>(re, im);
    const int ch = ch0 + p, g = ch / per_group;
    const int bin_stride = imgs * per_group;  // complex values per bin of one group
    float2* dst = out + (g * Cfg::kBins * imgs + img) * per_group + (ch - g * per_group) + v * bin_stride;
#pragma unroll
    for (int i = 0; i < L; ++i) dst[bit_reverse<L>(i) * kHalf * bin_stride] = float2{re[i], im[i]};
  }
}

// The per-bin complex GEMMs: dw_hat[bin][g*Kg + k][c] = (accumulate ? dw_hat[..] : 0) + sum_{n < imgs}
// conj(dyhat[g][bin][n][k]) * xhat[g][bin][n][c], the sum in image order. A 1-D grid of groups * bins *
// k_tiles * c_tiles blocks of kFftGemmThreads, the tiles of one (group, bin) consecutive: they run together
// and share their operands through L2 (conv3: 3 x 6 tiles of 384 x 256 per bin).
constexpr int kFftGemmThreads = 256;
constexpr int kFftBM = 128, kFftBN = 48, kFftBK = 8;  // filters, channels, images per stage
__global__ void __launch_bounds__(kFftGemmThreads, 2)
    fft_gemm_kernel(const float2* __restrict__ dyhat, const float2* __restrict__ xhat, float2* __restrict__ dw_hat,
                    int imgs, int Kg, int Cg, int K, int bins, int k_tiles, int c_tiles, bool accumulate) {
  __shared__ __align__(16) float2 As[2][kFftBK][kFftBM];
  __shared__ __align__(16) float2 Bs[2][kFftBK][kFftBN];
  const int tid = int(threadIdx.x);
  const int c_tile = int(blockIdx.x) % c_tiles, rest = int(blockIdx.x) / c_tiles;
  const int k_tile = rest % k_tiles, z = rest / k_tiles, g = z / bins, bin = z % bins;
  const int m0 = k_tile * kFftBM, n0 = c_tile * kFftBN;
  const float2* A = dyhat + (g * bins + bin) * imgs * Kg;  // [image][k]
  const float2* B = xhat + (g * bins + bin) * imgs * Cg;   // [image][c]

  // Staging: A row (image) a_i, filters a_k..a_k+3; B (threads < 192) image b_i, channels b_c, b_c + 1.
  const int a_i = tid / 32, a_k = (tid % 32) * 4;
  const bool b_loader = tid < kFftBK * kFftBN / 2;
  const int b_i = tid / 24, b_c = (tid % 24) * 2;
  float2 ra[4], rb[2];
  auto load_tiles = [&](int i0) {
    const int ia = i0 + a_i;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int k = m0 + a_k + j;
      ra[j] = ia < imgs && k < Kg ? __ldg(A + ia * Kg + k) : float2{0.f, 0.f};
    }
    const int ib = i0 + b_i;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int c = n0 + b_c + j;
      rb[j] = b_loader && ib < imgs && c < Cg ? __ldg(B + ib * Cg + c) : float2{0.f, 0.f};
    }
  };
  auto store_tiles = [&](int buf) {
#pragma unroll
    for (int j = 0; j < 4; ++j) As[buf][a_i][a_k + j] = ra[j];
    if (b_loader) {
#pragma unroll
      for (int j = 0; j < 2; ++j) Bs[buf][b_i][b_c + j] = rb[j];
    }
  };
  load_tiles(0);
  store_tiles(0);
  __syncthreads();

  // Compute roles: filters m0 + tm*4 + (0..3), channels n0 + tn*6 + (0..5); a warp reads 4 A fragments
  // (broadcast) and 8 B fragments 48 bytes apart (conflict-free float4s).
  const int tm = tid / 8, tn = tid % 8;
  float acc_re[4][6], acc_im[4][6];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 6; ++j) acc_re[i][j] = 0.f, acc_im[i][j] = 0.f;

  int buf = 0;
  for (int i0 = 0; i0 < imgs; i0 += kFftBK) {
    const bool more = i0 + kFftBK < imgs;
    if (more) load_tiles(i0 + kFftBK);  // in flight during this stage's multiply-adds
#pragma unroll
    for (int kk = 0; kk < kFftBK; ++kk) {
      float a[8], b[12];  // 4 and 6 complex values as (re, im)
#pragma unroll
      for (int f = 0; f < 2; ++f) {
        const float4 v = *reinterpret_cast<const float4*>(&As[buf][kk][tm * 4 + 2 * f]);
        a[4 * f + 0] = v.x, a[4 * f + 1] = v.y, a[4 * f + 2] = v.z, a[4 * f + 3] = v.w;
      }
#pragma unroll
      for (int f = 0; f < 3; ++f) {
        const float4 v = *reinterpret_cast<const float4*>(&Bs[buf][kk][tn * 6 + 2 * f]);
        b[4 * f + 0] = v.x, b[4 * f + 1] = v.y, b[4 * f + 2] = v.z, b[4 * f + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 6; ++j) {  // conj(a) * b
          const float ar = a[2 * i], ai = a[2 * i + 1], br = b[2 * j], bi = b[2 * j + 1];
          acc_re[i][j] = fmaf(ar, br, acc_re[i][j]);
          acc_re[i][j] = fmaf(ai, bi, acc_re[i][j]);
          acc_im[i][j] = fmaf(ar, bi, acc_im[i][j]);
          acc_im[i][j] = fmaf(-ai, br, acc_im[i][j]);
        }
    }
    if (more) store_tiles(buf ^ 1);  // the other buffer was last read before the previous barrier
    __syncthreads();
    buf ^= 1;
  }

  float2* dst = dw_hat + bin * K * Cg + (g * Kg) * Cg;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int k = m0 + tm * 4 + i;
    if (k >= Kg) continue;
#pragma unroll
    for (int j = 0; j < 6; ++j) {
      const int c = n0 + tn * 6 + j;
      if (c >= Cg) continue;
      float2* o = dst + k * Cg + c;
      float2 v{acc_re[i][j], acc_im[i][j]};
      if (accumulate) {
        const float2 prev = *o;
        v.x = prev.x + v.x, v.y = prev.y + v.y;
      }
      *o = v;
    }
  }
}

// dw[plane][r][s] for planes [blockIdx.x * per_block, ...) of `planes` (= K * Cg, w's (k, c) order) from
// dw_hat[bin][plane]: see (c) above. kFftInverseThreads threads; smem holds per_block planes (fft::plan).
constexpr int kFftInverseThreads = 256;
constexpr int kInverseLoadsInFlight = 8;
template <int L>
__global__ void __launch_bounds__(kFftInverseThreads)
    fft_inverse_kernel(const float2* __restrict__ dw_hat, float* __restrict__ dw, int planes, int per_block, int R,
                       int S, int pad) {
  constexpr int kHalf = L / 2 + 1, kBins = L * kHalf;
  __shared__ float2 twiddle[L];  // exp(+2 pi i m / L)
  __shared__ __align__(16) float2 buf[fft::kInverseSmemFloats / 2];
  const int tid = int(threadIdx.x), threads = int(blockDim.x);
  const int p0 = int(blockIdx.x) * per_block, n = min(per_block, planes - p0);
  float2* spec = buf;                  // [p][bin], scaled by w_v / L^2
  float2* partial = buf + n * kBins;   // [p][u][s]
  if (tid < L) twiddle[tid] = float2{cos_32nds(tid * (32 / L)), sin_32nds(tid * (32 / L))};
  constexpr float kScale = 1.f / (L * L);  // a power of two: exact
  // kInverseLoadsInFlight loads per thread issued before any is stored: one load per iteration, stored before
  // the next, made each of a block's ~15 iterations a round trip to memory in turn.
  for (int base = tid; base < n * kBins; base += kInverseLoadsInFlight * threads) {
    float2 d[kInverseLoadsInFlight];
#pragma unroll
    for (int j = 0; j < kInverseLoadsInFlight; ++j) {
      const int i = base + j * threads;
      d[j] = i < n * kBins ? __ldg(dw_hat + (i / n) * planes + p0 + i % n) : float2{0.f, 0.f};
    }
#pragma unroll
    for (int j = 0; j < kInverseLoadsInFlight; ++j) {
      const int i = base + j * threads;
      if (i >= n * kBins) break;
      const int p = i % n, bin = i / n, v = bin % kHalf;
      const float w = (v == 0 || v == L / 2) ? kScale : 2.f * kScale;
      spec[p * kBins + bin] = float2{d[j].x * w, d[j].y * w};
    }
  }
  __syncthreads();
  for (int i = tid; i < n * L * S; i += threads) {  // T[p][u][s] = sum_v spec[p][u][v] e^{2 pi i v s' / L}
    const int s = i % S, u = i / S % L, p = i / (S * L);
    const int sp = (s - pad) & (L - 1);
    const float2* d = spec + p * kBins + u * kHalf;
    float tr = 0.f, ti = 0.f;
#pragma unroll
    for (int v = 0; v < kHalf; ++v) {
      const float2 e = twiddle[(v * sp) & (L - 1)], x = d[v];
      tr += x.x * e.x - x.y * e.y;
      ti += x.x * e.y + x.y * e.x;
    }
    partial[i] = float2{tr, ti};  // i = (p*L + u)*S + s
  }
  __syncthreads();
  for (int i = tid; i < n * R * S; i += threads) {  // dw = Re sum_u T[p][u][s] e^{2 pi i u r' / L}
    const int s = i % S, r = i / S % R, p = i / (S * R);
    const int rp = (r - pad) & (L - 1);
    const float2* col = partial + p * L * S + s;
    float sum = 0.f;
#pragma unroll
    for (int u = 0; u < L; ++u) {
      const float2 e = twiddle[(u * rp) & (L - 1)], x = col[u * S];
      sum += x.x * e.x - x.y * e.y;
    }
    dw[int64_t(p0) * R * S + i] = sum;  // i = (p*R + r)*S + s: w's layout
  }
}

void check_fft(const ConvShape& s) {
  if (const char* why = fft::unsupported(s)) throw KernelError(std::string("conv2d: algorithm 'fft' needs ") + why);
}

template <int L>
void fft_backward_filter_sized(const float* dy, const float* x, float* dw, const ConvShape& s, const fft::Plan& plan,
                               float* ws, Stream stream) {
  constexpr int kPlanes = FftForwardConfig<L>::kPlanes;
  float2* xhat = reinterpret_cast<float2*>(ws + plan.xhat);
  float2* dyhat = reinterpret_cast<float2*>(ws + plan.dyhat);
  float2* dw_hat = reinterpret_cast<float2*>(ws + plan.dw_hat);
  const int64_t x_blocks = (s.C + kPlanes - 1) / kPlanes, dy_blocks = (s.K + kPlanes - 1) / kPlanes;
  const int64_t k_tiles = (s.Kg() + kFftBM - 1) / kFftBM, c_tiles = (s.Cg() + kFftBN - 1) / kFftBN;
  const int64_t gemm_blocks = s.groups * plan.bins * k_tiles * c_tiles;  // <= bins * K * Cg < 2^27
  for (int64_t chunk = 0; chunk < plan.chunks; ++chunk) {
    const int64_t img0 = chunk * plan.imgs_per_chunk, imgs = std::min(plan.imgs_per_chunk, s.N - img0);
    fft_forward_kernel<L><<<unsigned(imgs * x_blocks), kFftForwardThreads, 0, stream>>>(
        x + img0 * s.C * s.HW(), xhat, int(s.C), int(s.H), int(s.W), int(s.Cg()), int(imgs), int(x_blocks));
    PYA_CHECK_LAUNCH("conv2d FFT of x");
    fft_forward_kernel<L><<<unsigned(imgs * dy_blocks), kFftForwardThreads, 0, stream>>>(
        dy + img0 * s.K * s.PQ(), dyhat, int(s.K), int(s.P), int(s.Q), int(s.Kg()), int(imgs), int(dy_blocks));
    PYA_CHECK_LAUNCH("conv2d FFT of dy");
    fft_gemm_kernel<<<unsigned(gemm_blocks), kFftGemmThreads, 0, stream>>>(
        dyhat, xhat, dw_hat, int(imgs), int(s.Kg()), int(s.Cg()), int(s.K), int(plan.bins), int(k_tiles),
        int(c_tiles), chunk > 0);
    PYA_CHECK_LAUNCH("conv2d FFT filter-gradient products");
  }
  const int64_t planes = s.K * s.Cg();
  fft_inverse_kernel<L><<<unsigned((planes + plan.planes_per_block - 1) / plan.planes_per_block),
                          kFftInverseThreads, 0, stream>>>(dw_hat, dw, int(planes), int(plan.planes_per_block),
                                                           int(s.R), int(s.S), int(s.pad));
  PYA_CHECK_LAUNCH("conv2d FFT filter-gradient inverse");
}

// dw (overwritten) for a shape fft::unsupported accepts, N >= 1, K*Cg >= 1.
void fft_backward_filter(const float* dy, const float* x, float* dw, const ConvShape& s, float* ws, Stream stream) {
  check_fft(s);
  const fft::Plan plan = fft::plan(s);
  // The plan's regions are float2 arrays: up to the next 16-byte boundary, which its workspace_floats leaves room for.
  const auto addr = reinterpret_cast<uintptr_t>(ws);
  ws += (((addr + 15) & ~uintptr_t(15)) - addr) / sizeof(float);
  if (plan.L == 16)
    fft_backward_filter_sized<16>(dy, x, dw, s, plan, ws, stream);
  else
    fft_backward_filter_sized<32>(dy, x, dw, s, plan, ws, stream);
}

}  // namespace
}  // namespace pya::cuda
