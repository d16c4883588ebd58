// What this build contains and which GPUs the CUDA runtime can see. Never
// throws for a missing driver or GPU: it reports why instead, so that
// `import pyalexnet` and backend_info() work on any machine.
#include <pybind11/stl.h>

#include "../kernels/gemm_cpu.h"
#include "array.h"
#include "bind.h"

#ifdef PYA_WITH_CUDA
#include "../kernels/cuda_check.h"
#endif

namespace pya {

bool built_with_cuda() {
#ifdef PYA_WITH_CUDA
  return true;
#else
  return false;
#endif
}

namespace {

py::dict build_info() {
  py::dict d;
  d["built_with_cuda"] = built_with_cuda();
#ifdef PYA_WITH_CUDA
  d["cuda_build_version"] = CUDART_VERSION;
  d["cuda_architectures"] = std::string(PYA_CUDA_ARCHITECTURES);
#else
  d["cuda_build_version"] = py::none();
  d["cuda_architectures"] = py::none();
#endif
#ifdef _OPENMP
  d["openmp"] = true;
#else
  d["openmp"] = false;
#endif
  d["cpu_simd"] = std::string(pya::cpu::sgemm_simd());
  // The threads the CPU kernels use (OMP_NUM_THREADS, else the cores), not the CPU count.
  d["cpu_threads"] = pya::cpu::cpu_threads_available();
#ifdef PYA_MARCH_NATIVE
  d["march_native"] = true;
#else
  d["march_native"] = false;
#endif
  return d;
}

// {"runtime_version", "driver_version", "devices": [...], "error": str|None}
py::dict cuda_query() {
  py::dict d;
  py::list devices;
  d["devices"] = devices;
  d["runtime_version"] = py::none();
  d["driver_version"] = py::none();
  d["error"] = py::none();
#ifdef PYA_WITH_CUDA
  int v = 0;
  if (cudaRuntimeGetVersion(&v) == cudaSuccess) d["runtime_version"] = v;
  if (cudaDriverGetVersion(&v) == cudaSuccess && v > 0) d["driver_version"] = v;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    d["error"] = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
    return d;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    py::dict g;
    g["index"] = i;
    g["name"] = std::string(p.name);
    g["compute_capability"] = py::make_tuple(p.major, p.minor);
    g["total_memory_bytes"] = static_cast<long long>(p.totalGlobalMem);
    g["multiprocessors"] = p.multiProcessorCount;
    g["l2_cache_bytes"] = p.l2CacheSize;
    devices.append(g);
  }
#else
  d["error"] = "built without CUDA";
#endif
  return d;
}

}  // namespace

void bind_device_info(py::module_& m) {
  m.def("build_info", &build_info, "Facts fixed when the extension was compiled.");
  m.def("cuda_query", &cuda_query, "CUDA runtime/driver versions and visible GPUs, or why there are none.");
  m.def("synchronize", [](int device) {
#ifdef PYA_WITH_CUDA
    py::gil_scoped_release nogil;
    DeviceGuard g(device);
    PYA_CUDA_CHECK(cudaDeviceSynchronize());
#else
    (void)device;
    throw_no_cuda();
#endif
  }, py::arg("device") = 0, "Waits for all work on a GPU; raises RuntimeError for an earlier asynchronous CUDA fault.");
}

}  // namespace pya
