// Goto/BLIS-style blocked SGEMM (see gemm_cpu.h for why we carry our own).
//
// C is cut into MC x NC tiles, one OpenMP task each. Within a tile, the
// reduction is walked in KC slices: the A block (MC x KC) is packed into MR-row
// panels that stay in L2, the B block (KC x NC) into NR-column panels; the
// micro-kernel multiplies one MR x KC panel by one KC x NR panel, holding the
// MR x NR result in registers (6 x 16 floats = 12 AVX2 or 6 AVX-512 registers).
#include "gemm_cpu.h"

#include <cstdlib>
#include <cstring>
#include <new>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pya::cpu {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;
constexpr int64_t MC = 96;   // multiple of MR; MC x KC floats = 96 KiB, L2-resident
constexpr int64_t KC = 256;
constexpr int64_t NC = 256;  // multiple of NR; kept modest so narrow problems still split into tiles

// GCC lowers this to whatever the -march offers (2 x ymm on AVX2, 1 x zmm on AVX-512).
typedef float vf __attribute__((vector_size(NR * sizeof(float))));

// Packing buffers: one pair per thread, allocated on a thread's first GEMM and
// reused (a cache of fixed size, not a per-call allocation).
struct PackBuffers {
  float* a = nullptr;
  float* b = nullptr;
  PackBuffers() {
    a = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * MC * KC));
    b = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * KC * NC));
    if (!a || !b) throw std::bad_alloc();
  }
  ~PackBuffers() {
    std::free(a);
    std::free(b);
  }
};

PackBuffers& pack_buffers() {
  static thread_local PackBuffers buffers;
  return buffers;
}

// A block (mc x kc) -> panels of MR rows: dst[(panel*kc + k)*MR + i], zero-padded rows.
void pack_a(int64_t mc, int64_t kc, const float* A, int64_t rs, int64_t cs, float* dst) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR, dst += kc * MR) {
    const int64_t mr = mc - i0 < MR ? mc - i0 : MR;
    if (mr < MR) std::memset(dst, 0, sizeof(float) * kc * MR);
    if (cs == 1) {
      for (int64_t i = 0; i < mr; ++i) {
        const float* src = A + (i0 + i) * rs;
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = src[k];
      }
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = A + i0 * rs + k * cs;
        for (int64_t i = 0; i < mr; ++i) dst[k * MR + i] = src[i * rs];
      }
    }
  }
}

// B block (kc x nc) -> panels of NR columns: dst[(panel*kc + k)*NR + j], zero-padded columns.
void pack_b(int64_t kc, int64_t nc, const float* B, int64_t rs, int64_t cs, float* dst) {
  for (int64_t j0 = 0; j0 < nc; j0 += NR, dst += kc * NR) {
    const int64_t nr = nc - j0 < NR ? nc - j0 : NR;
    if (nr < NR) std::memset(dst, 0, sizeof(float) * kc * NR);
    if (cs == 1) {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = B + k * rs + j0;
        for (int64_t j = 0; j < nr; ++j) dst[k * NR + j] = src[j];
      }
    } else {
      for (int64_t j = 0; j < nr; ++j) {
        const float* src = B + (j0 + j) * cs;
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = src[k * rs];
      }
    }
  }
}

// C[0:mr, 0:nr] (+)= Ap (MR x kc panel) * Bp (kc x NR panel).
void micro_kernel(int64_t kc, const float* __restrict__ Ap, const float* __restrict__ Bp, float* __restrict__ C,
                  int64_t ldc, bool accumulate, int64_t mr, int64_t nr) {
  vf c0 = {}, c1 = {}, c2 = {}, c3 = {}, c4 = {}, c5 = {};
  for (int64_t k = 0; k < kc; ++k) {
    const vf b = *reinterpret_cast<const vf*>(Bp + k * NR);
    const float* a = Ap + k * MR;
    c0 += a[0] * b;
    c1 += a[1] * b;
    c2 += a[2] * b;
    c3 += a[3] * b;
    c4 += a[4] * b;
    c5 += a[5] * b;
  }
  const vf rows[MR] = {c0, c1, c2, c3, c4, c5};
  if (mr == MR && nr == NR) {
    for (int i = 0; i < MR; ++i) {
      vf out = rows[i];
      if (accumulate) {
        vf old;
        std::memcpy(&old, C + i * ldc, sizeof(vf));
        out += old;
      }
      std::memcpy(C + i * ldc, &out, sizeof(vf));
    }
    return;
  }
  for (int64_t i = 0; i < mr; ++i) {
    float tmp[NR];
    std::memcpy(tmp, &rows[i], sizeof(vf));
    float* c = C + i * ldc;
    for (int64_t j = 0; j < nr; ++j) c[j] = accumulate ? c[j] + tmp[j] : tmp[j];
  }
}

void gemm_tile(int64_t i0, int64_t j0, int64_t mc, int64_t nc, int64_t Kd, const float* A, int64_t a_rs, int64_t a_cs,
               const float* B, int64_t b_rs, int64_t b_cs, float* C, int64_t ldc, bool accumulate) {
  PackBuffers& buf = pack_buffers();
  for (int64_t k0 = 0; k0 < Kd; k0 += KC) {
    const int64_t kc = Kd - k0 < KC ? Kd - k0 : KC;
    pack_a(mc, kc, A + i0 * a_rs + k0 * a_cs, a_rs, a_cs, buf.a);
    pack_b(kc, nc, B + k0 * b_rs + j0 * b_cs, b_rs, b_cs, buf.b);
    const bool acc = accumulate || k0 > 0;
    for (int64_t jr = 0; jr < nc; jr += NR) {
      const float* Bp = buf.b + (jr / NR) * kc * NR;
      const int64_t nr = nc - jr < NR ? nc - jr : NR;
      for (int64_t ir = 0; ir < mc; ir += MR) {
        const int64_t mr = mc - ir < MR ? mc - ir : MR;
        micro_kernel(kc, buf.a + (ir / MR) * kc * MR, Bp, C + (i0 + ir) * ldc + j0 + jr, ldc, acc, mr, nr);
      }
    }
  }
}

bool in_parallel_region() {
#ifdef _OPENMP
  return omp_in_parallel();
#else
  return false;
#endif
}

}  // namespace

void sgemm(int64_t M, int64_t N, int64_t Kd, const float* A, int64_t a_rs, int64_t a_cs, const float* B, int64_t b_rs,
           int64_t b_cs, float* C, int64_t ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (Kd <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::memset(C + i * ldc, 0, sizeof(float) * N);
    return;
  }
  const int64_t m_tiles = (M + MC - 1) / MC, n_tiles = (N + NC - 1) / NC;
  const int64_t tiles = m_tiles * n_tiles;
  const bool parallel = !in_parallel_region() && tiles > 1 && M * N * Kd > (int64_t(1) << 18);
#pragma omp parallel for schedule(dynamic) if (parallel)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t i0 = (t % m_tiles) * MC, j0 = (t / m_tiles) * NC;
    const int64_t mc = M - i0 < MC ? M - i0 : MC, nc = N - j0 < NC ? N - j0 : NC;
    gemm_tile(i0, j0, mc, nc, Kd, A, a_rs, a_cs, B, b_rs, b_cs, C, ldc, accumulate);
  }
}

}  // namespace pya::cpu
