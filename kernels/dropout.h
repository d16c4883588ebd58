// Inverted dropout: kept units are scaled by 1/(1-p) during training, so test
// time needs no change. The mask comes from the counter-based generator in
// random.h: element i of a tensor is kept iff word i of (seed, subsequence 0)
// is >= floor(p * 2^32), so CPU and GPU masks are bit-identical for one seed.
#pragma once
#include "common.h"
#include "random.h"

namespace pya {

// The random stream dropout draws from; other users of one seed take other subsequences.
constexpr uint32_t kDropoutSubsequence = 0;

PYA_HD uint8_t dropout_keep(uint32_t word, uint32_t drop_threshold) { return word >= drop_threshold ? 1 : 0; }

// y = x * scale where kept, 0 where dropped (scale = 1/(1-p) as a float, from the host).
PYA_HD float dropout_apply(float x, uint8_t keep, float scale) { return keep ? x * scale : 0.f; }

namespace cpu {
// mask: one byte per element (1 kept, 0 dropped).
void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, uint64_t seed, uint32_t drop_threshold,
                     float scale, Stream stream);
void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float scale, Stream stream);
}  // namespace cpu

namespace cuda {
void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, uint64_t seed, uint32_t drop_threshold,
                     float scale, Stream stream);
void dropout_backward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float scale, Stream stream);
}  // namespace cuda

}  // namespace pya
