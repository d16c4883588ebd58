// LRN: one thread per pixel (n, y, x) walks down the channels with the running
// window sum of lrn.h. Threads of a warp hold neighbouring pixels, so every
// channel read and write is coalesced; the re-reads of the leaving channel (and
// of the denominators in the backward) are a few planes back and hit in cache.
#include "cuda_check.h"
#include "lrn.h"

namespace pya::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void lrn_forward_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t N, int C, int64_t HW,
                                   int half, float alpha, float beta, float k) {
  int64_t pixels = N * HW;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < pixels; p += stride) {
    int64_t off = (p / HW) * C * HW + p % HW;
    lrn_forward_pixel(x + off, y + off, C, HW, half, alpha, beta, k);
  }
}

// The denominators are written and read back by the same thread, so no
// synchronisation is needed between the two passes.
__global__ void lrn_backward_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                    const float* __restrict__ y, float* __restrict__ dx, float* __restrict__ d,
                                    int64_t N, int C, int64_t HW, int half, float alpha, float beta, float k) {
  int64_t pixels = N * HW;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < pixels; p += stride) {
    int64_t off = (p / HW) * C * HW + p % HW;
    lrn_denominators(x + off, d + off, C, HW, half, alpha, k);
    lrn_backward_pixel(dy + off, x + off, y + off, d + off, dx + off, C, HW, half, alpha, beta);
  }
}

}  // namespace

void lrn_forward(const float* x, float* y, int64_t N, int C, int64_t HW, int size, float alpha, float beta, float k,
                 Stream stream) {
  int64_t pixels = N * HW;
  if (pixels == 0 || C == 0) return;
  lrn_forward_kernel<<<grid_for(pixels, kThreads), kThreads, 0, stream>>>(x, y, N, C, HW, size / 2, alpha, beta, k);
  PYA_CHECK_LAUNCH("lrn_forward");
}

void lrn_backward(const float* dy, const float* x, const float* y, float* dx, float* workspace, int64_t N, int C,
                  int64_t HW, int size, float alpha, float beta, float k, Stream stream) {
  int64_t pixels = N * HW;
  if (pixels == 0 || C == 0) return;
  lrn_backward_kernel<<<grid_for(pixels, kThreads), kThreads, 0, stream>>>(dy, x, y, dx, workspace, N, C, HW,
                                                                           size / 2, alpha, beta, k);
  PYA_CHECK_LAUNCH("lrn_backward");
}

}  // namespace pya::cuda
