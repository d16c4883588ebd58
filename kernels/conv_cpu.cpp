// CPU convolution: im2col / col2im into the caller's workspace, then our blocked
// SGEMM (gemm_cpu.h), a chunk of images at a time so the workspace stays
// bounded. Per group g and chunk of nb images the GEMMs are
//   forward:          Y_g  (Kg x nb*PQ)   = W_g   (Kg x CgRS)   * col  (CgRS x nb*PQ)
//   backward_data:    dcol (CgRS x nb*PQ) = W_g^T (CgRS x Kg)   * dY_g (Kg x nb*PQ), then col2im
//   backward_filter:  dW_g (Kg x CgRS)   += dY_g  (Kg x nb*PQ)  * col^T (nb*PQ x CgRS)
// Batching images into one GEMM keeps the GEMM wide even for the 4x4..16x16
// maps of small presets; Y_g / dY_g are staged in the workspace because their
// columns are not evenly strided in NCHW.
//
// Determinism: chunking depends only on the shape, every output element of a
// GEMM is summed by one thread in a fixed order, and col2im gives each (image,
// channel) plane to one thread; so all results are independent of the thread
// count and bit-identical from run to run.
#include <algorithm>
#include <cstring>

#include "conv.h"
#include "gemm_cpu.h"

namespace pya::cpu {
namespace {

// Workspace for one chunk: im2col columns (CgRS x nb*PQ) plus staged Y/dY (Kg x nb*PQ).
constexpr int64_t kWorkspaceBudgetFloats = int64_t(1) << 22;  // 16 MiB

int64_t chunk_images(const ConvShape& s) {
  const int64_t per_image = (s.CRSg() + s.Kg()) * s.PQ();
  return std::max<int64_t>(1, std::min<int64_t>(s.N, kWorkspaceBudgetFloats / std::max<int64_t>(per_image, 1)));
}

// Output positions o in [0, out) whose input coordinate o*stride - pad + tap lies in [0, in).
void valid_range(int64_t out, int64_t in, int64_t tap, int64_t stride, int64_t pad, int64_t& lo, int64_t& hi) {
  const int64_t first = pad - tap;  // smallest o*stride that is in range
  lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int64_t last = in - 1 + pad - tap;  // largest o*stride in range
  hi = last < 0 ? 0 : std::min(out, last / stride + 1);
  if (hi < lo) hi = lo;
}

// col[(c*R + r)*S + s][i*PQ + p*Q + q] = x[n0+i, g*Cg + c, p*st - pad + r, q*st - pad + s] (0 in the padding).
void im2col(const float* x, const ConvShape& s, int64_t n0, int64_t nb, int64_t g, float* col) {
  const int64_t rows = s.CRSg(), PQ = s.PQ(), ld = nb * PQ;
  const FastDiv div_rs(s.RS()), div_s(s.S);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t i = 0; i < nb; ++i) {
      uint32_t c, rs, r, t;
      div_rs.divmod(static_cast<uint32_t>(row), c, rs);
      div_s.divmod(rs, r, t);
      const float* plane = x + ((n0 + i) * s.C + g * s.Cg() + c) * s.HW();
      float* dst = col + row * ld + i * PQ;
      int64_t q_lo, q_hi;
      valid_range(s.Q, s.W, t, s.stride, s.pad, q_lo, q_hi);
      for (int64_t p = 0; p < s.P; ++p, dst += s.Q) {
        const int64_t h = conv_in_coord(p, r, s.stride, s.pad);
        if (h < 0 || h >= s.H || q_lo >= q_hi) {
          std::memset(dst, 0, sizeof(float) * s.Q);
          continue;
        }
        // Index arithmetic, not a pointer to before the row: w0 is negative in the padding.
        const float* src = plane + h * s.W;
        const int64_t w0 = conv_in_coord(0, t, s.stride, s.pad);
        for (int64_t q = 0; q < q_lo; ++q) dst[q] = 0.f;
        if (s.stride == 1) {
          for (int64_t q = q_lo; q < q_hi; ++q) dst[q] = src[w0 + q];
        } else {
          for (int64_t q = q_lo; q < q_hi; ++q) dst[q] = src[w0 + q * s.stride];
        }
        for (int64_t q = q_hi; q < s.Q; ++q) dst[q] = 0.f;
      }
    }
  }
}

// dx[n0+i, g*Cg + c] = sum over (r, s, p, q) of dcol scattered back (the adjoint of im2col).
void col2im(const float* col, const ConvShape& s, int64_t n0, int64_t nb, int64_t g, float* dx) {
  const int64_t Cg = s.Cg(), PQ = s.PQ(), ld = nb * PQ;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < nb; ++i) {
    for (int64_t c = 0; c < Cg; ++c) {
      float* plane = dx + ((n0 + i) * s.C + g * Cg + c) * s.HW();
      std::memset(plane, 0, sizeof(float) * s.HW());
      for (int64_t r = 0; r < s.R; ++r) {
        for (int64_t t = 0; t < s.S; ++t) {
          const float* src = col + ((c * s.R + r) * s.S + t) * ld + i * PQ;
          int64_t q_lo, q_hi;
          valid_range(s.Q, s.W, t, s.stride, s.pad, q_lo, q_hi);
          for (int64_t p = 0; p < s.P; ++p) {
            const int64_t h = conv_in_coord(p, r, s.stride, s.pad);
            if (h < 0 || h >= s.H) continue;
            float* dst = plane + h * s.W;
            const int64_t w0 = conv_in_coord(0, t, s.stride, s.pad);
            const float* row = src + p * s.Q;
            for (int64_t q = q_lo; q < q_hi; ++q) dst[w0 + q * s.stride] += row[q];
          }
        }
      }
    }
  }
}

// stage[k][i*PQ + pq] = t[n0+i, g*Kg + k, pq] (to_stage) or the reverse, plus bias.
void copy_group_maps(const ConvShape& s, int64_t n0, int64_t nb, int64_t g, const float* from, float* to,
                     bool to_stage, const float* bias) {
  const int64_t Kg = s.Kg(), PQ = s.PQ(), ld = nb * PQ;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < nb; ++i) {
    for (int64_t k = 0; k < Kg; ++k) {
      const int64_t staged = k * ld + i * PQ, tensor = ((n0 + i) * s.K + g * Kg + k) * PQ;
      if (to_stage) {
        std::memcpy(to + staged, from + tensor, sizeof(float) * PQ);
      } else {
        const float add = bias ? bias[g * Kg + k] : 0.f;
        for (int64_t j = 0; j < PQ; ++j) to[tensor + j] = from[staged + j] + add;
      }
    }
  }
}

void check_workspace(const ConvShape& s, ConvPass pass, int64_t have) {
  if (have < conv2d_workspace_floats(s, pass))
    throw KernelError("conv2d: workspace too small (" + std::to_string(have) + " floats, need " +
                      std::to_string(conv2d_workspace_floats(s, pass)) + ")");
}

}  // namespace

int64_t conv2d_workspace_floats(const ConvShape& s, ConvPass pass) {
  if (pass == ConvPass::backward_bias || s.N == 0) return 0;
  return (s.CRSg() + s.Kg()) * chunk_images(s) * s.PQ();
}

void conv2d_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s, float* workspace,
                    int64_t workspace_floats, Stream) {
  check_workspace(s, ConvPass::forward, workspace_floats);
  const int64_t nb_max = chunk_images(s), CRS = s.CRSg(), Kg = s.Kg();
  for (int64_t n0 = 0; n0 < s.N; n0 += nb_max) {
    const int64_t nb = std::min(nb_max, s.N - n0), ld = nb * s.PQ();
    float* col = workspace;
    float* stage = workspace + CRS * ld;
    for (int64_t g = 0; g < s.groups; ++g) {
      im2col(x, s, n0, nb, g, col);
      sgemm(Kg, ld, CRS, w + g * Kg * CRS, CRS, 1, col, ld, 1, stage, ld, false);
      copy_group_maps(s, n0, nb, g, stage, y, false, b);
    }
  }
}

void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s, float* workspace,
                          int64_t workspace_floats, Stream) {
  check_workspace(s, ConvPass::backward_data, workspace_floats);
  const int64_t nb_max = chunk_images(s), CRS = s.CRSg(), Kg = s.Kg();
  for (int64_t n0 = 0; n0 < s.N; n0 += nb_max) {
    const int64_t nb = std::min(nb_max, s.N - n0), ld = nb * s.PQ();
    float* col = workspace;
    float* stage = workspace + CRS * ld;
    for (int64_t g = 0; g < s.groups; ++g) {
      copy_group_maps(s, n0, nb, g, dy, stage, true, nullptr);
      sgemm(CRS, ld, Kg, w + g * Kg * CRS, 1, CRS, stage, ld, 1, col, ld, false);
      col2im(col, s, n0, nb, g, dx);
    }
  }
}

void conv2d_backward_filter(const float* dy, const float* x, float* dw, const ConvShape& s, float* workspace,
                            int64_t workspace_floats, Stream) {
  check_workspace(s, ConvPass::backward_filter, workspace_floats);
  const int64_t nb_max = chunk_images(s), CRS = s.CRSg(), Kg = s.Kg();
  if (s.N == 0) std::memset(dw, 0, sizeof(float) * s.K * CRS);
  for (int64_t n0 = 0; n0 < s.N; n0 += nb_max) {
    const int64_t nb = std::min(nb_max, s.N - n0), ld = nb * s.PQ();
    float* col = workspace;
    float* stage = workspace + CRS * ld;
    for (int64_t g = 0; g < s.groups; ++g) {
      im2col(x, s, n0, nb, g, col);
      copy_group_maps(s, n0, nb, g, dy, stage, true, nullptr);
      sgemm(Kg, CRS, ld, stage, ld, 1, col, 1, ld, dw + g * Kg * CRS, CRS, n0 > 0);
    }
  }
}

void conv2d_backward_bias(const float* dy, float* db, const ConvShape& s, float*, int64_t, Stream) {
  const int64_t PQ = s.PQ();
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < s.K; ++k) {
    double sum = 0;  // exact enough that the order matters little; the order is fixed anyway
    for (int64_t n = 0; n < s.N; ++n) {
      const float* plane = dy + (n * s.K + k) * PQ;
      for (int64_t j = 0; j < PQ; ++j) sum += plane[j];
    }
    db[k] = static_cast<float>(sum);
  }
}

}  // namespace pya::cpu
