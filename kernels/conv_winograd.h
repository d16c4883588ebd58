// Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions on the CUDA backend: when it is
// used, and how its workspace is laid out. Plain C++ (no CUDA): the bindings use the
// predicates to validate algorithm="winograd"; the kernels are in conv_winograd_cuda.h.
//
// Why: at AlexNet's conv3-conv5 (13x13, 192-384 channels per group) our FP32 implicit
// GEMM reaches 25-34 TFLOP/s against a measured SGEMM ceiling of ~52, while cuDNN's
// Winograd does the work of 75 "direct" TFLOP/s: the arithmetic has to shrink. F(2x2, 3x3)
// computes each 2x2 output tile from one 4x4 input tile with 16 multiplies per
// (input channel, filter) instead of 36: 2.25x fewer, 1.94x at 13x13 (7x7 tiles cover
// 14x14 outputs). Its transforms use only 0, +-1 and 1/2, so float32 stays within a
// few 1e-6 (relative to the output's scale) of exact arithmetic.
//
// Scheme (non-fused: three memory-bound transform kernels around the existing, tuned
// implicit-GEMM kernel, which does >90% of the arithmetic; a fused kernel would save the
// workspace round trips but needs its own tiling, and the GEMM is where the time goes).
// A "tile" t is one 2x2 block of the output at stride 2 (zero-extended beyond the output's
// edge); tiles are numbered (image, tile row, tile column), image fastest-changing last,
// so T = images * tilesP * tilesQ per chunk of images. The 16 positions xi of a 4x4
// transformed tile are 16 independent GEMMs, one per (xi, group) as blockIdx.z.
//   forward, y = conv(x, w) + b:
//     (a) V[xi][c][t]     = (B^T d B)[xi], d the 4x4 input tile at (2*tp - pad, 2*tq - pad)
//     (b) U[xi][g][k][c]  = (G w[k][c] G^T)[xi]             (16 * K * Cg floats)
//     (c) M[xi][g] (Kg x T) = U[xi][g] (Kg x Cg) * V[xi][g] (Cg x T)   16*groups GEMMs
//     (d) y tile          = A^T M[..][k][t] A + b[k], only the outputs inside P x Q
//   data gradient (stride 1): dx = conv(dy, w') with w'[c][k][r][s] = w[k][c][2-r][2-s]
//     and padding 2 - pad (negative padding crops; the transform handles any offset):
//     the same four steps with dy as input (K channels), a flipped and transposed
//     filter transform (U[xi][g][c][k]), and dx (C channels, H x W tiles) as output.
//   filter gradient: per tile, dw[k][c] += G^T [(A dy_t A^T) .* (B^T d_t B)] G (the
//     transpose of the forward formula), so with dY[xi][k][t] = (A dy_t A^T)[xi] (dy_t the
//     2x2 dy tile, zero beyond P x Q) and V as in the forward:
//     (a) V, and dY                                         transforms
//     (b) Dhat[xi][g] (Kg x Cg) = dY[xi][g] (Kg x T) * V[xi][g]^T (T x Cg), the reduction
//         over T split into a fixed number of slices (from the shape alone), each slice's
//         partial sums in the workspace
//     (c) one kernel adds the slices in order (plus, with several chunks of images, the
//         running sum of the earlier chunks, in chunk order) and writes dw = G^T Dhat G.
//     No atomics: the same inputs give the same bits on every run and every GPU.
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1].
//
// Workspace, in floats (Tld = T rounded up to a multiple of 4, the row stride of every
// [..][t] plane, so rows stay 16-byte aligned for float4 loads):
//   forward, data:  [ U: 16*K*Cg | V: 16*Cin*Tld | M: 16*Cout*Tld ]
//                   (Cin, Cout = C, K for the forward; K, C for the data gradient)
//   filter:         [ V: 16*C*Tld | dY: 16*K*Tld | partials: slices*16*K*Cg | running sum:
//                     16*K*Cg, only with several chunks ]
// The transformed planes of one chunk (V + M, or V + dY) are capped at kMaxChunkFloats
// (512 MB): batch 128 of conv3-conv5 fits in one chunk (conv4 needs 308 MB). One chunk per
// launch sequence keeps each GEMM large (thousands of blocks at batch 128). Measured on an
// H100: at 256 MB conv4 ran two chunks of 64 images, and fwd/dgrad/wgrad took 0.704 / 0.704 /
// 1.101 ms against 0.655 / 0.659 / 1.08 in one chunk.
//
// When (ConvAlgorithm::automatic): 3x3, stride 1, at least 128 channels AND filters per
// group, and tiles not too wasteful (9*P*Q >= 24 * tiles, i.e. >= 1.5x fewer multiplies
// than direct; a 1x1 output would do 16 where direct does 9). Why 128: besides the
// GEMM, each tile moves 16*(Cg + Kg) floats through memory twice (written by a transform,
// read by the GEMM; then the GEMM's output written and read again), ~128*(Cg+Kg) bytes per
// 32*Cg*Kg GEMM flops. At ~3 TB/s against a ~30 TFLOP/s GEMM the transforms cost about
// 40*(Cg+Kg)/(Cg*Kg) of the GEMM's time: 0.26 at conv3 (256, 384), 0.42 at conv4/5
// (192), 0.63 at 128 (total ~1.6x a GEMM 1.94x smaller than direct: a modest win), 1.25
// at 64 (a loss). Everything else (AlexNet's conv1 and conv2, small channel counts) keeps
// the direct path.
#pragma once
#include <algorithm>
#include <cstdint>

#include "conv.h"

namespace pya {
namespace winograd {

#ifdef PYA_CONV_EMULATION
inline int64_t kMaxChunkFloats = int64_t(1) << 27;  // the CPU emulation test lowers it to run several chunks
#else
constexpr int64_t kMaxChunkFloats = int64_t(1) << 27;  // transformed planes of one chunk of images (512 MB)
#endif
constexpr int64_t kMaxGroups = 65535 / 16;             // blockIdx.z = (xi, group) must stay <= 65535
constexpr int64_t kAutoMinChannels = 128;              // channels and filters per group for "auto"

inline int64_t round4(int64_t n) { return (n + 3) / 4 * 4; }
inline int64_t tiles_of(int64_t rows, int64_t cols) { return ((rows + 1) / 2) * ((cols + 1) / 2); }

// Why Winograd cannot compute `s` (a phrase for "algorithm='winograd' needs ..."), or nullptr if it can.
inline const char* unsupported(const ConvShape& s) {
  if (s.R != 3 || s.S != 3) return "3x3 filters";
  if (s.stride != 1) return "stride 1";
  if (s.groups > kMaxGroups) return "at most 4095 groups";
  // One image's transformed planes must fit a chunk (the forward tiles y, the data gradient dx).
  const int64_t tiles = std::max(tiles_of(s.P, s.Q), tiles_of(s.H, s.W));
  if (16 * (s.C + s.K) * round4(tiles) > kMaxChunkFloats)
    return "one image's transformed tiles (16 * (channels + filters) * tiles floats) to fit 2^27 floats";
  return nullptr;
}

// Whether the CUDA backend computes `s` with Winograd (the bindings have refused a forced "winograd" that
// unsupported() names; the launchers check again).
inline bool use_winograd(const ConvShape& s) {
  switch (s.algorithm) {
    case ConvAlgorithm::direct: return false;
    case ConvAlgorithm::winograd: return true;
    case ConvAlgorithm::automatic: break;
    case ConvAlgorithm::fft: break;  // only the filter gradient has an FFT path (conv_fft.h): the rest is "auto"'s
  }
  return unsupported(s) == nullptr && s.Cg() >= kAutoMinChannels && s.Kg() >= kAutoMinChannels &&
         9 * s.PQ() >= 24 * tiles_of(s.P, s.Q);
}

// How one pass is split and where its pieces live in the workspace (offsets in floats).
struct Plan {
  int64_t out_rows = 0, out_cols = 0;  // the tiled output: y (P x Q), dx (H x W), dy for the filter gradient
  int64_t tiles_q = 0, tiles = 0;      // tiles per output row, per image
  int64_t cin = 0, cout = 0;           // channels of the transformed input (V) and of M (or dY)
  int64_t imgs_per_chunk = 0, chunks = 0;
  int64_t T = 0, Tld = 0;              // tiles in a full chunk; row stride of the planes
  int64_t u = 0, v = 0, m = 0;         // offsets of U (forward/data), V, and M (forward/data) or dY (filter)
  int64_t partial = 0, acc = 0;        // filter: offsets of the slices' partial sums and of the running sum
  int64_t slices = 1, k_per_slice = 0; // filter: split of the reduction over T (from the shape alone)
  int64_t workspace_floats = 0;
};

}  // namespace winograd

namespace cuda {
// The plan conv_cuda.cu follows for `pass` (forward, backward_data or backward_filter) of a shape Winograd
// supports; exposed for the CPU emulation test (tests/conv_cuda_emulation), which checks the workspace.
winograd::Plan winograd_plan(const ConvShape& s, ConvPass pass);
}  // namespace cuda

}  // namespace pya
