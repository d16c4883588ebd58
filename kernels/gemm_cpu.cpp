// Goto/BLIS-style blocked SGEMM (see gemm_cpu.h for why we carry our own).
//
// C is cut into MC x NC tiles, one OpenMP task each. Within a tile, the
// reduction is walked in KC slices: the A block (MC x KC) is packed into MR-row
// panels that stay in L2, the B block (KC x NC) into NR-column panels; the
// micro-kernel multiplies one MR x KC panel by one KC x NR panel, holding the
// MR x NR result in registers. A call on one thread (the CPU convolutions' per-
// image GEMMs run inside their own parallel region) takes C's column tiles at
// full height instead and packs each B block once for all MC row blocks (BLIS's
// loop order): the input gradient's col = W^T dy has up to 12 row blocks, which
// had each packed the same block of dy again. Loop order never changes a sum.
//
// The register tile follows the vector ISA the CPU kernels are compiled for: a
// fused multiply-add has a latency of about 4 cycles and two issue each cycle, so
// at least 8 independent accumulators keep the FMA units busy, and more hide the
// loads. AVX-512 (32 registers): 8 x 48 = 24 zmm accumulators, 3 loads of B and 8
// broadcasts of A per 24 FMAs; the former 6 x 16 tile had 6 zmm accumulators and
// reached 55% of one Zen 5 core's FMA peak, this one 80-90% (MC 192 instead of
// 96 also packs each B block once, not twice, for AlexNet's 96-192 filters).
// AVX2 (16 registers): 6 x 16 = 12 ymm accumulators, the classic Haswell tile.
// The sums do not depend on the tile: each element of C is one FMA chain over a
// KC slice in k order, added to C slice by slice, so every ISA with FMA gives the
// same bits, and KC (not the tile) is what fixes them.
#include "gemm_cpu.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pya::cpu {
namespace {

#if defined(__AVX512F__)
constexpr int VW = 16, MR = 8, NV = 3;  // floats per vector register, tile rows, vectors per tile row
constexpr const char* kSimd = "avx512";
#elif defined(__AVX__)
constexpr int VW = 8, MR = 6, NV = 2;
constexpr const char* kSimd = "avx2";  // AVX without AVX2 has the same 8-float registers
#elif defined(__aarch64__)
constexpr int VW = 4, MR = 8, NV = 3;  // 32 NEON registers
constexpr const char* kSimd = "neon";
#elif defined(__SSE2__)
constexpr int VW = 4, MR = 4, NV = 3;  // SSE2's 16 registers
constexpr const char* kSimd = "sse2";
#else
constexpr int VW = 4, MR = 4, NV = 3;  // whatever the compiler makes of 4-float vectors
constexpr const char* kSimd = "scalar";
#endif
constexpr int NR = VW * NV;
constexpr int64_t MC = 192;  // multiple of MR; MC x KC floats = 192 KiB, L2-resident
constexpr int64_t KC = kSgemmSlice;  // fixes the bits (see above and gemm_cpu.h)
constexpr int64_t NC = NR * (288 / NR);  // multiple of NR; kept modest so narrow problems still split into tiles
static_assert(MC % MR == 0 && NC % NR == 0, "tiles are whole panels");

// One vector register; GCC lowers arithmetic on it to the -march's instructions.
typedef float vf __attribute__((vector_size(VW * sizeof(float))));

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
    if (cs == 1 && mr == MR) {  // MR row streams read together: one contiguous MR-float write per k
      const float* src = A + i0 * rs;
      for (int64_t k = 0; k < kc; ++k)
        for (int i = 0; i < MR; ++i) dst[k * MR + i] = src[i * rs + k];
    } else if (cs == 1) {
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

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define PYA_HAVE_SHUFFLEVECTOR 1
#endif
#endif

#ifdef PYA_HAVE_SHUFFLEVECTOR
// B stored by columns (the filter gradient's col^T): its panels are a transpose. Storing one float at a time
// into NR-strided slots took 14% of a filter gradient; T x T blocks transposed in registers store whole
// vectors. dst[k*NR + j] = src[j*cs + k] for j, k < T (T = 4 or 8; GCC and Clang lower the shuffles to
// the -march's instructions).
typedef float v4f __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
template <int T>
inline void transpose_block(const float* src, int64_t cs, float* dst);
template <>
inline void transpose_block<4>(const float* src, int64_t cs, float* dst) {
  v4f r[4];
  for (int j = 0; j < 4; ++j) std::memcpy(&r[j], src + j * cs, sizeof(v4f));
  const v4f t0 = __builtin_shufflevector(r[0], r[1], 0, 4, 1, 5), t1 = __builtin_shufflevector(r[0], r[1], 2, 6, 3, 7);
  const v4f t2 = __builtin_shufflevector(r[2], r[3], 0, 4, 1, 5), t3 = __builtin_shufflevector(r[2], r[3], 2, 6, 3, 7);
  const v4f o[4] = {__builtin_shufflevector(t0, t2, 0, 1, 4, 5), __builtin_shufflevector(t0, t2, 2, 3, 6, 7),
                    __builtin_shufflevector(t1, t3, 0, 1, 4, 5), __builtin_shufflevector(t1, t3, 2, 3, 6, 7)};
  for (int k = 0; k < 4; ++k) std::memcpy(dst + k * NR, &o[k], sizeof(v4f));
}
template <>
inline void transpose_block<8>(const float* src, int64_t cs, float* dst) {
  v8f r[8], t[8], u[8];
  for (int j = 0; j < 8; ++j) std::memcpy(&r[j], src + j * cs, sizeof(v8f));
  for (int j = 0; j < 8; j += 2) {
    t[j] = __builtin_shufflevector(r[j], r[j + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[j + 1] = __builtin_shufflevector(r[j], r[j + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int h = 0; h < 8; h += 4) {
    u[h] = __builtin_shufflevector(t[h], t[h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    u[h + 1] = __builtin_shufflevector(t[h], t[h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    u[h + 2] = __builtin_shufflevector(t[h + 1], t[h + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    u[h + 3] = __builtin_shufflevector(t[h + 1], t[h + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int k = 0; k < 4; ++k) {
    const v8f lo = __builtin_shufflevector(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    const v8f hi = __builtin_shufflevector(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    std::memcpy(dst + k * NR, &lo, sizeof(v8f));
    std::memcpy(dst + (k + 4) * NR, &hi, sizeof(v8f));
  }
}
#endif

// B block (kc x nc) -> panels of NR columns: dst[(panel*kc + k)*NR + j], zero-padded columns.
void pack_b(int64_t kc, int64_t nc, const float* B, int64_t rs, int64_t cs, float* dst) {
  for (int64_t j0 = 0; j0 < nc; j0 += NR, dst += kc * NR) {
    const int64_t nr = nc - j0 < NR ? nc - j0 : NR;
    if (nr < NR) std::memset(dst, 0, sizeof(float) * kc * NR);
    if (cs == 1 && nr == NR) {  // whole rows of the panel: one vector copy each
      for (int64_t k = 0; k < kc; ++k) std::memcpy(dst + k * NR, B + k * rs + j0, sizeof(float) * NR);
    } else if (cs == 1) {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = B + k * rs + j0;
        for (int64_t j = 0; j < nr; ++j) dst[k * NR + j] = src[j];
      }
    } else {
#ifdef PYA_HAVE_SHUFFLEVECTOR
      constexpr int T = NR % 8 == 0 ? 8 : 4;
      if (rs == 1 && nr == NR) {  // whole T x T blocks, then the last kc % T rows
        const int64_t kt = kc / T * T;
        for (int64_t j = 0; j < NR; j += T)
          for (int64_t k = 0; k < kt; k += T) transpose_block<T>(B + (j0 + j) * cs + k, cs, dst + k * NR + j);
        for (int64_t j = 0; j < NR; ++j)
          for (int64_t k = kt; k < kc; ++k) dst[k * NR + j] = B[(j0 + j) * cs + k];
        continue;
      }
#endif
      for (int64_t j = 0; j < nr; ++j) {
        const float* src = B + (j0 + j) * cs;
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = src[k * rs];
      }
    }
  }
}

// C[0:mr, 0:nr] (+)= Ap (MR x kc panel) * the first NVK vectors of columns of Bp (kc x NR panel), nr <=
// NVK * VW. A panel's last few columns take a narrower tile (NVK < NV): the small preset's 7x7 maps give
// 49-column products, whose second panel has one column, a whole tile's work for 1/48 of it at NV.
template <int NVK>
void micro_kernel(int64_t kc, const float* __restrict__ Ap, const float* __restrict__ Bp, float* __restrict__ C,
                  int64_t ldc, bool accumulate, int64_t mr, int64_t nr) {
  vf c[MR][NVK];  // fully unrolled below, so these live in registers
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NVK; ++v) c[i][v] = vf{};
  for (int64_t k = 0; k < kc; ++k) {
    vf b[NVK];
#pragma GCC unroll 4
    for (int v = 0; v < NVK; ++v) b[v] = *reinterpret_cast<const vf*>(Bp + k * NR + v * VW);
    const float* a = Ap + k * MR;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NVK; ++v) c[i][v] += a[i] * b[v];
  }
  if (mr == MR && nr == NVK * VW) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NVK; ++v) {
        vf out = c[i][v];
        if (accumulate) {
          vf old;
          std::memcpy(&old, C + i * ldc + v * VW, sizeof(vf));
          out += old;
        }
        std::memcpy(C + i * ldc + v * VW, &out, sizeof(vf));
      }
    return;
  }
  for (int64_t i = 0; i < mr; ++i) {
    float row[NVK * VW];
    std::memcpy(row, c[i], sizeof(row));
    float* out = C + i * ldc;
    for (int64_t j = 0; j < nr; ++j) out[j] = accumulate ? out[j] + row[j] : row[j];
  }
}

// C[i0:i0+mc, j0:j0+nc]; mc may exceed MC (one B block serves every row block).
void gemm_tile(int64_t i0, int64_t j0, int64_t mc, int64_t nc, int64_t Kd, const float* A, int64_t a_rs, int64_t a_cs,
               const float* B, int64_t b_rs, int64_t b_cs, float* C, int64_t ldc, bool accumulate) {
  PackBuffers& buf = pack_buffers();
  for (int64_t k0 = 0; k0 < Kd; k0 += KC) {
    const int64_t kc = Kd - k0 < KC ? Kd - k0 : KC;
    pack_b(kc, nc, B + k0 * b_rs + j0 * b_cs, b_rs, b_cs, buf.b);
    const bool acc = accumulate || k0 > 0;
    for (int64_t ic = i0; ic < i0 + mc; ic += MC) {
      const int64_t mcb = i0 + mc - ic < MC ? i0 + mc - ic : MC;
      pack_a(mcb, kc, A + ic * a_rs + k0 * a_cs, a_rs, a_cs, buf.a);
      for (int64_t jr = 0; jr < nc; jr += NR) {
        const float* Bp = buf.b + (jr / NR) * kc * NR;
        const int64_t nr = nc - jr < NR ? nc - jr : NR;
        const auto micro = nr <= VW ? micro_kernel<1> : nr <= 2 * VW ? micro_kernel<NV < 2 ? NV : 2> : micro_kernel<NV>;
        for (int64_t ir = 0; ir < mcb; ir += MR) {
          const int64_t mr = mcb - ir < MR ? mcb - ir : MR;
          micro(kc, buf.a + (ir / MR) * kc * MR, Bp, C + (ic + ir) * ldc + j0 + jr, ldc, acc, mr, nr);
        }
      }
    }
  }
}

// Columns of C the busiest thread computes when `threads` threads take C's tiles (m_tiles row tiles x
// column tiles of nc, the last narrower) in sgemm's order, each the next tile as it comes free: the
// greedy that schedule(dynamic) follows when tiles cost in proportion to their width.
// Counted, not simulated thread by thread (which needed a vector of loads: the kernels allocate nothing).
// The full-width tiles come first and go round: r threads end them at high = (q+1)*nc, the others at
// low = q*nc. Each of the last column's m_tiles tiles, `last` wide, then goes to a least-loaded thread, so
// they start at the m_tiles smallest of the loads low + j*last (threads - r of each j) and high + j*last
// (r of each), and the busiest thread ends at the later of high (or low) and the last of those plus `last`.
int64_t busiest_thread_columns(int64_t m_tiles, int64_t N, int64_t nc, int64_t threads) {
  const int64_t n_tiles = (N + nc - 1) / nc, last = N - (n_tiles - 1) * nc;
  const int64_t full = (n_tiles - 1) * m_tiles, q = full / threads, r = full % threads;
  const int64_t low = q * nc, high = low + nc;
  const auto starts_up_to = [&](int64_t v) {
    return (threads - r) * (v >= low ? (v - low) / last + 1 : 0) + r * (v >= high ? (v - high) / last + 1 : 0);
  };
  int64_t lo = low, hi = low + (m_tiles - 1) * last;  // the low threads alone have m_tiles starts by hi
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (starts_up_to(mid) >= m_tiles)
      hi = mid;
    else
      lo = mid + 1;
  }
  return std::max(r ? high : low, lo + last);
}

}  // namespace

const char* sgemm_simd() { return kSimd; }

int64_t cpu_threads_available() {
#ifdef _OPENMP
  return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

void sgemm(int64_t M, int64_t N, int64_t Kd, const float* A, int64_t a_rs, int64_t a_cs, const float* B, int64_t b_rs,
           int64_t b_cs, float* C, int64_t ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (Kd <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::memset(C + i * ldc, 0, sizeof(float) * N);
    return;
  }
  const int64_t m_tiles = (M + MC - 1) / MC;
  const int64_t threads_here = cpu_threads_available();
  const bool parallel = threads_here > 1 && M * N * Kd > (int64_t(1) << 18);
  // C's column tiles are chosen so the threads finish together: conv2's per-group forward, 128 x 729 in
  // 288-column tiles, was 3 tiles on 2 threads (one core idle a third of the time), and narrow C (the
  // filter gradient of a layer with few channels: a long reduction into a small result) may give fewer
  // tiles than threads. Where there are few tiles, narrower ones (whole NR panels, at most NC) are tried
  // and the one whose busiest thread has the fewest columns wins, ties to the wider tile (fewer repacks of
  // A). This changes which thread computes an element, never the order it is summed in.
  const int64_t threads = parallel ? threads_here : 1;
  int64_t nc_block = NC;
  if (threads > 1 && m_tiles * ((N + NC - 1) / NC) < 4 * threads) {
    int64_t best = busiest_thread_columns(m_tiles, N, nc_block, threads);
    for (int64_t nc = NC - NR; nc >= NR; nc -= NR) {
      const int64_t cost = busiest_thread_columns(m_tiles, N, nc, threads);
      if (cost < best) best = cost, nc_block = nc;
    }
  }
  const int64_t n_tiles = (N + nc_block - 1) / nc_block;
  const int64_t tiles = m_tiles * n_tiles;
  if (!parallel || tiles == 1) {  // one thread: B packed once per slice, A once per column tile
    for (int64_t j0 = 0; j0 < N; j0 += nc_block)
      gemm_tile(0, j0, M, N - j0 < nc_block ? N - j0 : nc_block, Kd, A, a_rs, a_cs, B, b_rs, b_cs, C, ldc, accumulate);
    return;
  }
#pragma omp parallel for schedule(dynamic)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t i0 = (t % m_tiles) * MC, j0 = (t / m_tiles) * nc_block;
    const int64_t mc = M - i0 < MC ? M - i0 : MC, nc = N - j0 < nc_block ? N - j0 : nc_block;
    gemm_tile(i0, j0, mc, nc, Kd, A, a_rs, a_cs, B, b_rs, b_cs, C, ldc, accumulate);
  }
}

}  // namespace pya::cpu
