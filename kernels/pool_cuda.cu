// Max-pooling: forward one thread per output, backward one thread per input
// (a gather, see pool.h). Consecutive threads take consecutive columns, so
// reads and writes are coalesced; the overlapping window reads hit in cache.
#include "cuda_check.h"
#include "pool.h"

namespace pya::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void max_pool_forward_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t planes,
                                        PoolGeometry g) {
  int64_t out = g.OH * g.OW, n = planes * out;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t p = i / out, o = i % out;
    const float* xp = x + p * g.H * g.W;
    y[i] = xp[pool_argmax(xp, g, o / g.OW, o % g.OW)];
  }
}

__global__ void max_pool_backward_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                         const float* __restrict__ y, float* __restrict__ dx, int64_t planes,
                                         PoolGeometry g) {
  int64_t in = g.H * g.W, out = g.OH * g.OW, n = planes * in;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t p = i / in, e = i % in;
    dx[i] = pool_input_grad(x + p * in, y + p * out, dy + p * out, g, e / g.W, e % g.W);
  }
}

}  // namespace

void max_pool_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int size, int stride,
                      Stream stream) {
  PoolGeometry g = pool_geometry(H, W, size, stride);
  int64_t n = planes * g.OH * g.OW;
  if (n == 0) return;
  max_pool_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, y, planes, g);
  PYA_CHECK_LAUNCH("max_pool_forward");
}

void max_pool_backward(const float* dy, const float* x, const float* y, float* dx, int64_t planes, int64_t H,
                       int64_t W, int size, int stride, Stream stream) {
  PoolGeometry g = pool_geometry(H, W, size, stride);
  int64_t n = planes * H * W;
  if (n == 0) return;
  max_pool_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(dy, x, y, dx, planes, g);
  PYA_CHECK_LAUNCH("max_pool_backward");
}

}  // namespace pya::cuda
