// CUDA convolution: implicit GEMM, one templated kernel for all three passes.
//
// Scheme, and why: every pass is a GEMM whose operands are gathered on the fly
// from the NCHW tensors (no im2col buffer, no cuDNN/cuBLAS):
//   forward          C[Kg  x N*P*Q ] = W[Kg x CgRS]            * im2col(x)[CgRS x N*P*Q]
//   backward data    C[Cg  x N*H*W ] = W^T[Cg x Kg*R*S]        * "col2im"(dy)[Kg*R*S x N*H*W]
//   backward filter  C[Kg  x CgRS  ] = dY[Kg x N*P*Q]          * im2col(x)^T[N*P*Q x CgRS]
// with the group as blockIdx.z, so all groups run in one launch. Implicit GEMM
// rather than cuda-convnet's per-position scheme because cuda-convnet's kernels
// want images innermost (CHWN) and batch sizes that are multiples of 32/128;
// with NCHW, batch 1 and odd channel counts, the GEMM view gives the same
// register-tile efficiency for every shape: it only changes how a tile's
// operands are addressed.
//
// Kernel: 256 threads compute a BM x BN tile of C (BM = 128, or 64 when the
// row count fits 64-row tiles better, e.g. conv4's 192 filters per group; BN = 128,
// or 192 with 64-row tiles when a filter gradient's few columns fit it better, e.g.
// conv4's 192 channels per group); each thread holds an 8x8 (4x8, 4x12)
// accumulator tile in registers, split into 4-wide
// fragments 64 apart so its shared-memory reads are conflict-free float4s. The
// reduction is walked 8 deep at a time through double-buffered shared memory:
// the next slice's global loads are issued before the current slice's FMAs and
// stored to the other buffer after them (one __syncthreads per slice). Index
// decomposition uses FastDiv (conv.h), so gathers cost a few integer ops.
//
// Filter gradient determinism: its reduction (N*P*Q, long) is split into a
// fixed number of slices chosen from the shape alone (not the device); slice i
// writes its partial sums to workspace[i] and a second kernel adds the slices in
// order. No atomics: the same inputs give the same bits on every run. The bias
// gradient is one block per channel with a fixed-shape tree reduction.
//
// Data gradient, two forms chosen from the shape alone. Stride 1 with 32 or
// more channels per group: the implicit GEMM above, gathering dy per tap. A
// stride > 1 would waste the taps that land on no output (15 of 16 for conv1),
// and a few channels per group (conv1 has 3) would waste most of a 64-row tile,
// so those shapes go through columns instead, as Caffe's col2im does:
// dcol[CgRS x imgs*P*Q] = W^T * dy (a dense GEMM, no wasted taps) into the
// workspace, a chunk of images at a time, then a gather that sums each input's
// taps in (r, s) order (deterministic, no atomics).
//
// 3x3 stride-1 shapes with enough channels go through Winograd F(2x2, 3x3) instead
// (ConvShape::algorithm, conv_winograd.h): transforms around 16*groups GEMMs done by the
// same implicit_gemm_kernel (conv_winograd_cuda.h, included below).
//
// A forced algorithm "fft" computes the filter gradient of stride-1 shapes on planes up to 32x32
// with FFTs and per-bin complex GEMMs of its own (conv_fft.h, conv_fft_cuda.h, included below).
#include <algorithm>
#include <atomic>

#include "conv.h"
#include "conv_fft.h"
#include "conv_winograd.h"
#include "cuda_check.h"

namespace pya::cuda {
// Grid limits: a GEMM's row tiles (gridDim.y) and the bias gradient's filters (gridDim.x). Past them the
// launchers split the rows into several launches and the bias kernel loops over filters. Variables under the
// CPU emulation (tests/conv_cuda_emulation), whose check lowers them to run those paths on small shapes.
#ifdef PYA_CONV_EMULATION
int64_t kMaxRowTiles = 65535;
int64_t kMaxBiasBlocks = 2147483647;
#else
constexpr int64_t kMaxRowTiles = 65535;
constexpr int64_t kMaxBiasBlocks = 2147483647;
#endif
namespace {

constexpr int kThreads = 256;
constexpr int BN = 128;  // GEMM columns per block (the usual tile; col_fragments says when 192)
constexpr int BK = 8;    // reduction depth per shared-memory stage
// Filter gradient: aim for this many blocks across all slices (fixed, so results
// do not depend on the GPU), each slice at least kMinSliceDepth deep.
constexpr int kTargetBlocks = 512;
constexpr int kMaxSlices = 128;
constexpr int kMinSliceDepth = 256;
// Data gradient by columns: at most this many floats of columns per chunk of images (256 MB), but at least
// enough images per chunk for kMinColumnBlocks GEMM blocks (counted with 128-row tiles, from the shape
// alone). conv1 at batch 128 has 560 MB of columns: 3 chunks. Chunks small enough to stay in L2 (32 MB,
// 19 chunks) were slower on an H100 (whole pass 1.65 ms against 1.40): the short GEMMs (reduction 96
// deep) lose more to their partial last waves than the gather gains from L2. Chunking never changes
// the arithmetic (each column is one GEMM element, each dx one gather), so results are the same bits.
constexpr int64_t kMaxColumnFloats = int64_t(1) << 26;
constexpr int64_t kMinColumnBlocks = 400;

__device__ __forceinline__ float load(const float* p) { return __ldg(p); }

// ---------------------------------------------------------------------------------------------------------
// The three GEMM problems. Offsets inside one tensor fit 32 bits (the bindings refuse tensors of 2^31 or
// more elements); the gathers use 32-bit math except where ptxas then spilled the 128-row variant. Each says, for group g: the GEMM size (M x Ncols, reduction Kdim); how a thread
// fetches A_PER consecutive reduction elements of one A row, and 4 consecutive reduction elements of one B
// column (zero outside the slice [.., kend) and in the padding); and where C[m][n] lives.
// ---------------------------------------------------------------------------------------------------------

struct ForwardProblem {
  const float* x;
  const float* w;
  const float* bias;  // may be null
  float* c;           // y
  int M, Ncols, Kdim;
  int C, H, W, K, Q, PQ, Cg, Kg, R, S, stride, pad;
  FastDiv div_rs, div_s, div_pq, div_q;
  bool a_vector;  // filter rows are 16-byte aligned: float4/float2 loads

  struct ARow { const float* p; bool ok; };
  struct BCol { const float* base; int ih0, iw0; bool ok; };

  __device__ ARow a_row(int g, int m) const { return {w + (int64_t(g) * Kg + m) * Kdim, m < M}; }

  template <int A_PER>
  __device__ void load_a(const ARow& a, int k, int kend, float (&v)[A_PER]) const {
    if (a_vector && a.ok && k + A_PER <= kend) {
      if constexpr (A_PER == 4) {
        float4 t = __ldg(reinterpret_cast<const float4*>(a.p + k));
        v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
      } else {
        float2 t = __ldg(reinterpret_cast<const float2*>(a.p + k));
        v[0] = t.x, v[1] = t.y;
      }
      return;
    }
#pragma unroll
    for (int j = 0; j < A_PER; ++j) v[j] = (a.ok && k + j < kend) ? load(a.p + k + j) : 0.f;
  }

  __device__ BCol b_col(int g, int n) const {
    BCol b{x, 0, 0, n < Ncols};
    if (!b.ok) return b;
    uint32_t img, pq, p, q;
    div_pq.divmod(n, img, pq);
    div_q.divmod(pq, p, q);
    b.base = x + (int64_t(img) * C + int64_t(g) * Cg) * H * W;
    b.ih0 = int(conv_in_coord(p, 0, stride, pad));
    b.iw0 = int(conv_in_coord(q, 0, stride, pad));
    return b;
  }

  __device__ void load_b(const BCol& b, int k, int kend, float (&v)[4]) const {
    uint32_t c, rs, r, s;
    div_rs.divmod(k, c, rs);
    div_s.divmod(rs, r, s);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int ih = b.ih0 + int(r), iw = b.iw0 + int(s);
      const bool in = b.ok && k + j < kend && ih >= 0 && ih < H && iw >= 0 && iw < W;
      v[j] = in ? load(b.base + (int64_t(c) * H + ih) * W + iw) : 0.f;
      if (++s == uint32_t(S)) {  // next tap: (c, r, s) in row-major order
        s = 0;
        if (++r == uint32_t(R)) r = 0, ++c;
      }
    }
  }

  __device__ int64_t c_row(int g, int /*slice*/, int m) const { return (int64_t(g) * Kg + m) * PQ; }
  __device__ int c_col(int n) const {  // < numel(y) < 2^31 (checked by the bindings)
    uint32_t img, pq;
    div_pq.divmod(n, img, pq);
    return int(img) * K * PQ + int(pq);
  }
  __device__ float c_bias(int g, int m) const { return bias ? load(bias + g * Kg + m) : 0.f; }
};

// Stride 1 only: data_plan sends every strided shape through ColumnProblem.
struct DataProblem {
  const float* dy;
  const float* w;
  float* c;  // dx
  int M, Ncols, Kdim;
  int C, H, W, K, P, Q, PQ, HWn, Cg, Kg, R, S, RS, CRS, pad;
  FastDiv div_rs, div_s, div_hw, div_w;

  struct ARow { const float* p; bool ok; };
  struct BCol { const float* base; int hp, wp; bool ok; };

  // A[c][(k, r, s)] = w[g*Kg + k][c][r][s]
  __device__ ARow a_row(int g, int m) const { return {w + int64_t(g) * Kg * CRS + int64_t(m) * RS, m < M}; }

  template <int A_PER>
  __device__ void load_a(const ARow& a, int k, int kend, float (&v)[A_PER]) const {
    uint32_t kf, rs;
    div_rs.divmod(k, kf, rs);
#pragma unroll
    for (int j = 0; j < A_PER; ++j) {
      v[j] = (a.ok && k + j < kend) ? load(a.p + int(kf) * CRS + int(rs)) : 0.f;
      if (++rs == uint32_t(RS)) rs = 0, ++kf;
    }
  }

  __device__ BCol b_col(int g, int n) const {
    BCol b{dy, 0, 0, n < Ncols};
    if (!b.ok) return b;
    uint32_t img, hw, h, ww;
    div_hw.divmod(n, img, hw);
    div_w.divmod(hw, h, ww);
    b.base = dy + (int64_t(img) * K + int64_t(g) * Kg) * PQ;
    b.hp = int(h) + pad;
    b.wp = int(ww) + pad;
    return b;
  }

  // Output index along one axis that tap `t` of input coordinate (padded) `ip` came from, or -1.
  __device__ int source(int ip, int t, int out) const {
    const int o = ip - t;
    return (o >= 0 && o < out) ? o : -1;
  }

  __device__ void load_b(const BCol& b, int k, int kend, float (&v)[4]) const {
    uint32_t kf, rs, r, s;
    div_rs.divmod(k, kf, rs);
    div_s.divmod(rs, r, s);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float val = 0.f;
      if (b.ok && k + j < kend) {
        const int p = source(b.hp, int(r), P), q = source(b.wp, int(s), Q);
        if (p >= 0 && q >= 0) val = load(b.base + int(kf) * PQ + p * Q + q);
      }
      v[j] = val;
      if (++s == uint32_t(S)) {  // next tap: (k, r, s) in row-major order
        s = 0;
        if (++r == uint32_t(R)) r = 0, ++kf;
      }
    }
  }

  __device__ int64_t c_row(int g, int /*slice*/, int m) const { return (int64_t(g) * Cg + m) * HWn; }
  __device__ int c_col(int n) const {  // < numel(dx) < 2^31
    uint32_t img, hw;
    div_hw.divmod(n, img, hw);
    return int(img) * C * HWn + int(hw);
  }
  __device__ float c_bias(int, int) const { return 0.f; }
};

// Data gradient by columns: C[(c, r, s)][(img - img0, p, q)] = sum_k w[g*Kg + k][c][r][s] * dy[img][g*Kg + k][p][q]
// (k over the group's filters), written to the workspace as col[g][(c, r, s)][(img - img0, p, q)].
struct ColumnProblem {
  const float* dy;
  const float* w;
  float* c;  // the workspace
  int M, Ncols, Kdim;
  int K, PQ, Kg, CRS, img0;
  FastDiv div_pq;

  struct ARow { const float* p; bool ok; };
  struct BCol { const float* base; bool ok; };

  // A[(c, r, s)][k] = w[g*Kg + k][(c, r, s)]: A_PER loads CRS apart (w is small and stays in cache).
  __device__ ARow a_row(int g, int m) const { return {w + int64_t(g) * Kg * CRS + m, m < M}; }

  template <int A_PER>
  __device__ void load_a(const ARow& a, int k, int kend, float (&v)[A_PER]) const {
#pragma unroll
    for (int j = 0; j < A_PER; ++j) v[j] = (a.ok && k + j < kend) ? load(a.p + int64_t(k + j) * CRS) : 0.f;
  }

  // B[k][(img, pq)] = dy[img0 + img][g*Kg + k][pq]: consecutive columns are consecutive addresses.
  __device__ BCol b_col(int g, int n) const {
    BCol b{dy, n < Ncols};
    if (!b.ok) return b;
    uint32_t img, pq;
    div_pq.divmod(n, img, pq);
    b.base = dy + (int64_t(img0) + img) * K * PQ + int64_t(g) * Kg * PQ + pq;
    return b;
  }

  __device__ void load_b(const BCol& b, int k, int kend, float (&v)[4]) const {
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = (b.ok && k + j < kend) ? load(b.base + (k + j) * PQ) : 0.f;  // < K*PQ
  }

  __device__ int64_t c_row(int g, int /*slice*/, int m) const { return (int64_t(g) * M + m) * Ncols; }
  __device__ int c_col(int n) const { return n; }
  __device__ float c_bias(int, int) const { return 0.f; }
};

struct FilterProblem {
  const float* dy;
  const float* x;
  float* c;  // dw, or the per-slice partial sums in the workspace
  int M, Ncols, Kdim;
  int C, H, W, K, P, Q, PQ, Cg, Kg, CRS, stride, pad;
  FastDiv div_rs, div_s, div_pq, div_q;

  struct ARow { const float* p; bool ok; };
  struct BCol { const float* base; int roff, soff; bool ok; };

  // A[k][(img, pq)] = dy[img][g*Kg + k][pq]
  __device__ ARow a_row(int g, int m) const { return {dy + (int64_t(g) * Kg + m) * PQ, m < M}; }

  template <int A_PER>
  __device__ void load_a(const ARow& a, int k, int kend, float (&v)[A_PER]) const {
    uint32_t img, pq;
    div_pq.divmod(k, img, pq);
#pragma unroll
    for (int j = 0; j < A_PER; ++j) {
      v[j] = (a.ok && k + j < kend) ? load(a.p + int64_t(img) * K * PQ + pq) : 0.f;
      if (++pq == uint32_t(PQ)) pq = 0, ++img;
    }
  }

  // B[(img, p, q)][(c, r, s)] = x[img][g*Cg + c][p*stride - pad + r][q*stride - pad + s]
  __device__ BCol b_col(int g, int n) const {
    BCol b{x, 0, 0, n < Ncols};
    if (!b.ok) return b;
    uint32_t ch, rs, r, s;
    div_rs.divmod(n, ch, rs);
    div_s.divmod(rs, r, s);
    b.base = x + (int64_t(g) * Cg + ch) * H * W;
    b.roff = int(conv_in_coord(0, r, stride, pad));
    b.soff = int(conv_in_coord(0, s, stride, pad));
    return b;
  }

  __device__ void load_b(const BCol& b, int k, int kend, float (&v)[4]) const {
    uint32_t img, pq, p, q;
    div_pq.divmod(k, img, pq);
    div_q.divmod(pq, p, q);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int ih = int(p) * stride + b.roff, iw = int(q) * stride + b.soff;
      const bool in = b.ok && k + j < kend && ih >= 0 && ih < H && iw >= 0 && iw < W;
      v[j] = in ? load(b.base + int64_t(img) * C * H * W + int64_t(ih) * W + iw) : 0.f;
      if (++q == uint32_t(Q)) {
        q = 0;
        if (++p == uint32_t(P)) p = 0, ++img;
      }
    }
  }

  __device__ int64_t c_row(int g, int slice, int m) const {
    return (int64_t(slice) * K + int64_t(g) * Kg + m) * CRS;
  }
  __device__ int c_col(int n) const { return n; }
  __device__ float c_bias(int, int) const { return 0.f; }
};

// ---------------------------------------------------------------------------------------------------------
// The kernel. grid = (ceil(Ncols/BN), row tiles, groups * slices): row tile row_tile0 + blockIdx.y (more than
// kMaxRowTiles row tiles take several launches); slice s reduces over [s*k_per_slice, min(Kdim, (s+1)*k_per_slice)).
// MF, NF: 64-row and 64-column fragments per tile.
// ---------------------------------------------------------------------------------------------------------

template <class Prob, int MF, int NF>
__global__ void __launch_bounds__(kThreads, 2) implicit_gemm_kernel(const Prob prob, int k_per_slice, int groups, int row_tile0) {
  static_assert(MF * NF <= 4, "8x8 accumulators per thread at most (two blocks per SM: 128 registers)");
  constexpr int BM = 64 * MF, BNT = 64 * NF;
  constexpr int A_PER = BM * BK / kThreads;  // A elements each thread stages: 4 (BM=128) or 2 (BM=64)
  constexpr int A_KGROUPS = BK / A_PER;
  // B: 128 columns are staged by all 256 threads, 4 elements each; 192 columns by the first 192
  // threads, the whole depth of 8 each (the last 64 threads stage no B).
  constexpr int B_STAGERS = NF == 3 ? BNT : kThreads;
  constexpr int B_PER = BNT * BK / B_STAGERS;  // 4 or 8: whole float4 groups of load_b
  static_assert(B_STAGERS <= kThreads && B_PER % 4 == 0, "unsupported column tile");
  constexpr int AS_STRIDE = BM + 4;  // padding: the transposing store below is conflict-free, rows stay 16B-aligned
  __shared__ __align__(16) float As[2][BK][AS_STRIDE];
  __shared__ __align__(16) float Bs[2][BK][BNT];

  const int tid = threadIdx.x;
  const int g = blockIdx.z % groups, slice = blockIdx.z / groups;
  const int m0 = (row_tile0 + int(blockIdx.y)) * BM, n0 = blockIdx.x * BNT;  // < M + BM <= 2^31 - 1024 + 128
  const int k_begin = slice * k_per_slice;
  const int k_end = min(prob.Kdim, k_begin + k_per_slice);

  // Staging roles: A row a_m, reduction elements a_k..a_k+A_PER-1; B column b_n, elements b_k..b_k+B_PER-1.
  const int a_m = tid / A_KGROUPS, a_k = (tid % A_KGROUPS) * A_PER;
  const bool b_stager = B_STAGERS == kThreads || tid < B_STAGERS;  // a constant true for 128 columns
  const int b_n = tid % BNT, b_k = (tid / BNT) * B_PER;
  const auto arow = prob.a_row(g, m0 + a_m);
  const auto bcol = prob.b_col(g, n0 + b_n);

  float ra[A_PER], rb[B_PER / 4][4];  // B_PER consecutive reduction elements of column b_n, 4 per load_b
  prob.template load_a<A_PER>(arow, k_begin + a_k, k_end, ra);
  if (b_stager) {
#pragma unroll
    for (int h = 0; h < B_PER / 4; ++h) prob.load_b(bcol, k_begin + b_k + 4 * h, k_end, rb[h]);
  }
#pragma unroll
  for (int j = 0; j < A_PER; ++j) As[0][a_k + j][a_m] = ra[j];
  if (b_stager) {
#pragma unroll
    for (int j = 0; j < B_PER; ++j) Bs[0][b_k + j][b_n] = rb[j / 4][j % 4];
  }
  __syncthreads();

  // Compute roles: rows f*64 + tm*4 + i, columns f*64 + tn*4 + j.
  const int tn = tid % 16, tm = tid / 16;
  float acc[4 * MF][4 * NF];
#pragma unroll
  for (int i = 0; i < 4 * MF; ++i)
#pragma unroll
    for (int j = 0; j < 4 * NF; ++j) acc[i][j] = 0.f;

  int buf = 0;
  for (int k0 = k_begin; k0 < k_end; k0 += BK) {
    const bool more = k0 + BK < k_end;
    if (more) {  // issue the next slice's global loads now; they land while we compute
      prob.template load_a<A_PER>(arow, k0 + BK + a_k, k_end, ra);
      if (b_stager) {
#pragma unroll
        for (int h = 0; h < B_PER / 4; ++h) prob.load_b(bcol, k0 + BK + b_k + 4 * h, k_end, rb[h]);
      }
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[4 * MF], b[4 * NF];
#pragma unroll
      for (int f = 0; f < MF; ++f) {
        const float4 t = *reinterpret_cast<const float4*>(&As[buf][kk][f * 64 + tm * 4]);
        a[f * 4 + 0] = t.x, a[f * 4 + 1] = t.y, a[f * 4 + 2] = t.z, a[f * 4 + 3] = t.w;
      }
#pragma unroll
      for (int f = 0; f < NF; ++f) {
        const float4 t = *reinterpret_cast<const float4*>(&Bs[buf][kk][f * 64 + tn * 4]);
        b[f * 4 + 0] = t.x, b[f * 4 + 1] = t.y, b[f * 4 + 2] = t.z, b[f * 4 + 3] = t.w;
      }
#pragma unroll
      for (int i = 0; i < 4 * MF; ++i)
#pragma unroll
        for (int j = 0; j < 4 * NF; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (more) {  // the other buffer was last read before the previous __syncthreads
#pragma unroll
      for (int j = 0; j < A_PER; ++j) As[buf ^ 1][a_k + j][a_m] = ra[j];
      if (b_stager) {
#pragma unroll
        for (int j = 0; j < B_PER; ++j) Bs[buf ^ 1][b_k + j][b_n] = rb[j / 4][j % 4];
      }
    }
    __syncthreads();
    buf ^= 1;
  }

  // Column offsets are 32-bit (every tensor has < 2^31 elements), rows 64-bit (the filter-gradient
  // workspace holds `slices` copies of dw): this keeps the epilogue within the register budget.
  int col[4 * NF];
  bool col_ok[4 * NF];
#pragma unroll
  for (int f = 0; f < NF; ++f)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + f * 64 + tn * 4 + j;
      col_ok[f * 4 + j] = n < prob.Ncols;
      col[f * 4 + j] = n < prob.Ncols ? prob.c_col(n) : 0;
    }
#pragma unroll
  for (int f = 0; f < MF; ++f)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int m = m0 + f * 64 + tm * 4 + i;
      if (m >= prob.M) continue;
      const int64_t row = prob.c_row(g, slice, m);
      const float bias = prob.c_bias(g, m);
#pragma unroll
      for (int j = 0; j < 4 * NF; ++j)
        if (col_ok[j]) prob.c[row + col[j]] = acc[f * 4 + i][j] + bias;
    }
}

// 64-row tiles when they waste fewer rows than 128-row ones (ties go to 128: more reuse per load).
// From the shape alone: the filter gradient's slicing (hence its bits) depends on it.
int row_fragments(int64_t M) {
  const int64_t pad128 = (M + 127) / 128 * 128, pad64 = (M + 63) / 64 * 64;
  return pad64 < pad128 ? 1 : 2;
}

int multiprocessors() {
  int device = 0;
  PYA_CUDA_CHECK(cudaGetDevice(&device));
  static std::atomic<int> cache[64];  // per device; 0 = not asked yet
  if (device < 64) {
    const int known = cache[device].load(std::memory_order_relaxed);
    if (known > 0) return known;
  }
  int count = 0;
  PYA_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  if (device < 64) cache[device].store(count, std::memory_order_relaxed);
  return std::max(count, 1);
}

// Forward and data gradient (no reduction split, so the tile choice never changes results): also weigh
// the last, partly idle wave. Two blocks fit per SM; a 64-row block costs a bit more than half a
// 128-row one (less reuse per shared-memory load). E.g. conv5 at batch 128 (338 blocks of 128 rows
// on 132 SMs) is better as 676 blocks of 64 rows.
int row_fragments_for_device(int64_t M, int64_t blocks_per_row_tile) {
  const int64_t slots = 2 * int64_t(multiprocessors());
  auto cost = [&](int mf) {
    const int64_t blocks = (M + 64 * mf - 1) / (64 * mf) * blocks_per_row_tile;
    return double((blocks + slots - 1) / slots) * (mf == 2 ? 1.0 : 0.55);
  };
  return cost(1) < cost(2) ? 1 : 2;
}

// 192-column tiles for the filter gradients (with 64-row tiles: 128 x 192 would not fit two blocks' registers)
// when they pad the columns less than 128-column ones. Their columns are few (channels, or channels x taps),
// so the padding shows: conv4's 192 channels per group filled 256 columns of two 128-column tiles, 25% of
// the arithmetic wasted, and a 64 x 192 tile also reuses each shared-memory load more than a 64 x 128 one
// (48 FMAs per 16 loads against 32 per 12). From the shape alone: the slicing (hence the bits) depends on it.
constexpr bool kWideColumnTiles = true;

int col_fragments(int64_t Ncols, int mf) {
  if (!kWideColumnTiles || mf != 1) return 2;
  const int64_t pad128 = (Ncols + 127) / 128 * 128, pad192 = (Ncols + 191) / 192 * 192;
  return pad192 < pad128 ? 3 : 2;
}

// C's row tiles of 64 * MF rows, at most kMaxRowTiles per launch (gridDim.y's limit): Kg or Cg or Cg*R*S above
// 65535 tiles (4.2M rows of 64) once made the launcher refuse the shape. Each launch writes its own rows of C
// with the same arithmetic, so splitting changes no bit.
template <class Prob, int MF, int NF>
void launch_gemm_tiles(const Prob& p, int64_t groups, int64_t slices, int64_t k_per_slice, Stream stream) {
  if (p.M == 0 || p.Ncols == 0 || p.Kdim == 0) return;
  if (groups * slices > 65535) throw KernelError("conv2d: too many groups for one CUDA launch (at most 65535)");
  const int64_t row_tiles = (int64_t(p.M) + 64 * MF - 1) / (64 * MF);
  const unsigned cols = unsigned((int64_t(p.Ncols) + 64 * NF - 1) / (64 * NF));
  for (int64_t t0 = 0; t0 < row_tiles; t0 += kMaxRowTiles) {
    const dim3 grid(cols, unsigned(std::min(kMaxRowTiles, row_tiles - t0)), unsigned(groups * slices));
    implicit_gemm_kernel<Prob, MF, NF><<<grid, kThreads, 0, stream>>>(p, int(k_per_slice), int(groups), int(t0));
    PYA_CHECK_LAUNCH("conv2d implicit GEMM");
  }
}

// 128-column tiles of 64 * mf rows.
template <class Prob>
void launch_implicit_gemm(const Prob& p, int64_t groups, int64_t slices, int64_t k_per_slice, int mf,
                          Stream stream) {
  if (mf == 2)
    launch_gemm_tiles<Prob, 2, 2>(p, groups, slices, k_per_slice, stream);
  else
    launch_gemm_tiles<Prob, 1, 2>(p, groups, slices, k_per_slice, stream);
}

// The filter gradients' GEMMs: tiles from the shape alone (row_fragments, col_fragments), as their plans
// count them. Only these problems get the 192-column instantiation.
template <class Prob>
void launch_filter_gemm(const Prob& p, int64_t groups, int64_t slices, int64_t k_per_slice, Stream stream) {
  const int mf = row_fragments(p.M);
  if (col_fragments(p.Ncols, mf) == 2) return launch_implicit_gemm(p, groups, slices, k_per_slice, mf, stream);
  launch_gemm_tiles<Prob, 1, 3>(p, groups, slices, k_per_slice, stream);
}

// How the filter gradient's reduction (N*P*Q) is split: from the shape only.
struct FilterPlan {
  int64_t slices = 1, k_per_slice = 0;
};

FilterPlan filter_plan(const ConvShape& s) {
  FilterPlan plan;
  const int64_t kdim = s.N * s.PQ();
  const int mf = row_fragments(s.Kg());
  const int64_t bm = 64 * mf, bn = 64 * col_fragments(s.CRSg(), mf);
  const int64_t blocks_per_slice = s.groups * ((s.Kg() + bm - 1) / bm) * ((s.CRSg() + bn - 1) / bn);
  int64_t slices = (kTargetBlocks + blocks_per_slice - 1) / blocks_per_slice;
  slices = std::min<int64_t>({slices, kMaxSlices, (kdim + kMinSliceDepth - 1) / kMinSliceDepth,
                              std::max<int64_t>(1, 65535 / s.groups)});
  slices = std::max<int64_t>(slices, 1);
  // Slice depth a multiple of BK; recount so that no slice is empty.
  plan.k_per_slice = ((kdim + slices - 1) / slices + BK - 1) / BK * BK;
  plan.slices = std::max<int64_t>(1, (kdim + plan.k_per_slice - 1) / plan.k_per_slice);
  return plan;
}

// dx for images img0 .. img0 + imgs - 1 from the columns: each input sums the taps that read it, r then s
// ascending. One thread per input element; offsets within the chunk and within dx fit 32 bits.
// The taps that land on an output are counted first (first tap and count per axis), so the loop has no
// `continue` and the compiler unrolls it: the loads go out together instead of one per add (an in-order
// warp waits on each add before issuing the next load). H100, conv1 at batch 128: 0.41 ms, against 0.64
// before (that one from L2-sized chunks, this one from DRAM).
__device__ __forceinline__ void taps_on_output(int xp, int K, int out, int stride, int& first, int& count) {
  // Taps k with k = xp (mod stride), 0 <= k < K, k <= xp and (xp - k) / stride < out.
  first = xp % stride;
  const int lowest = xp - (out - 1) * stride;  // smaller taps land past the last output
  if (first < lowest) first += (lowest - first + stride - 1) / stride * stride;
  const int last = std::min(K - 1, xp);
  count = last >= first ? (last - first) / stride + 1 : 0;
}

__global__ void col2im_gather_kernel(const float* __restrict__ col, float* __restrict__ dx, int imgs, int img0, int C,
                                     int H, int W, int Cg, int R, int S, int P, int Q, int stride, int pad,
                                     int64_t ncols, FastDiv div_w, FastDiv div_hw, FastDiv div_c, FastDiv div_cg) {
  const int64_t total = int64_t(imgs) * C * H * W;  // <= numel(dx) < 2^31
  const int64_t grid_stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += grid_stride) {
    uint32_t rest, hw, img, c, h, x, g, cl;
    div_hw.divmod(uint32_t(i), rest, hw);
    div_c.divmod(rest, img, c);
    div_w.divmod(hw, h, x);
    div_cg.divmod(c, g, cl);
    const int hp = int(h) + pad, wp = int(x) + pad;
    int r0, nr, s0, ns;
    taps_on_output(hp, R, P, stride, r0, nr);
    taps_on_output(wp, S, Q, stride, s0, ns);
    // Tap (r0 + a*stride, s0 + b*stride) reads output (p0 - a, q0 - b): column p*Q + q of row r*S + s.
    const int p0 = (hp - r0) / stride, q0 = (wp - s0) / stride;
    const float* base = col + (int64_t(g) * Cg + cl) * R * S * ncols + int64_t(img) * P * Q +
                        int64_t(r0 * S + s0) * ncols + p0 * Q + q0;
    const int64_t row_step = int64_t(stride) * S * ncols - Q, col_step = int64_t(stride) * ncols - 1;
    float sum = 0.f;
    for (int a = 0; a < nr; ++a) {
      const float* tap = base + a * row_step;
#pragma unroll 4
      for (int b = 0; b < ns; ++b) sum += load(tap + b * col_step);
    }
    dx[(int64_t(img0) + img) * C * H * W + int64_t(c) * H * W + hw] = sum;
  }
}

// out[i] = sum over slices s of partial[s * n + i], in slice order (deterministic): the filter gradient's split-K
// slices, and the bias gradient's splits.
__global__ void sum_slices_kernel(const float* __restrict__ partial, float* __restrict__ out, int64_t n,
                                  int slices) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float sum = 0.f;
    for (int s = 0; s < slices; ++s) sum += partial[s * n + i];
    out[i] = sum;
  }
}

// db[k] = sum of dy over images and pixels. Blocks (k, split): split `split` of channel k's N*PQ values, a
// contiguous range of the flattened (image, pixel) order; each thread sums its elements (kThreads apart) in
// increasing order, kBiasLoads loads in flight before it adds them, then the block adds its threads in a fixed
// tree; with several splits sum_slices_kernel adds them in order. The splits come from the shape alone
// (bias_plan), so the bits do not depend on the device or the run. This replaced one block per channel with one
// load in flight per thread (each load waited for the previous one's addition), which cost about 1.2 ms of an
// H100's 21.7 ms training step (inferred: the conv backward segments less their timed passes) for 332 MB that a
// copy moves in ~0.11 ms. Not yet timed on a GPU.
constexpr int kBiasLoads = 8;
constexpr int64_t kBiasTargetBlocks = 1024;  // about 8 blocks of kThreads per SM on 132 SMs

struct BiasPlan {
  int64_t splits = 1, per_split = 0;  // per_split: elements per split, whole rounds of kThreads * kBiasLoads
};

BiasPlan bias_plan(const ConvShape& s) {
  BiasPlan plan;
  const int64_t total = s.N * s.PQ(), round = int64_t(kThreads) * kBiasLoads;
  const int64_t rounds = std::max<int64_t>(1, (total + round - 1) / round);
  const int64_t want = std::min(rounds, std::max<int64_t>(1, (kBiasTargetBlocks + s.K - 1) / std::max<int64_t>(s.K, 1)));
  plan.per_split = (rounds + want - 1) / want * round;
  plan.splits = std::max<int64_t>(1, (total + plan.per_split - 1) / plan.per_split);  // no empty split
  return plan;
}

// out[split * K + k]: the split's sum (with one split, out is db), the layout sum_slices_kernel adds in order.
// Filter k = blockIdx.x, or with more than kMaxBiasBlocks filters (gridDim.x's limit is 2^31 - 1) every
// gridDim.x-th from it: the launch passed unsigned(K), which wrapped to K - 2^32 blocks past 2^32 - 1 filters
// and left the rest of db unwritten.
__global__ void __launch_bounds__(kThreads)
    bias_grad_kernel(const float* __restrict__ dy, float* __restrict__ out, int64_t K, int64_t PQ, int64_t total,
                     int64_t per_split) {
  __shared__ float partial[kThreads];
  const int64_t split = blockIdx.y;
  const int64_t e1 = min(total, (split + 1) * per_split);
  const int64_t step_img = kThreads / PQ, step_pq = kThreads - step_img * PQ, image_stride = K * PQ;
  // Block-uniform: every thread reaches every barrier. Thread 0 reads partial[0] after the last one and is the
  // next iteration's only writer of it, so the loop needs no further barrier.
  for (int64_t k = blockIdx.x; k < K; k += gridDim.x) {
    int64_t e = split * per_split + threadIdx.x;
    // (image, pixel) of element e, carried from one element to the next kThreads on without dividing.
    int64_t img = e / PQ, pq = e - img * PQ;
    const float* plane = dy + k * PQ;
    float sum = 0.f;  // +0, never -0, so adding the 0.f of a masked load changes no bit
    for (; e < e1; e += int64_t(kThreads) * kBiasLoads) {
      float v[kBiasLoads];
#pragma unroll
      for (int j = 0; j < kBiasLoads; ++j) {
        v[j] = e + j * kThreads < e1 ? plane[img * image_stride + pq] : 0.f;
        pq += step_pq;
        img += step_img;
        if (pq >= PQ) {
          pq -= PQ;
          ++img;
        }
      }
#pragma unroll
      for (int j = 0; j < kBiasLoads; ++j) sum += v[j];
    }
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half /= 2) {
      if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
      __syncthreads();
    }
    if (threadIdx.x == 0) out[split * K + k] = partial[0];
  }
}

// How the data gradient is computed (from the shape only): by columns, in chunks of images, or directly.
struct DataPlan {
  bool columns = false;
  int64_t imgs_per_chunk = 0;
  int64_t workspace_floats = 0;  // the columns of one chunk, all groups
};

DataPlan data_plan(const ConvShape& s) {
  DataPlan plan;
  plan.columns = s.stride > 1 || s.Cg() < 32;
  if (!plan.columns || s.N == 0) return plan;
  const int64_t per_img = s.C * s.RS() * s.PQ();  // columns of one image, all groups
  const int64_t row_tiles = s.groups * ((s.CRSg() + 127) / 128);
  const int64_t min_cols = (kMinColumnBlocks + row_tiles - 1) / row_tiles * BN;
  const int64_t min_imgs = (min_cols + s.PQ() - 1) / std::max<int64_t>(s.PQ(), 1);
  int64_t chunk = std::max<int64_t>(kMaxColumnFloats / std::max<int64_t>(per_img, 1), min_imgs);
  chunk = std::min<int64_t>(s.N, std::max<int64_t>(1, chunk));
  chunk = std::min<int64_t>(chunk, std::max<int64_t>(1, (int64_t(1) << 31) / (s.PQ() + 1)));  // GEMM columns fit int
  const int64_t chunks = (s.N + chunk - 1) / chunk;
  plan.imgs_per_chunk = (s.N + chunks - 1) / chunks;  // even chunks
  plan.workspace_floats = plan.imgs_per_chunk * per_img;
  return plan;
}

void check_workspace(const ConvShape& s, ConvPass pass, int64_t have) {
  const int64_t need = conv2d_workspace_floats(s, pass);
  if (have < need)
    throw KernelError("conv2d: workspace too small (" + std::to_string(have) + " floats, need " +
                      std::to_string(need) + ")");
}

bool aligned(const void* p, int bytes) { return reinterpret_cast<std::uintptr_t>(p) % bytes == 0; }

}  // namespace
}  // namespace pya::cuda

#include "conv_winograd_cuda.h"  // uses implicit_gemm_kernel and the helpers above
#include "conv_fft_cuda.h"       // uses load() above

namespace pya::cuda {

int64_t conv2d_workspace_floats(const ConvShape& s, ConvPass pass) {
  if (pass == ConvPass::backward_bias) {
    const BiasPlan plan = bias_plan(s);
    return plan.splits > 1 ? s.K * plan.splits : 0;
  }
  if (fft::use_fft(s, pass)) {
    check_fft(s);
    return fft::plan(s).workspace_floats;
  }
  if (winograd::use_winograd(s)) {
    if (const char* why = winograd::unsupported(s))
      throw KernelError(std::string("conv2d: algorithm 'winograd' needs ") + why);
    return winograd_plan(s, pass).workspace_floats;
  }
  if (pass == ConvPass::backward_data) return data_plan(s).workspace_floats;
  if (pass != ConvPass::backward_filter || s.N == 0) return 0;
  const FilterPlan plan = filter_plan(s);
  return plan.slices > 1 ? plan.slices * s.K * s.CRSg() : 0;
}

void conv2d_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s, float* workspace,
                    int64_t workspace_floats, Stream stream) {
  (void)workspace;
  check_workspace(s, ConvPass::forward, workspace_floats);
  if (s.N == 0) return;
  if (winograd::use_winograd(s)) return winograd_conv(x, w, b, y, s, false, workspace, stream);
  ForwardProblem p{};
  p.x = x, p.w = w, p.bias = b, p.c = y;
  p.M = int(s.Kg()), p.Ncols = int(s.N * s.PQ()), p.Kdim = int(s.CRSg());
  p.C = int(s.C), p.H = int(s.H), p.W = int(s.W), p.K = int(s.K), p.Q = int(s.Q), p.PQ = int(s.PQ());
  p.Cg = int(s.Cg()), p.Kg = int(s.Kg()), p.R = int(s.R), p.S = int(s.S);
  p.stride = int(s.stride), p.pad = int(s.pad);
  p.div_rs = FastDiv(s.RS()), p.div_s = FastDiv(s.S), p.div_pq = FastDiv(s.PQ()), p.div_q = FastDiv(s.Q);
  const int mf = row_fragments_for_device(p.M, s.groups * ((p.Ncols + BN - 1) / BN));
  const int a_per = mf == 2 ? 4 : 2;  // the kernel's A_PER
  p.a_vector = p.Kdim % a_per == 0 && aligned(w, 4 * a_per);
  launch_implicit_gemm(p, s.groups, 1, p.Kdim, mf, stream);
}

void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s, float* workspace,
                          int64_t workspace_floats, Stream stream) {
  check_workspace(s, ConvPass::backward_data, workspace_floats);
  if (s.N == 0 || s.C == 0) return;
  if (s.Kg() == 0) {  // no filters: nothing reaches x
    PYA_CUDA_CHECK(cudaMemsetAsync(dx, 0, sizeof(float) * s.N * s.C * s.HW(), stream));
    return;
  }
  if (winograd::use_winograd(s)) return winograd_conv(dy, w, nullptr, dx, s, true, workspace, stream);
  const DataPlan plan = data_plan(s);
  if (plan.columns) {
    ColumnProblem p{};
    p.dy = dy, p.w = w, p.c = workspace;
    p.M = int(s.CRSg()), p.Kdim = int(s.Kg());
    p.K = int(s.K), p.PQ = int(s.PQ()), p.Kg = int(s.Kg()), p.CRS = int(s.CRSg());
    p.div_pq = FastDiv(s.PQ());
    for (int64_t img0 = 0; img0 < s.N; img0 += plan.imgs_per_chunk) {
      const int64_t imgs = std::min(plan.imgs_per_chunk, s.N - img0);
      p.img0 = int(img0), p.Ncols = int(imgs * s.PQ());
      launch_implicit_gemm(p, s.groups, 1, p.Kdim,
                           row_fragments_for_device(p.M, s.groups * ((p.Ncols + BN - 1) / BN)), stream);
      const int64_t n = imgs * s.C * s.HW();
      col2im_gather_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(
          workspace, dx, int(imgs), int(img0), int(s.C), int(s.H), int(s.W), int(s.Cg()), int(s.R), int(s.S),
          int(s.P), int(s.Q), int(s.stride), int(s.pad), int64_t(p.Ncols), FastDiv(s.W), FastDiv(s.HW()),
          FastDiv(s.C), FastDiv(s.Cg()));
      PYA_CHECK_LAUNCH("conv2d data-gradient col2im");
    }
    return;
  }
  DataProblem p{};
  p.dy = dy, p.w = w, p.c = dx;
  p.M = int(s.Cg()), p.Ncols = int(s.N * s.HW()), p.Kdim = int(s.Kg() * s.RS());
  p.C = int(s.C), p.H = int(s.H), p.W = int(s.W), p.K = int(s.K), p.P = int(s.P), p.Q = int(s.Q);
  p.PQ = int(s.PQ()), p.HWn = int(s.HW()), p.Cg = int(s.Cg()), p.Kg = int(s.Kg());
  p.R = int(s.R), p.S = int(s.S), p.RS = int(s.RS());
  p.CRS = int(s.CRSg()), p.pad = int(s.pad);
  p.div_rs = FastDiv(s.RS()), p.div_s = FastDiv(s.S), p.div_hw = FastDiv(s.HW()), p.div_w = FastDiv(s.W);
  launch_implicit_gemm(p, s.groups, 1, p.Kdim, row_fragments_for_device(p.M, s.groups * ((p.Ncols + BN - 1) / BN)),
                       stream);
}

void conv2d_backward_filter(const float* dy, const float* x, float* dw, const ConvShape& s, float* workspace,
                            int64_t workspace_floats, Stream stream) {
  check_workspace(s, ConvPass::backward_filter, workspace_floats);
  const int64_t n_dw = s.K * s.CRSg();
  if (n_dw == 0) return;
  if (s.N == 0) {
    PYA_CUDA_CHECK(cudaMemsetAsync(dw, 0, sizeof(float) * n_dw, stream));
    return;
  }
  if (fft::use_fft(s, ConvPass::backward_filter)) return fft_backward_filter(dy, x, dw, s, workspace, stream);
  if (winograd::use_winograd(s)) return winograd_backward_filter(dy, x, dw, s, workspace, stream);
  const FilterPlan plan = filter_plan(s);
  FilterProblem p{};
  p.dy = dy, p.x = x, p.c = plan.slices > 1 ? workspace : dw;
  p.M = int(s.Kg()), p.Ncols = int(s.CRSg()), p.Kdim = int(s.N * s.PQ());
  p.C = int(s.C), p.H = int(s.H), p.W = int(s.W), p.K = int(s.K), p.P = int(s.P), p.Q = int(s.Q);
  p.PQ = int(s.PQ()), p.Cg = int(s.Cg()), p.Kg = int(s.Kg()), p.CRS = int(s.CRSg()), p.stride = int(s.stride), p.pad = int(s.pad);
  p.div_rs = FastDiv(s.RS()), p.div_s = FastDiv(s.S), p.div_pq = FastDiv(s.PQ()), p.div_q = FastDiv(s.Q);
  launch_filter_gemm(p, s.groups, plan.slices, plan.k_per_slice, stream);
  if (plan.slices > 1) {
    sum_slices_kernel<<<grid_for(n_dw, kThreads), kThreads, 0, stream>>>(workspace, dw, n_dw, int(plan.slices));
    PYA_CHECK_LAUNCH("conv2d filter-gradient slice sum");
  }
}

void conv2d_backward_bias(const float* dy, float* db, const ConvShape& s, float* workspace, int64_t workspace_floats,
                          Stream stream) {
  check_workspace(s, ConvPass::backward_bias, workspace_floats);
  if (s.K == 0) return;
  if (s.N * s.PQ() == 0) {  // nothing to add (the kernel divides by PQ: a 0-wide dy reaches here from _C)
    PYA_CUDA_CHECK(cudaMemsetAsync(db, 0, sizeof(float) * s.K, stream));
    return;
  }
  const BiasPlan plan = bias_plan(s);
  const dim3 grid(unsigned(std::min(s.K, kMaxBiasBlocks)), unsigned(plan.splits));  // splits <= 1024
  bias_grad_kernel<<<grid, kThreads, 0, stream>>>(dy, plan.splits > 1 ? workspace : db, s.K, s.PQ(), s.N * s.PQ(),
                                                  plan.per_split);
  PYA_CHECK_LAUNCH("conv2d bias gradient");
  if (plan.splits > 1) {
    sum_slices_kernel<<<grid_for(s.K, kThreads), kThreads, 0, stream>>>(workspace, db, s.K, int(plan.splits));
    PYA_CHECK_LAUNCH("conv2d bias gradient split sum");
  }
}

}  // namespace pya::cuda
