// One thread per output value, grid-stride. Consecutive threads write consecutive output columns
// (coalesced); the uint8 reads are strided by the 3 channels, which is cheap next to the float writes.
#include "augment.h"
#include "cuda_check.h"

namespace pya::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void augment_kernel(const uint8_t* __restrict__ images, int64_t height, int64_t width,
                               const float* __restrict__ mean_image, const int64_t* __restrict__ index,
                               const int32_t* __restrict__ offsets, const uint8_t* __restrict__ flips,
                               const float* __restrict__ lighting, float* __restrict__ out, int64_t total,
                               int64_t crop) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t x = e % crop, y = (e / crop) % crop, c = (e / (crop * crop)) % 3, i = e / (3 * crop * crop);
    const int64_t row = offsets[2 * i] + y;
    const int64_t col = offsets[2 * i + 1] + augment_source_col(x, crop, flips[i] != 0);
    const int64_t pix = (row * width + col) * 3 + c;
    out[e] = augment_value(images[index[i] * height * width * 3 + pix], mean_image[pix], lighting[3 * i + c]);
  }
}

}  // namespace

void augment(const uint8_t* images, int64_t num_images, int64_t height, int64_t width, const float* mean_image,
             const int64_t* index, const int32_t* offsets, const uint8_t* flips, const float* lighting, float* out,
             int64_t n, int64_t crop, Stream stream) {
  (void)num_images;
  const int64_t total = n * 3 * crop * crop;
  if (total == 0) return;
  augment_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(images, height, width, mean_image, index, offsets,
                                                                     flips, lighting, out, total, crop);
  PYA_CHECK_LAUNCH("augment");
}

}  // namespace pya::cuda
