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

#define PYA_CUDA_CHECK(expr)                                                   \
  do {                                                                         \
    cudaError_t pya_err_ = (expr);                                             \
    if (pya_err_ != cudaSuccess) ::pya::throw_cuda_error(pya_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a <<<...>>> launch: catches bad configurations and earlier async faults.
// The message names the kernel, not the cudaGetLastError() call that caught it.
#define PYA_CHECK_LAUNCH(name)                                                 \
  do {                                                                         \
    cudaError_t pya_err_ = cudaGetLastError();                                 \
    if (pya_err_ != cudaSuccess) ::pya::throw_cuda_error(pya_err_, "the launch of " name, __FILE__, __LINE__); \
  } while (0)

