// Array arguments for the bindings: numpy arrays (buffer protocol) are CPU
// arrays, objects exposing __cuda_array_interface__ (CuPy, PyTorch, ...) are
// GPU arrays. Everything is validated here, before any launch, and every
// failure is a Python exception that names the argument.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "../kernels/common.h"

namespace py = pybind11;

namespace pya {

enum class DType { f32, f64, i32, i64, u8, u32, other };
const char* dtype_name(DType d);

struct Array {
  std::string name;            // argument name, for messages
  void* ptr = nullptr;
  DType dtype = DType::other;
  std::string typestr;         // as the producer spelled it, for messages
  std::vector<int64_t> shape;
  bool gpu = false;            // exposes __cuda_array_interface__
  int device = -1;             // CUDA device ordinal, set by launch_on(); -1 for host memory
  bool readonly = false;
  py::object keepalive;        // holds the buffer while the view is used

  bool on_gpu() const { return gpu; }
  int ndim() const { return static_cast<int>(shape.size()); }
  int64_t numel() const;
  int64_t dim(int i) const { return shape.at(i < 0 ? shape.size() + i : i); }
  std::string shape_str() const;
  template <class T> T* data() const { return static_cast<T*>(ptr); }
};

// Reads `obj` as an array. Raises TypeError when it is neither a numpy array
// nor a CUDA array, ValueError when it is not C-contiguous (the Python layer
// makes inputs contiguous; outputs must be).
Array array_arg(py::handle obj, const char* name, bool writable = false);

// Checks: TypeError for dtype, ValueError for ndim/shape.
void expect_dtype(const Array& a, DType d);
void expect_float32(const Array& a);
void expect_ndim(const Array& a, int ndim);
void expect_shape(const Array& a, const std::vector<int64_t>& shape);
void expect_same_shape(const Array& a, const Array& b);
std::string shape_str(const std::vector<int64_t>& shape);

// Whether the product of `sizes` exceeds `limit`, computed without wrapping (an int64 product of a few large
// dimensions, 2^31 paddings or 2^80-element shapes, wraps to something small and passes a check).
bool product_exceeds(const std::vector<int64_t>& sizes, int64_t limit);

// A number as Python would print it ("1e-50", not std::to_string's "0.000000"), without iostreams (see
// shape_str in array.cpp).
std::string number(double v);

// Hyper-parameters arrive as double and int64 (pybind11 refuses a value that does not fit the C++ type with
// "incompatible function arguments" and the repr of every argument, whole arrays included) and are narrowed
// here, with a ValueError naming them: a real one must be finite and within float32's range (lr=1e39 became
// inf and NaN weights), an integer one within [low, 2^31 - 1] (the kernels take int).
float float_param(double v, const char* name);
int int_param(int64_t v, const char* name, int64_t low);

// ValueError when an array the call writes shares memory with another it writes or with one it reads: a kernel
// writing its output while it still reads the overlapping input gives wrong values with no error (an in-place
// LRN was 70 off). `in_place` allows an output to be exactly one of the read arrays (the elementwise kernels,
// where each element is read before it is written). Pairwise, for a call's few arrays; sgd_update's long lists
// keep their own sorted sweep (bind_elementwise.cpp).
void expect_disjoint(std::initializer_list<const Array*> written, std::initializer_list<const Array*> read,
                     bool in_place = false);

// Where a call runs: all arrays on the host, or all on one GPU. Mixing host
// and GPU arrays is a TypeError; arrays on two GPUs a ValueError. `stream` is
// the caller's cudaStream_t as an integer (CuPy's current stream), 0 = default.
// Resolves each GPU array's device (hence non-const).
struct Launch {
  int device = -1;
  Stream stream = nullptr;
  bool on_gpu() const { return device >= 0; }
};
Launch launch_on(std::initializer_list<Array*> arrays, std::uintptr_t stream);
Launch launch_on(const std::vector<Array*>& arrays, std::uintptr_t stream);

// Selects the array's device for the duration of a GPU launch.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

[[noreturn]] void throw_no_cuda();

// Build facts and the GPUs found (bindings/device_info.cpp).
bool built_with_cuda();

}  // namespace pya

// Runs the op on the backend `launch` selects, with the GIL released (long
// CPU kernels must not stall Python threads such as the data loader). The CPU
// and CUDA functions share one signature, ending in the stream.
#ifdef PYA_WITH_CUDA
#define PYA_DISPATCH(launch, fn, ...)                                  \
  do {                                                                 \
    const ::pya::Launch& pya_l_ = (launch);                            \
    py::gil_scoped_release pya_nogil_;                                 \
    if (pya_l_.on_gpu()) {                                             \
      ::pya::DeviceGuard pya_guard_(pya_l_.device);                    \
      ::pya::cuda::fn(__VA_ARGS__, pya_l_.stream);                     \
    } else {                                                           \
      ::pya::cpu::fn(__VA_ARGS__, nullptr);                            \
    }                                                                  \
  } while (0)
#else
#define PYA_DISPATCH(launch, fn, ...)                                  \
  do {                                                                 \
    const ::pya::Launch& pya_l_ = (launch);                            \
    if (pya_l_.on_gpu()) ::pya::throw_no_cuda();                       \
    py::gil_scoped_release pya_nogil_;                                 \
    ::pya::cpu::fn(__VA_ARGS__, nullptr);                              \
  } while (0)
#endif
