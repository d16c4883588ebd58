// 2-D convolution (NCHW, float32, grouped, symmetric zero padding): forward,
// gradient w.r.t. the input, the filters and the bias, on both backends.
//
// Shapes: x (N, C, H, W), w (K, C/groups, R, S), b (K,), y (N, K, P, Q) with
// P = (H + 2*pad - R)/stride + 1 and Q likewise. The bindings validate shapes
// (bindings/bind_conv.cpp); the launchers trust them.
//
// Workspace: every launcher takes a caller-provided float workspace of at least
// conv2d_workspace_floats(shape, pass) floats of the SAME backend (the CPU and
// CUDA backends need different amounts; 0 is a valid size).
//
// Algorithm: ConvShape::algorithm picks how the CUDA backend computes a 3x3
// stride-1 convolution (conv_winograd.h): `automatic` lets it choose from the
// shape, `direct` forces the implicit GEMM, `winograd` forces Winograd
// F(2x2, 3x3) (the bindings refuse it for shapes it cannot do). `fft` forces the
// FFT filter gradient for stride-1 shapes whose padded planes fit 32x32
// (conv_fft.h); the forward and data-gradient passes then run what `automatic`
// picks, so one algorithm can be named for a whole backward. The CPU backend
// ignores it. The workspace size follows the algorithm, so ask with the same shape.
#pragma once
#include "common.h"

namespace pya {

enum class ConvAlgorithm { automatic, direct, winograd, fft };

struct ConvShape {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t K = 0, R = 0, S = 0;         // filters (each sees C/groups channels)
  int64_t P = 0, Q = 0;                // output rows and columns
  int64_t stride = 1, pad = 0, groups = 1;
  ConvAlgorithm algorithm = ConvAlgorithm::automatic;  // CUDA only (see above)

  PYA_HD int64_t Cg() const { return C / groups; }  // input channels per group
  PYA_HD int64_t Kg() const { return K / groups; }  // filters per group
  PYA_HD int64_t RS() const { return R * S; }
  PYA_HD int64_t CRSg() const { return Cg() * R * S; }  // length of one filter (GEMM reduction of the forward)
  PYA_HD int64_t HW() const { return H * W; }
  PYA_HD int64_t PQ() const { return P * Q; }
};

// floor((in + 2*pad - filter)/stride) + 1; callers check in + 2*pad >= filter first.
PYA_HD int64_t conv_out_size(int64_t in, int64_t filter, int64_t stride, int64_t pad) {
  return (in + 2 * pad - filter) / stride + 1;
}

// Which kernel a workspace is for.
enum class ConvPass { forward, backward_data, backward_filter, backward_bias };

// Division by a run-time constant with a multiply-high and a shift (Granlund and
// Montgomery), for 0 <= n < 2^31 and 1 <= d < 2^31. The GPU kernels decompose
// GEMM indices into (channel, row, column) this way every tile, where a real
// integer division would cost tens of instructions. The CUDA emulation
// (tests/conv_cuda_emulation) checks it against plain division on the CPU.
struct FastDiv {
  uint32_t d = 1, mul = 0, shift = 0;
  FastDiv() = default;
  explicit FastDiv(int64_t divisor) : d(static_cast<uint32_t>(divisor)) {
    while ((uint64_t(1) << shift) < d) ++shift;
    mul = static_cast<uint32_t>(((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d)) / d + 1);
  }
  PYA_HD uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
    uint32_t t = __umulhi(n, mul);
#else
    uint32_t t = static_cast<uint32_t>((uint64_t(n) * mul) >> 32);
#endif
    return (t + n) >> shift;
  }
  // n = q*d + r
  PYA_HD void divmod(uint32_t n, uint32_t& q, uint32_t& r) const {
    q = div(n);
    r = n - q * d;
  }
};

// The input pixel a filter tap reads: output (p, q), tap (r, s) -> input (h, w).
// May fall in the zero padding (outside [0,H) x [0,W)).
PYA_HD int64_t conv_in_coord(int64_t out, int64_t tap, int64_t stride, int64_t pad) { return out * stride - pad + tap; }

namespace cpu {
// Floats of workspace `pass` needs on the CPU (im2col columns for a chunk of images).
int64_t conv2d_workspace_floats(const ConvShape& s, ConvPass pass);
// y = conv(x, w) + b (b may be null).
void conv2d_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s, float* workspace,
                    int64_t workspace_floats, Stream stream);
// dx = gradient of sum(y * dy) w.r.t. x (overwritten).
void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s, float* workspace,
                          int64_t workspace_floats, Stream stream);
// dw = gradient w.r.t. w (overwritten). Deterministic: same inputs, same bits.
void conv2d_backward_filter(const float* dy, const float* x, float* dw, const ConvShape& s, float* workspace,
                            int64_t workspace_floats, Stream stream);
// db[k] = sum of dy over (n, p, q) (overwritten). Deterministic.
void conv2d_backward_bias(const float* dy, float* db, const ConvShape& s, float* workspace, int64_t workspace_floats,
                          Stream stream);
}  // namespace cpu

namespace cuda {
int64_t conv2d_workspace_floats(const ConvShape& s, ConvPass pass);
void conv2d_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s, float* workspace,
                    int64_t workspace_floats, Stream stream);
void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s, float* workspace,
                          int64_t workspace_floats, Stream stream);
void conv2d_backward_filter(const float* dy, const float* x, float* dw, const ConvShape& s, float* workspace,
                            int64_t workspace_floats, Stream stream);
void conv2d_backward_bias(const float* dy, float* db, const ConvShape& s, float* workspace, int64_t workspace_floats,
                          Stream stream);
}  // namespace cuda

}  // namespace pya
