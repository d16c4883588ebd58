// Data augmentation: crop + horizontal flip + PCA lighting + mean subtraction, from a uint8 NHWC batch
// to the float32 NCHW network input, in one pass. The random parameters are drawn in Python (so the CPU
// and GPU paths see the same ones) and passed per output image.
#pragma once
#include "common.h"

namespace pya {

// Column of the source crop read by output column x: mirrored when the image is flipped.
PYA_HD int64_t augment_source_col(int64_t x, int64_t crop, bool flip) { return flip ? crop - 1 - x : x; }

// One output value: the pixel minus the mean image at the same source position, plus the image's lighting
// offset for this channel. Two float32 roundings in this order on both backends (no product: nothing a
// compiler could fuse), so CPU and GPU agree bit for bit.
PYA_HD float augment_value(uint8_t pixel, float mean, float lighting) {
  return (static_cast<float>(pixel) - mean) + lighting;
}

// Output image i, channel c, row y, column x reads image index[i] at row offsets[2i] + y and column
// offsets[2i+1] + augment_source_col(x, crop, flips[i]), channel c:
//   out[i, c, y, x] = augment_value(images[src, row, col, c], mean_image[row, col, c], lighting[3i + c])
// images: (num_images, height, width, 3) uint8; mean_image: (height, width, 3) float32; index: (n,) int64
// in [0, num_images); offsets: (n, 2) int32 (top, left) with top + crop <= height, left + crop <= width;
// flips: (n,) uint8 (0 or 1); lighting: (n, 3) float32 RGB offsets; out: (n, 3, crop, crop) float32.
// The bindings validate all of it; the kernels trust it.
namespace cpu {
void augment(const uint8_t* images, int64_t num_images, int64_t height, int64_t width, const float* mean_image,
             const int64_t* index, const int32_t* offsets, const uint8_t* flips, const float* lighting, float* out,
             int64_t n, int64_t crop, Stream stream);
}  // namespace cpu

namespace cuda {
void augment(const uint8_t* images, int64_t num_images, int64_t height, int64_t width, const float* mean_image,
             const int64_t* index, const int32_t* offsets, const uint8_t* flips, const float* lighting, float* out,
             int64_t n, int64_t crop, Stream stream);
}  // namespace cuda

}  // namespace pya
