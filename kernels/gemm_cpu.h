// Single-precision GEMM for the CPU backend (conv2d's im2col path).
//
// Our own cache-blocked SGEMM rather than a linked BLAS: the build runs in an
// isolated environment, so a pip-installed OpenBLAS would have to be located at
// run time by hand, and a system BLAS may be absent or single-threaded. A
// Goto-style blocked GEMM (packed panels, register-blocked micro-kernel in GCC
// vector extensions, OpenMP over C tiles) gets most of the way to BLAS speed for
// the shapes convolution produces, with no dependency.
#pragma once
#include <cstdint>

namespace pya::cpu {

// C (M x N, row stride ldc) = A (M x Kd) * B (Kd x N), or C += A*B when
// `accumulate`. A and B are addressed through (row stride, column stride), so
// transposed operands need no copy: A(i, k) = A[i*a_rs + k*a_cs].
//
// Each element of C is computed by one thread, summing over k in a fixed
// order, so the result does not depend on the number of threads and is
// bit-identical from run to run. Runs single-threaded when called from inside
// an OpenMP parallel region.
//
// The order: each element is one fused multiply-add chain over every slice of
// kSgemmSlice consecutive k (from +0, in k order), added to C slice by slice.
// So a product cut into calls at multiples of kSgemmSlice along k (each call
// after the first accumulating), or cut anywhere along M or N, gives the same
// bits as one call: conv_cpu.cpp cuts its im2col products into blocks that stay
// in cache this way.
constexpr int64_t kSgemmSlice = 256;  // changing it changes every result in the last place

void sgemm(int64_t M, int64_t N, int64_t Kd, const float* A, int64_t a_rs, int64_t a_cs, const float* B, int64_t b_rs,
           int64_t b_cs, float* C, int64_t ldc, bool accumulate);

// The vector instruction set sgemm's register tile was compiled for ("avx512", "avx2", "neon", "sse2" or
// "scalar"): what -march (PYALEXNET_NATIVE) gave the build, shown by `pyalexnet info`.
const char* sgemm_simd();

// Threads a parallel region started here would get: 1 inside an active
// OpenMP region (nested regions run serially), else omp_get_max_threads().
int64_t cpu_threads_available();

}  // namespace pya::cpu
