// Winograd F(2x2, 3x3) kernels and launchers (design, layout and selection: conv_winograd.h).
// Included ONLY by conv_cuda.cu, after its implicit-GEMM kernel, which the 16*groups GEMMs reuse
// through the two Problem structs below; tests/conv_cuda_emulation/make_emu.py inlines it there.
//
// The transform kernels are memory-bound: one thread per (channel, tile), tiles fastest, so a
// warp's 16 plane writes (or reads) are each 32 consecutive floats; the 4x4 input reads of
// neighbouring tiles overlap and come from L1/L2. All the arithmetic of the transforms is
// adds and multiplies by 1/2 (exact), written out so every element's rounding is fixed.
#pragma once
#include "conv_winograd.h"

namespace pya::cuda {
namespace {

// V[(xi*cin + c)*Tld + t] = (B^T d B)[xi] for t < T (this chunk's tiles: image img0 + t / tiles), d the
// 4x4 tile of in[img][c] at (2*tp - pad, 2*tq - pad), zero outside [0, H) x [0, W). pad may be negative.
__global__ void winograd_input_kernel(const float* __restrict__ in, float* __restrict__ V, int cin, int H, int W,
                                      int pad, int img0, int T, int Tld, FastDiv div_T, FastDiv div_tiles,
                                      FastDiv div_tq) {
  const int64_t total = int64_t(cin) * T;  // < kMaxChunkFloats = 2^27
  const int64_t grid_stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += grid_stride) {
    uint32_t c, t, img, tt, tp, tq;
    div_T.divmod(uint32_t(i), c, t);
    div_tiles.divmod(t, img, tt);
    div_tq.divmod(tt, tp, tq);
    const float* plane = in + (int64_t(img0) + img) * cin * H * W + int64_t(c) * H * W;
    const int h0 = 2 * int(tp) - pad, w0 = 2 * int(tq) - pad;
    float d[4][4];
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const int h = h0 + a;
      const bool row_in = h >= 0 && h < H;
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        const int w = w0 + b;
        d[a][b] = (row_in && w >= 0 && w < W) ? load(plane + h * W + w) : 0.f;
      }
    }
    float e[4][4];  // B^T d
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      e[0][b] = d[0][b] - d[2][b];
      e[1][b] = d[1][b] + d[2][b];
      e[2][b] = d[2][b] - d[1][b];
      e[3][b] = d[1][b] - d[3][b];
    }
    float* out = V + int64_t(c) * Tld + t;
    const int64_t plane_stride = int64_t(cin) * Tld;
#pragma unroll
    for (int a = 0; a < 4; ++a) {  // (B^T d) B
      out[(a * 4 + 0) * plane_stride] = e[a][0] - e[a][2];
      out[(a * 4 + 1) * plane_stride] = e[a][1] + e[a][2];
      out[(a * 4 + 2) * plane_stride] = e[a][2] - e[a][1];
      out[(a * 4 + 3) * plane_stride] = e[a][1] - e[a][3];
    }
  }
}

// U[xi*K*Cg + i] = (G f G^T)[xi] for i = (g*rows + m)*red + j (rows x red per group): the forward's
// f = w[g*Kg + m][j] (rows = Kg, red = Cg, so i is w's own filter index); the data gradient's (flip)
// f[r][s] = w[g*Kg + j][m][2 - r][2 - s] (rows = Cg, red = Kg).
__global__ void winograd_filter_kernel(const float* __restrict__ w, float* __restrict__ U, int n, int Cg, int Kg,
                                       bool flip, FastDiv div_red, FastDiv div_rows) {
  const int grid_stride = int(gridDim.x) * int(blockDim.x);
  for (int i = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x); i < n; i += grid_stride) {  // n = K*Cg
    float f[3][3];
    if (!flip) {
#pragma unroll
      for (int r = 0; r < 3; ++r)
#pragma unroll
        for (int s = 0; s < 3; ++s) f[r][s] = load(w + int64_t(i) * 9 + r * 3 + s);
    } else {
      uint32_t gm, j, g, m;
      div_red.divmod(uint32_t(i), gm, j);
      div_rows.divmod(gm, g, m);
      const float* src = w + (int64_t(g) * Kg + j) * Cg * 9 + int64_t(m) * 9;
#pragma unroll
      for (int r = 0; r < 3; ++r)
#pragma unroll
        for (int s = 0; s < 3; ++s) f[r][s] = load(src + (2 - r) * 3 + (2 - s));
    }
    float e[4][3];  // G f
#pragma unroll
    for (int s = 0; s < 3; ++s) {
      e[0][s] = f[0][s];
      e[1][s] = (f[0][s] + f[1][s] + f[2][s]) * 0.5f;
      e[2][s] = (f[0][s] - f[1][s] + f[2][s]) * 0.5f;
      e[3][s] = f[2][s];
    }
    float* out = U + i;
#pragma unroll
    for (int a = 0; a < 4; ++a) {  // (G f) G^T
      out[int64_t(a * 4 + 0) * n] = e[a][0];
      out[int64_t(a * 4 + 1) * n] = (e[a][0] + e[a][1] + e[a][2]) * 0.5f;
      out[int64_t(a * 4 + 2) * n] = (e[a][0] - e[a][1] + e[a][2]) * 0.5f;
      out[int64_t(a * 4 + 3) * n] = e[a][2];
    }
  }
}

// out[img0 + img][co][2*tp + a][2*tq + b] = (A^T M A)[a][b] + bias[co] (bias may be null) for the outputs
// inside H x W, M[xi] = Mw[(xi*cout + co)*Tld + t].
__global__ void winograd_output_kernel(const float* __restrict__ Mw, const float* __restrict__ bias,
                                       float* __restrict__ out, int cout, int H, int W, int img0, int T, int Tld,
                                       FastDiv div_T, FastDiv div_tiles, FastDiv div_tq) {
  const int64_t total = int64_t(cout) * T;
  const int64_t grid_stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t plane_stride = int64_t(cout) * Tld;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += grid_stride) {
    uint32_t co, t, img, tt, tp, tq;
    div_T.divmod(uint32_t(i), co, t);
    div_tiles.divmod(t, img, tt);
    div_tq.divmod(tt, tp, tq);
    const float* src = Mw + int64_t(co) * Tld + t;
    float m[4][4];
#pragma unroll
    for (int a = 0; a < 4; ++a)
#pragma unroll
      for (int b = 0; b < 4; ++b) m[a][b] = load(src + (a * 4 + b) * plane_stride);
    float e[2][4];  // A^T M
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      e[0][b] = m[0][b] + m[1][b] + m[2][b];
      e[1][b] = m[1][b] - m[2][b] - m[3][b];
    }
    const float add = bias ? load(bias + co) : 0.f;
    float* dst = out + (int64_t(img0) + img) * cout * H * W + int64_t(co) * H * W;
    const int h0 = 2 * int(tp), w0 = 2 * int(tq);
#pragma unroll
    for (int a = 0; a < 2; ++a) {  // (A^T M) A
      if (h0 + a >= H) break;
      dst[(h0 + a) * W + w0] = (e[a][0] + e[a][1] + e[a][2]) + add;
      if (w0 + 1 < W) dst[(h0 + a) * W + w0 + 1] = (e[a][1] - e[a][2] - e[a][3]) + add;
    }
  }
}

// D[(xi*K + k)*Tld + t] = (A e A^T)[xi], e the 2x2 tile of dy[img0 + img][k] at (2*tp, 2*tq), zero beyond P x Q.
__global__ void winograd_dy_kernel(const float* __restrict__ dy, float* __restrict__ D, int K, int P, int Q, int img0,
                                   int T, int Tld, FastDiv div_T, FastDiv div_tiles, FastDiv div_tq) {
  const int64_t total = int64_t(K) * T;
  const int64_t grid_stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t plane_stride = int64_t(K) * Tld;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += grid_stride) {
    uint32_t k, t, img, tt, tp, tq;
    div_T.divmod(uint32_t(i), k, t);
    div_tiles.divmod(t, img, tt);
    div_tq.divmod(tt, tp, tq);
    const float* plane = dy + (int64_t(img0) + img) * K * P * Q + int64_t(k) * P * Q;
    const int p0 = 2 * int(tp), q0 = 2 * int(tq);
    float e[2][2];
#pragma unroll
    for (int a = 0; a < 2; ++a)
#pragma unroll
      for (int b = 0; b < 2; ++b) e[a][b] = (p0 + a < P && q0 + b < Q) ? load(plane + (p0 + a) * Q + q0 + b) : 0.f;
    float f[4][2];  // A e, A = [1 0; 1 1; 1 -1; 0 -1]
#pragma unroll
    for (int b = 0; b < 2; ++b) {
      f[0][b] = e[0][b];
      f[1][b] = e[0][b] + e[1][b];
      f[2][b] = e[0][b] - e[1][b];
      f[3][b] = -e[1][b];
    }
    float* dst = D + int64_t(k) * Tld + t;
#pragma unroll
    for (int a = 0; a < 4; ++a) {  // (A e) A^T
      dst[(a * 4 + 0) * plane_stride] = f[a][0];
      dst[(a * 4 + 1) * plane_stride] = f[a][0] + f[a][1];
      dst[(a * 4 + 2) * plane_stride] = f[a][0] - f[a][1];
      dst[(a * 4 + 3) * plane_stride] = -f[a][1];
    }
  }
}

// Filter gradient, per element i of one (K x Cg) plane: Dhat[xi] = running sum (chunks before; none for the
// first) + the slices' partial sums, added in slice order; then either the running sum is stored (more
// chunks follow) or dw[i][r][s] = (G^T Dhat G)[r][s] is written.
__global__ void winograd_filter_grad_kernel(const float* __restrict__ partial, float* __restrict__ acc,
                                            float* __restrict__ dw, int n, int slices, bool first, bool last) {
  const int grid_stride = int(gridDim.x) * int(blockDim.x);
  for (int i = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x); i < n; i += grid_stride) {
    // Slices outside, the 16 points inside (unrolled): each slice's 16 loads are in flight together, one round
    // trip per slice. Points outside, as this was, made a runtime loop per point whose loads the compiler could
    // not overlap with the next point's: 16 x slices/4 round trips in turn. Each point still adds the running
    // sum, then slice 0, 1, ...: the same bits.
    float h[4][4];
#pragma unroll
    for (int xi = 0; xi < 16; ++xi) h[xi / 4][xi % 4] = first ? 0.f : acc[int64_t(xi) * n + i];
    for (int s = 0; s < slices; ++s) {
#pragma unroll
      for (int xi = 0; xi < 16; ++xi) h[xi / 4][xi % 4] += partial[(int64_t(s) * 16 + xi) * n + i];
    }
    if (!last) {
#pragma unroll
      for (int xi = 0; xi < 16; ++xi) acc[int64_t(xi) * n + i] = h[xi / 4][xi % 4];
      continue;
    }
    float e[3][4];  // G^T Dhat, G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1]
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      e[0][b] = h[0][b] + (h[1][b] + h[2][b]) * 0.5f;
      e[1][b] = (h[1][b] - h[2][b]) * 0.5f;
      e[2][b] = (h[1][b] + h[2][b]) * 0.5f + h[3][b];
    }
    float* dst = dw + int64_t(i) * 9;
#pragma unroll
    for (int r = 0; r < 3; ++r) {  // (G^T Dhat) G
      dst[r * 3 + 0] = e[r][0] + (e[r][1] + e[r][2]) * 0.5f;
      dst[r * 3 + 1] = (e[r][1] - e[r][2]) * 0.5f;
      dst[r * 3 + 2] = (e[r][1] + e[r][2]) * 0.5f + e[r][3];
    }
  }
}

// The forward / data-gradient GEMMs, z = xi*groups + g: C[z] (M x Ncols) = A[z] (M x Kdim) * B[z] (Kdim x
// Ncols) with A = U (rows of Kdim floats), B = V and C = M (rows of Tld floats): consecutive columns
// are consecutive addresses, so B loads and C stores are coalesced.
struct WinogradGemmProblem {
  const float* u;
  const float* v;
  float* c;
  int M, Ncols, Kdim;
  int Tld;
  bool a_vector;  // U rows 16-byte aligned: float4/float2 loads

  struct ARow { const float* p; bool ok; };
  struct BCol { const float* p; bool ok; };

  __device__ ARow a_row(int z, int m) const { return {u + (int64_t(z) * M + m) * Kdim, m < M}; }

  template <int A_PER>
  __device__ void load_a(const ARow& a, int k, int kend, float (&r)[A_PER]) const {
    if (a_vector && a.ok && k + A_PER <= kend) {
      if constexpr (A_PER == 4) {
        float4 t = __ldg(reinterpret_cast<const float4*>(a.p + k));
        r[0] = t.x, r[1] = t.y, r[2] = t.z, r[3] = t.w;
      } else {
        float2 t = __ldg(reinterpret_cast<const float2*>(a.p + k));
        r[0] = t.x, r[1] = t.y;
      }
      return;
    }
#pragma unroll
    for (int j = 0; j < A_PER; ++j) r[j] = (a.ok && k + j < kend) ? load(a.p + k + j) : 0.f;
  }

  __device__ BCol b_col(int z, int n) const { return {v + int64_t(z) * Kdim * Tld + n, n < Ncols}; }

  __device__ void load_b(const BCol& b, int k, int kend, float (&r)[4]) const {
#pragma unroll
    for (int j = 0; j < 4; ++j) r[j] = (b.ok && k + j < kend) ? load(b.p + (k + j) * Tld) : 0.f;  // < 2^27
  }

  __device__ int64_t c_row(int z, int /*slice*/, int m) const { return (int64_t(z) * M + m) * Tld; }
  __device__ int c_col(int n) const { return n; }
  __device__ float c_bias(int, int) const { return 0.f; }
};

// The filter-gradient GEMMs, z = xi*groups + g: partial[slice][z] (Kg x Cg) = D[z] (Kg x T) * V[z]^T
// (T x Cg) over the slice's tiles. Both operands are read along their rows (the reduction), 4 (or 2)
// consecutive floats per thread as one aligned vector load: Tld and the slice bounds are multiples of 4.
struct WinogradFilterProblem {
  const float* d;
  const float* v;
  float* c;  // the partial sums
  int M, Ncols, Kdim;
  int Tld, Z;  // Z = 16*groups: planes per slice
  bool vector;

  // Row offsets as 32-bit ints (planes hold < 2^27 floats): 64-bit pointers here made the 128-row
  // variant spill under the 128-register budget of two blocks per SM.
  struct ARow { int off; bool ok; };
  struct BCol { int off; bool ok; };

  __device__ ARow a_row(int z, int m) const { return {(z * M + m) * Tld, m < M}; }

  template <int A_PER>
  __device__ void load_a(const ARow& a, int k, int kend, float (&r)[A_PER]) const {
    const float* p = d + (a.off + k);
    if (vector && a.ok && k + A_PER <= kend) {
      if constexpr (A_PER == 4) {
        float4 t = __ldg(reinterpret_cast<const float4*>(p));
        r[0] = t.x, r[1] = t.y, r[2] = t.z, r[3] = t.w;
      } else {
        float2 t = __ldg(reinterpret_cast<const float2*>(p));
        r[0] = t.x, r[1] = t.y;
      }
      return;
    }
#pragma unroll
    for (int j = 0; j < A_PER; ++j) r[j] = (a.ok && k + j < kend) ? load(p + j) : 0.f;
  }

  __device__ BCol b_col(int z, int n) const { return {(z * Ncols + n) * Tld, n < Ncols}; }

  __device__ void load_b(const BCol& b, int k, int kend, float (&r)[4]) const {
    const float* p = v + (b.off + k);
    if (vector && b.ok && k + 4 <= kend) {
      float4 t = __ldg(reinterpret_cast<const float4*>(p));
      r[0] = t.x, r[1] = t.y, r[2] = t.z, r[3] = t.w;
      return;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) r[j] = (b.ok && k + j < kend) ? load(p + j) : 0.f;
  }

  __device__ int64_t c_row(int z, int slice, int m) const { return ((int64_t(slice) * Z + z) * M + m) * Ncols; }
  __device__ int c_col(int n) const { return n; }
  __device__ float c_bias(int, int) const { return 0.f; }
};

void check_winograd(const ConvShape& s) {
  if (const char* why = winograd::unsupported(s))
    throw KernelError(std::string("conv2d: algorithm 'winograd' needs ") + why);
}

}  // namespace

// Winograd filter gradient: blocks over all slices (from the shape alone, like kTargetBlocks). Measured on
// an H100 at batch 128 (conv3 / conv4 / conv5 wgrad, ms): 512 -> 0.82 / 1.08 / 0.48, 768 -> 0.665 / 0.875 /
// 0.495, 1024 -> 0.675 / 0.94 / 0.50. Slices deep enough to amortise a block's start, and about three
// waves of two blocks per SM on 132 SMs.
constexpr int kWinogradTargetBlocks = 768;

winograd::Plan winograd_plan(const ConvShape& s, ConvPass pass) {
  using winograd::round4;
  winograd::Plan p;
  if (s.N == 0 || winograd::unsupported(s)) return p;
  const bool data = pass == ConvPass::backward_data;
  p.out_rows = data ? s.H : s.P;
  p.out_cols = data ? s.W : s.Q;
  p.tiles_q = (p.out_cols + 1) / 2;
  p.tiles = winograd::tiles_of(p.out_rows, p.out_cols);
  p.cin = data ? s.K : s.C;  // the filter gradient transforms x (C channels) and dy (K), like the forward
  p.cout = data ? s.C : s.K;
  const int64_t per_tile = 16 * (p.cin + p.cout);
  int64_t imgs = std::max<int64_t>(1, winograd::kMaxChunkFloats / per_tile / p.tiles);
  while (imgs > 1 && per_tile * round4(imgs * p.tiles) > winograd::kMaxChunkFloats) --imgs;
  imgs = std::min(imgs, s.N);
  p.chunks = (s.N + imgs - 1) / imgs;
  p.imgs_per_chunk = (s.N + p.chunks - 1) / p.chunks;  // even chunks
  p.T = p.imgs_per_chunk * p.tiles;
  p.Tld = round4(p.T);
  const int64_t n_hat = 16 * s.K * s.Cg();  // U, or one slice of the filter gradient's partial sums
  if (pass != ConvPass::backward_filter) {
    p.u = 0;
    p.v = n_hat;
    p.m = p.v + 16 * p.cin * p.Tld;
    p.workspace_floats = p.m + 16 * p.cout * p.Tld;
    return p;
  }
  p.v = 0;
  p.m = 16 * s.C * p.Tld;
  p.partial = p.m + 16 * s.K * p.Tld;
  // Like filter_plan: aim for kWinogradTargetBlocks blocks over all slices, each slice >= kMinSliceDepth tiles
  // deep; and the partial sums no bigger than a chunk.
  const int mf = row_fragments(s.Kg());
  const int64_t Z = 16 * s.groups, bm = 64 * mf, bn = 64 * col_fragments(s.Cg(), mf);
  const int64_t blocks_per_slice = Z * ((s.Kg() + bm - 1) / bm) * ((s.Cg() + bn - 1) / bn);
  int64_t slices = (kWinogradTargetBlocks + blocks_per_slice - 1) / blocks_per_slice;
  slices = std::min<int64_t>({slices, kMaxSlices, (p.T + kMinSliceDepth - 1) / kMinSliceDepth, 65535 / Z,
                              winograd::kMaxChunkFloats / n_hat});
  slices = std::max<int64_t>(slices, 1);
  p.k_per_slice = ((p.T + slices - 1) / slices + BK - 1) / BK * BK;
  p.slices = std::max<int64_t>(1, (p.T + p.k_per_slice - 1) / p.k_per_slice);
  p.acc = p.partial + p.slices * n_hat;
  p.workspace_floats = p.acc + (p.chunks > 1 ? n_hat : 0);
  return p;
}

namespace {

// Forward (data = false): y = conv(x, w) + b. Data gradient (data = true): dx = conv(dy, flipped w^T) with
// padding 2 - pad. `in` is x or dy, `out` y or dx.
void winograd_conv(const float* in, const float* w, const float* bias, float* out, const ConvShape& s, bool data,
                   float* ws, Stream stream) {
  check_winograd(s);
  const winograd::Plan plan = winograd_plan(s, data ? ConvPass::backward_data : ConvPass::forward);
  const int64_t rows = data ? s.Cg() : s.Kg(), red = data ? s.Kg() : s.Cg();  // GEMM rows, reduction
  const int64_t in_rows = data ? s.P : s.H, in_cols = data ? s.Q : s.W;
  const int pad = int(data ? 2 - s.pad : s.pad);
  const int64_t Z = 16 * s.groups, n_filter = s.K * s.Cg();
  float* U = ws + plan.u;
  float* V = ws + plan.v;
  float* Mw = ws + plan.m;
  winograd_filter_kernel<<<grid_for(n_filter, kThreads), kThreads, 0, stream>>>(
      w, U, int(n_filter), int(s.Cg()), int(s.Kg()), data, FastDiv(red), FastDiv(rows));
  PYA_CHECK_LAUNCH("conv2d Winograd filter transform");
  const FastDiv div_tiles(plan.tiles), div_tq(plan.tiles_q);
  for (int64_t img0 = 0; img0 < s.N; img0 += plan.imgs_per_chunk) {
    const int64_t T = std::min(plan.imgs_per_chunk, s.N - img0) * plan.tiles;
    const FastDiv div_T(T);
    winograd_input_kernel<<<grid_for(plan.cin * T, kThreads), kThreads, 0, stream>>>(
        in, V, int(plan.cin), int(in_rows), int(in_cols), pad, int(img0), int(T), int(plan.Tld), div_T, div_tiles,
        div_tq);
    PYA_CHECK_LAUNCH("conv2d Winograd input transform");
    WinogradGemmProblem p{};
    p.u = U, p.v = V, p.c = Mw;
    p.M = int(rows), p.Ncols = int(T), p.Kdim = int(red), p.Tld = int(plan.Tld);
    const int mf = row_fragments_for_device(p.M, Z * ((T + BN - 1) / BN));
    const int a_per = mf == 2 ? 4 : 2;  // the kernel's A_PER
    p.a_vector = red % a_per == 0 && aligned(U, 4 * a_per);
    launch_implicit_gemm(p, Z, 1, p.Kdim, mf, stream);
    winograd_output_kernel<<<grid_for(plan.cout * T, kThreads), kThreads, 0, stream>>>(
        Mw, bias, out, int(plan.cout), int(plan.out_rows), int(plan.out_cols), int(img0), int(T), int(plan.Tld),
        div_T, div_tiles, div_tq);
    PYA_CHECK_LAUNCH("conv2d Winograd output transform");
  }
}

void winograd_backward_filter(const float* dy, const float* x, float* dw, const ConvShape& s, float* ws,
                              Stream stream) {
  check_winograd(s);
  const winograd::Plan plan = winograd_plan(s, ConvPass::backward_filter);
  const int64_t Z = 16 * s.groups, n = s.K * s.Cg();
  float* V = ws + plan.v;
  float* D = ws + plan.m;
  float* partial = ws + plan.partial;
  float* acc = ws + plan.acc;
  const FastDiv div_tiles(plan.tiles), div_tq(plan.tiles_q);
  for (int64_t chunk = 0; chunk < plan.chunks; ++chunk) {
    const int64_t img0 = chunk * plan.imgs_per_chunk;
    const int64_t T = std::min(plan.imgs_per_chunk, s.N - img0) * plan.tiles;
    const FastDiv div_T(T);
    winograd_input_kernel<<<grid_for(s.C * T, kThreads), kThreads, 0, stream>>>(
        x, V, int(s.C), int(s.H), int(s.W), int(s.pad), int(img0), int(T), int(plan.Tld), div_T, div_tiles, div_tq);
    PYA_CHECK_LAUNCH("conv2d Winograd input transform");
    winograd_dy_kernel<<<grid_for(s.K * T, kThreads), kThreads, 0, stream>>>(
        dy, D, int(s.K), int(s.P), int(s.Q), int(img0), int(T), int(plan.Tld), div_T, div_tiles, div_tq);
    PYA_CHECK_LAUNCH("conv2d Winograd dy transform");
    WinogradFilterProblem p{};
    p.d = D, p.v = V, p.c = partial;
    p.M = int(s.Kg()), p.Ncols = int(s.Cg()), p.Kdim = int(T), p.Tld = int(plan.Tld), p.Z = int(Z);
    p.vector = aligned(V, 16) && aligned(D, 16);
    // The last chunk may be shorter: its trailing slices are empty and write zeros.
    launch_filter_gemm(p, Z, plan.slices, plan.k_per_slice, stream);
    winograd_filter_grad_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(
        partial, acc, dw, int(n), int(plan.slices), chunk == 0, chunk == plan.chunks - 1);
    PYA_CHECK_LAUNCH("conv2d Winograd filter-gradient reduction");
  }
}

}  // namespace
}  // namespace pya::cuda
