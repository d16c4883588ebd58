#include "augment.h"

namespace pya::cpu {

void augment(const uint8_t* images, int64_t num_images, int64_t height, int64_t width, const float* mean_image,
             const int64_t* index, const int32_t* offsets, const uint8_t* flips, const float* lighting, float* out,
             int64_t n, int64_t crop, Stream) {
  (void)num_images;
  const int64_t rows = n * 3 * crop;
  // One task per output row: contiguous writes, and the source row is one contiguous run of pixels.
#pragma omp parallel for schedule(static) if (rows * crop > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = r / (3 * crop), c = (r / crop) % 3, y = r % crop;
    const int64_t row = offsets[2 * i] + y, left = offsets[2 * i + 1];
    const bool flip = flips[i] != 0;
    const uint8_t* src = images + ((index[i] * height + row) * width + left) * 3 + c;
    const float* mean = mean_image + (row * width + left) * 3 + c;
    const float light = lighting[3 * i + c];
    float* dst = out + r * crop;
    for (int64_t x = 0; x < crop; ++x) {
      const int64_t sx = augment_source_col(x, crop, flip);
      dst[x] = augment_value(src[sx * 3], mean[sx * 3], light);
    }
  }
}

}  // namespace pya::cpu
