// Error checking for CUDA calls and launches. Every failure becomes a C++
// exception (RuntimeError in Python) carrying cudaGetErrorString: never an abort.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "common.h"

namespace pya {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  throw KernelError(std::string("CUDA error: ") + cudaGetErrorString(err) + " (" + cudaGetErrorName(err) +
                    ") in " + what + " at " + file + ":" + std::to_string(line));
}

}  // namespace pya

// `what` names the failing call in the message.
#define PYA_CUDA_CHECK_AS(expr, what)                                          \
  do {                                                                         \
    cudaError_t pya_err_ = (expr);                                             \
    if (pya_err_ != cudaSuccess) ::pya::throw_cuda_error(pya_err_, what, __FILE__, __LINE__); \
  } while (0)

#define PYA_CUDA_CHECK(expr) PYA_CUDA_CHECK_AS(expr, #expr)

// After a <<<...>>> launch: catches bad configurations and earlier async faults. The message names the kernel
// (a string literal), not the cudaGetLastError() call that caught it.
#define PYA_CHECK_LAUNCH(name) PYA_CUDA_CHECK_AS(cudaGetLastError(), "the launch of " name)

