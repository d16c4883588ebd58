// FFT filter gradient for stride-1 convolutions on small planes (CUDA backend): when it applies, and
// how its workspace is laid out. Plain C++ (no CUDA): the bindings use the predicate to validate
// algorithm="fft"; the design and the kernels are in conv_fft_cuda.h.
//
// Math, per group (k a filter of the group, c one of its channels):
//   dw[k][c][r][s] = sum_n sum_{p,q} dy[n][k][p][q] * x[n][c][p + r - pad][q + s - pad]   (x zero outside)
// is a correlation of dy with x at lag (r - pad, s - pad). With both planes placed at the origin of an
// L x L grid, L >= H + 2*pad and L >= W + 2*pad (so no lag wraps onto another: see conv_fft_cuda.h),
// the correlation theorem gives, with hats the 2-D DFT (exp(-2 pi i (u h + v w) / L)):
//   DW[k][c][u][v] = sum_n conj(DYhat[n][k][u][v]) * Xhat[n][c][u][v]
//   dw[k][c][r][s] = 1/L^2 * Re sum_{u < L, v <= L/2} w_v DW[k][c][u][v] exp(+2 pi i (u r' + v s') / L),
//   r' = (r - pad) mod L, s' = (s - pad) mod L, w_v = 1 for v = 0 and L/2, else 2 (real planes: half
//   the spectrum, the other half is its complex conjugate).
// L = 16 when both padded sides fit 16 (AlexNet's conv3-conv5: 15), else 32 (conv2: 31).
//
// Workspace, in floats, complex values as (re, im) pairs; bins = L * (L/2 + 1), one image chunk:
//   [ Xhat: [group][bin][image][c] | DYhat: [group][bin][image][k] | DW: [bin][K][C/groups] ]
// Xhat and DYhat hold one chunk of images, capped at kMaxChunkFloats together (conv2 at batch 128:
// 196 MB, one chunk); DW is summed over the chunks in chunk order. Each region starts on a multiple of
// 4 floats (16 bytes).
#pragma once
#include <algorithm>
#include <cstdint>

#include "conv.h"

namespace pya {
namespace fft {

#ifdef PYA_CONV_EMULATION
inline int64_t kMaxChunkFloats = int64_t(1) << 27;  // the CPU emulation test lowers it to run several chunks
#else
constexpr int64_t kMaxChunkFloats = int64_t(1) << 27;  // Xhat + DYhat of one chunk of images (512 MB)
#endif
constexpr int64_t kMaxFilterSpectrumFloats = int64_t(1) << 27;  // DW, summed over the chunks (512 MB)
constexpr int64_t kMaxPlane = 32;  // largest transform side (the kernels unroll L-point FFTs in registers)
// Shared memory of one block of the inverse kernel, in floats (40 KB of the 48 KB a block may have
// statically): its planes' spectra and their partial inverses (see conv_fft_cuda.h).
constexpr int64_t kInverseSmemFloats = 10240;

inline int64_t round4(int64_t n) { return (n + 3) / 4 * 4; }

// The transform side for a shape: the smallest of 16 and 32 that holds both padded sides.
inline int64_t transform_size(const ConvShape& s) {
  return std::max(s.H, s.W) + 2 * s.pad <= 16 ? 16 : 32;
}
inline int64_t bins_of(int64_t L) { return L * (L / 2 + 1); }

// Why the FFT filter gradient cannot compute `s` (a phrase for "algorithm='fft' needs ..."), or nullptr.
inline const char* unsupported(const ConvShape& s) {
  if (s.stride != 1) return "stride 1";
  if (s.H + 2 * s.pad > kMaxPlane || s.W + 2 * s.pad > kMaxPlane)
    return "padded input planes of at most 32x32 (H + 2*padding <= 32 and W + 2*padding <= 32)";
  const int64_t bins = bins_of(transform_size(s));
  if (2 * bins * (s.C + s.K) > kMaxChunkFloats)
    return "one image's spectra (2 * bins * (channels + filters) floats, bins = L*(L/2+1)) to fit 2^27 floats";
  if (2 * bins * s.K * s.Cg() > kMaxFilterSpectrumFloats)
    return "the filters' spectrum (2 * bins * filters * channels/groups floats, bins = L*(L/2+1)) to fit 2^27 floats";
  return nullptr;
}

// Whether the CUDA backend computes `pass` of `s` with the FFT: only the filter gradient has an FFT path
// (forced algorithm="fft"; the forward and the data gradient then run what "auto" picks).
inline bool use_fft(const ConvShape& s, ConvPass pass) {
  // "auto" would choose the FFT here (e.g. conv2's filter gradient, 5x5 on 27x27 planes) once a GPU run has
  // measured it against the implicit GEMM: until then only a forced "fft" takes it.
  return pass == ConvPass::backward_filter && s.algorithm == ConvAlgorithm::fft;
}

constexpr int64_t kWorkspaceAlignFloats = 4;  // 16 bytes

// How the filter gradient is split and where its pieces live in the workspace (offsets in floats).
struct Plan {
  int64_t L = 0, bins = 0;
  int64_t imgs_per_chunk = 0, chunks = 0;
  int64_t xhat = 0, dyhat = 0, dw_hat = 0;  // region offsets
  int64_t planes_per_block = 0;             // (k, c) planes per block of the inverse kernel
  int64_t workspace_floats = 0;
};

// The plan for a shape unsupported() accepts (an empty plan for an empty batch).
inline Plan plan(const ConvShape& s) {
  Plan p;
  if (s.N == 0 || unsupported(s)) return p;
  p.L = transform_size(s);
  p.bins = bins_of(p.L);
  const int64_t per_img = 2 * p.bins * (s.C + s.K);
  int64_t imgs = std::max<int64_t>(1, kMaxChunkFloats / per_img);
  while (imgs > 1 && round4(2 * p.bins * imgs * s.C) + 2 * p.bins * imgs * s.K > kMaxChunkFloats) --imgs;
  imgs = std::min(imgs, s.N);
  p.chunks = (s.N + imgs - 1) / imgs;
  p.imgs_per_chunk = (s.N + p.chunks - 1) / p.chunks;  // even chunks
  p.xhat = 0;
  p.dyhat = round4(2 * p.bins * p.imgs_per_chunk * s.C);
  p.dw_hat = p.dyhat + round4(2 * p.bins * p.imgs_per_chunk * s.K);
  // + 4 floats: the launcher moves the workspace up to a 16-byte boundary, since its regions are read as float2
  // and a caller's workspace may be any float-aligned view (an offset one faulted on a GPU with a misaligned address).
  p.workspace_floats = p.dw_hat + 2 * p.bins * s.K * s.Cg() + kWorkspaceAlignFloats;
  // Each plane of the inverse needs its spectrum (bins) and its partial inverse (L x S), complex.
  const int64_t per_plane = 2 * (p.bins + p.L * s.S);
  p.planes_per_block = std::max<int64_t>(1, std::min(kInverseSmemFloats / per_plane, s.K * s.Cg()));
  return p;
}

}  // namespace fft
}  // namespace pya
