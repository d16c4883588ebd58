// kernels/gemm_cpu.cpp's sgemm against the sums it promises, bit for bit: each element of C is one
// fused multiply-add chain over a KC-long slice of k in order, starting from +0, added to C slice by
// slice (a plain multiply and add where the ISA has no FMA). Shapes straddle every blocking edge of every
// ISA's tile (MR 4/6/8, NR 12/16/48, MC 192, NC up to 288, the 256-long slice), all four operand layouts, C with a
// row stride wider than N (the gap must stay untouched), accumulate or not, and 1, 2 and 3 threads and a
// call from inside a parallel region (same bits whatever the split).
// Built and run by tests/test_cpu_gemm.py, once per instruction set; prints ALL OK.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "gemm_cpu.h"

namespace {

constexpr int64_t kSlice = pya::cpu::kSgemmSlice;  // the slice gemm_cpu.h promises

float multiply_add(float a, float b, float c) {
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
  return std::fma(a, b, c);
#else
  volatile float product = a * b;  // rounded on its own, as a build without FMA does
  return product + c;
#endif
}

struct Case {
  int64_t M, N, K;
  bool a_transposed, b_transposed, accumulate;
  int64_t ldc_extra;
};

int failures = 0;

void check(const Case& c, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> A(c.M * c.K), B(c.K * c.N);
  for (float& v : A) v = dist(rng);
  for (float& v : B) v = dist(rng);
  const int64_t a_rs = c.a_transposed ? 1 : c.K, a_cs = c.a_transposed ? c.M : 1;
  const int64_t b_rs = c.b_transposed ? 1 : c.N, b_cs = c.b_transposed ? c.K : 1;
  const int64_t ldc = c.N + c.ldc_extra;
  std::vector<float> C0(c.M * ldc);
  for (float& v : C0) v = dist(rng);

  std::vector<float> want = C0;
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      float out = c.accumulate ? C0[i * ldc + j] : 0.f;
      for (int64_t k0 = 0; k0 < c.K; k0 += kSlice) {
        float acc = 0.f;
        for (int64_t k = k0; k < std::min(c.K, k0 + kSlice); ++k)
          acc = multiply_add(A[i * a_rs + k * a_cs], B[k * b_rs + j * b_cs], acc);
        out = (k0 == 0 && !c.accumulate) ? acc : out + acc;
      }
      if (c.K == 0 && !c.accumulate) out = 0.f;
      want[i * ldc + j] = out;
    }

  auto run = [&](const char* how, auto&& call) {
    std::vector<float> got = C0;
    call(got.data());
    if (std::memcmp(got.data(), want.data(), sizeof(float) * got.size()) != 0) {
      int64_t bad = 0;
      while (std::memcmp(&got[bad], &want[bad], sizeof(float)) == 0) ++bad;
      std::printf("FAIL M=%lld N=%lld K=%lld aT=%d bT=%d acc=%d ldc+%lld %s: [%lld][%lld] %.9g != %.9g\n",
                  (long long)c.M, (long long)c.N, (long long)c.K, c.a_transposed, c.b_transposed, c.accumulate,
                  (long long)c.ldc_extra, how, (long long)(bad / ldc), (long long)(bad % ldc), got[bad], want[bad]);
      ++failures;
    }
  };
  auto gemm = [&](float* C) {
    pya::cpu::sgemm(c.M, c.N, c.K, A.data(), a_rs, a_cs, B.data(), b_rs, b_cs, C, ldc, c.accumulate);
  };
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    char how[32];
    std::snprintf(how, sizeof how, "%d threads", threads);
    run(how, gemm);
  }
  omp_set_num_threads(2);
  run("inside a parallel region", [&](float* C) {
#pragma omp parallel num_threads(2)
    {
#pragma omp single
      gemm(C);
    }
  });
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  const int64_t Ms[] = {1, 3, 5, 7, 8, 9, 13, 96, 191, 192, 193, 385};
  const int64_t Ns[] = {1, 11, 13, 17, 47, 48, 49, 97, 287, 288, 289, 577, 729};
  const int64_t Ks[] = {0, 1, 5, 255, 256, 257, 600};
  int cases = 0;
  // Every M and N edge at a short reduction, every K edge at awkward M and N, then random mixes.
  for (int64_t M : Ms)
    for (int64_t N : Ns) check({M, N, 5, (M + N) % 2 == 1, (M * N) % 3 == 0, N % 2 == 0, M % 3}, rng), ++cases;
  for (int64_t K : Ks)
    for (int layout = 0; layout < 8; ++layout)
      check({193, 49, K, (layout & 1) != 0, (layout & 2) != 0, (layout & 4) != 0, 1}, rng), ++cases;
  std::uniform_int_distribution<int> pick(0, 1 << 20);
  for (int t = 0; t < 60; ++t) {
    const int r = pick(rng);
    check({Ms[r % 12], Ns[(r / 12) % 13], Ks[(r / 156) % 7], (r & 1) != 0, (r & 2) != 0, (r & 4) != 0,
           (r / 7) % 5},
          rng);
    ++cases;
  }
  if (failures) {
    std::printf("%d failures in %d cases\n", failures, cases);
    return 1;
  }
  std::printf("ALL OK: %d cases, 4 thread settings each\n", cases);
  return 0;
}
