// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random
// numbers: as easy as 1, 2, 3", SC 2011), the generator of cuRAND and Random123.
//
// Self-contained (only common.h for PYA_HD) and usable from any kernel, CPU or
// CUDA: every value is a pure function of (seed, subsequence, index), so the CPU
// and GPU backends produce bit-identical streams with no state to carry, and any
// element can be drawn independently of the others (no sequential dependence).
//
// Layout used here (and by every pyalexnet caller):
//   key     = the 64-bit seed (low word, high word)
//   counter = (index / 4 low word, index / 4 high word, subsequence, 0)
// one Philox call yields the 32-bit words for indices 4g .. 4g+3. Give each
// independent use of one seed its own `subsequence` (dropout uses 0; the data
// augmentation can take others) so that the streams never overlap.
#pragma once
#include <cstdint>

#include "common.h"

namespace pya {

struct Philox4x32 {
  uint32_t v[4];
};

// High 32 bits of a 32x32 product.
PYA_HD uint32_t philox_mulhi(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// Philox4x32 with 10 rounds; matches Random123's known-answer vectors.
PYA_HD Philox4x32 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    uint32_t hi0 = philox_mulhi(kM0, c0), lo0 = kM0 * c0;
    uint32_t hi1 = philox_mulhi(kM1, c2), lo1 = kM1 * c2;
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  return Philox4x32{{c0, c1, c2, c3}};
}

// The four 32-bit words for indices 4*group .. 4*group+3 of (seed, subsequence).
PYA_HD Philox4x32 random_words4(uint64_t seed, uint32_t subsequence, uint64_t group) {
  return philox4x32_10(static_cast<uint32_t>(group), static_cast<uint32_t>(group >> 32), subsequence, 0u,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// One 32-bit word for a single index (a quarter of a Philox call: prefer
// random_words4 when a thread handles four consecutive indices).
PYA_HD uint32_t random_word(uint64_t seed, uint32_t subsequence, uint64_t index) {
  Philox4x32 r = random_words4(seed, subsequence, index >> 2);
  return r.v[index & 3];
}

// A float uniform in [0, 1) from the top 24 bits of a word: exact, and the same
// on every backend (no rounding-mode or library differences).
PYA_HD float uniform_from_word(uint32_t word) { return static_cast<float>(word >> 8) * (1.0f / 16777216.0f); }

// Bernoulli draws by integer comparison, so CPU and GPU agree bit for bit:
// `word < threshold` has probability threshold / 2^32. For probability p in
// [0, 1) the threshold is floor(p * 2^32), computed once on the host.
inline uint32_t probability_threshold(double p) {
  double t = p * 4294967296.0;
  if (!(t > 0.0)) return 0u;
  if (t >= 4294967295.0) return 0xFFFFFFFFu;
  return static_cast<uint32_t>(t);
}

}  // namespace pya
