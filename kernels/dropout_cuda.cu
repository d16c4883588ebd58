// Dropout: each thread draws one Philox call and handles the four consecutive
// elements it covers, with 16-byte loads/stores when the pointers allow.
#include "cuda_check.h"
#include "dropout.h"

namespace pya::cuda {
namespace {

constexpr int kThreads = 256;

template <bool kVector>
__global__ void dropout_forward_kernel(const float* __restrict__ x, float* __restrict__ y, uint8_t* __restrict__ mask,
                                       int64_t n, uint64_t seed, uint32_t drop_threshold, float scale) {
  int64_t groups = (n + 3) / 4;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += stride) {
    Philox4x32 r = random_words4(seed, kDropoutSubsequence, static_cast<uint64_t>(g));
    int64_t i0 = 4 * g;
    if (kVector && i0 + 4 <= n) {
      float4 v = reinterpret_cast<const float4*>(x)[g];
      uchar4 m;
      m.x = dropout_keep(r.v[0], drop_threshold);
      m.y = dropout_keep(r.v[1], drop_threshold);
      m.z = dropout_keep(r.v[2], drop_threshold);
      m.w = dropout_keep(r.v[3], drop_threshold);
      v.x = dropout_apply(v.x, m.x, scale);
      v.y = dropout_apply(v.y, m.y, scale);
      v.z = dropout_apply(v.z, m.z, scale);
      v.w = dropout_apply(v.w, m.w, scale);
      reinterpret_cast<float4*>(y)[g] = v;
      reinterpret_cast<uchar4*>(mask)[g] = m;
    } else {
      for (int lane = 0; lane < 4 && i0 + lane < n; ++lane) {
        uint8_t keep = dropout_keep(r.v[lane], drop_threshold);
        mask[i0 + lane] = keep;
        y[i0 + lane] = dropout_apply(x[i0 + lane], keep, scale);
      }
    }
  }
}

template <bool kVector>
__global__ void dropout_backward_kernel(const float* __restrict__ dy, const uint8_t* __restrict__ mask,
                                        float* __restrict__ dx, int64_t n, float scale) {
  int64_t groups = (n + 3) / 4;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += stride) {
    int64_t i0 = 4 * g;
    if (kVector && i0 + 4 <= n) {
      float4 v = reinterpret_cast<const float4*>(dy)[g];
      uchar4 m = reinterpret_cast<const uchar4*>(mask)[g];
      v.x = dropout_apply(v.x, m.x, scale);
      v.y = dropout_apply(v.y, m.y, scale);
      v.z = dropout_apply(v.z, m.z, scale);
      v.w = dropout_apply(v.w, m.w, scale);
      reinterpret_cast<float4*>(dx)[g] = v;
    } else {
      for (int lane = 0; lane < 4 && i0 + lane < n; ++lane)
        dx[i0 + lane] = dropout_apply(dy[i0 + lane], mask[i0 + lane], scale);
    }
  }
}

bool aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace

void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, uint64_t seed, uint32_t drop_threshold,
                     float scale, Stream stream) {
  if (n == 0) return;
  unsigned int blocks = grid_for((n + 3) / 4, kThreads);
  // Views into larger buffers may be offset: vector accesses only when aligned.
  if (aligned(x, 16) && aligned(y, 16) && aligned(mask, 4))
    dropout_forward_kernel<true><<<blocks, kThreads, 0, stream>>>(x, y, mask, n, seed, drop_threshold, scale);
  else
    dropout_forward_kernel<false><<<blocks, kThreads, 0, stream>>>(x, y, mask, n, seed, drop_threshold, scale);
  PYA_CHECK_LAUNCH("dropout_forward");
}

void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float scale, Stream stream) {
  if (n == 0) return;
  unsigned int blocks = grid_for((n + 3) / 4, kThreads);
  if (aligned(dy, 16) && aligned(dx, 16) && aligned(mask, 4))
    dropout_backward_kernel<true><<<blocks, kThreads, 0, stream>>>(dy, mask, dx, n, scale);
  else
    dropout_backward_kernel<false><<<blocks, kThreads, 0, stream>>>(dy, mask, dx, n, scale);
  PYA_CHECK_LAUNCH("dropout_backward");
}

}  // namespace pya::cuda
