#include "array.h"

#include <pybind11/numpy.h>

#include <cmath>
#include <cstdio>
#include <limits>


#ifdef PYA_WITH_CUDA
#include "../kernels/cuda_check.h"
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define PYA_LITTLE_ENDIAN 0
#else
#define PYA_LITTLE_ENDIAN 1
#endif

namespace pya {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::u8: return "uint8";
    case DType::u32: return "uint32";
    default: return "another dtype";
  }
}

int64_t Array::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

// No iostreams in the module: built on the H100 machine's image by its own /opt/gcc (GCC 13.3), _C
// carried libstdc++ locale code of its own (cuda-gdb: codecvt and basic_ostream::_M_insert<long> inside
// _C), and an ostringstream << int64_t there segfaulted, turning every error message into a crash.
// std::to_string formats without the locale.
std::string shape_str(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) out += ",";
  return out + ")";
}

std::string Array::shape_str() const { return pya::shape_str(shape); }

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", v);
  return text;
}

float float_param(double v, const char* name) {
  if (!std::isfinite(v)) throw py::value_error(std::string(name) + " must be a finite number, got " + number(v));
  if (std::fabs(v) > std::numeric_limits<float>::max())
    throw py::value_error(std::string(name) + "=" + number(v) + " is beyond float32's range (magnitude <= " +
                          number(std::numeric_limits<float>::max()) + "), which the kernels compute in");
  return static_cast<float>(v);
}

int int_param(int64_t v, const char* name, int64_t low) {
  if (v < low) throw py::value_error(std::string(name) + " must be >= " + std::to_string(low) + ", got " +
                                     std::to_string(v));
  if (v > std::numeric_limits<int32_t>::max())
    throw py::value_error(std::string(name) + " must be < 2^31, got " + std::to_string(v));
  return static_cast<int>(v);
}

namespace {

// typestr as in the array interface: '<f4', '|u1', ...
DType dtype_from_typestr(const std::string& t) {
  if (t.size() < 3) return DType::other;
  char kind = t[1];
  std::string size = t.substr(2);
  if (t[0] == '>') return DType::other;  // big-endian data is never reinterpreted
  if (kind == 'f' && size == "4") return DType::f32;
  if (kind == 'f' && size == "8") return DType::f64;
  if (kind == 'i' && size == "4") return DType::i32;
  if (kind == 'i' && size == "8") return DType::i64;
  if (kind == 'u' && size == "1") return DType::u8;
  if (kind == 'u' && size == "4") return DType::u32;
  return DType::other;
}

// 0 for a typestr that does not end in a size (dtype_from_typestr calls it another dtype, refused by name).
int64_t itemsize_of(const std::string& t) {
  if (t.size() < 3 || t.size() > 6) return 0;
  int64_t n = 0;
  for (size_t i = 2; i < t.size(); ++i) {
    if (t[i] < '0' || t[i] > '9') return 0;
    n = 10 * n + (t[i] - '0');
  }
  return n;
}

bool c_contiguous(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides, int64_t itemsize) {
  int64_t expected = itemsize;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

int device_of_pointer(const void* ptr, const std::string& name) {
#ifdef PYA_WITH_CUDA
  if (ptr == nullptr) {  // empty arrays may have no allocation: take the current device
    int dev = 0;
    PYA_CUDA_CHECK(cudaGetDevice(&dev));
    return dev;
  }
  cudaPointerAttributes attr{};
  cudaError_t err = cudaPointerGetAttributes(&attr, ptr);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later launches are not blamed
    throw py::value_error("argument '" + name + "': cannot read its CUDA device (" + cudaGetErrorString(err) +
                          "); is it a valid GPU array?");
  }
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
    throw py::value_error("argument '" + name + "': exposes __cuda_array_interface__ but its memory is not device memory");
  return attr.device;
#else
  (void)ptr;
  (void)name;
  return 0;  // a CUDA array reaching a CPU-only build: launch_on() says so clearly
#endif
}


std::string type_name(py::handle v) { return py::cast<std::string>(py::str(py::type::of(v).attr("__name__"))); }

// An integer entry of a __cuda_array_interface__ (anything with __index__), as int64; `what` names it.
int64_t interface_integer(py::handle v, const std::string& what) {
  py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
  if (!index) {
    PyErr_Clear();
    throw py::type_error(what + " must be an integer, got " + type_name(v));
  }
  int overflow = 0;
  const long long n = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (overflow != 0) throw py::value_error(what + " " + py::cast<std::string>(py::str(index)) + " does not fit in 64 bits");
  return n;
}

// The integers of a sequence entry (shape, strides) of a __cuda_array_interface__.
std::vector<int64_t> interface_integers(py::handle v, const std::string& what) {
  if (!py::isinstance<py::tuple>(v) && !py::isinstance<py::list>(v))
    throw py::type_error(what + " must be a tuple of integers, got " + type_name(v));
  std::vector<int64_t> out;
  for (py::handle item : v) out.push_back(interface_integer(item, what + " entry"));
  return out;
}

// A producer's __cuda_array_interface__, checked as it is read. A malformed one (a hand-written wrapper, a
// library bug) was pybind11's "Unable to cast Python instance" RuntimeError, a bare KeyError or IndexError;
// strides shorter than the shape were read past their end; a negative dimension, or elements behind a null
// pointer, reached the kernels; and a mask was ignored, so masked elements were computed on as data.
void read_cuda_array_interface(py::handle obj, Array& a) {
  const std::string where = "argument '" + a.name + "': its __cuda_array_interface__";
  py::object cai_obj = obj.attr("__cuda_array_interface__");
  if (!py::isinstance<py::dict>(cai_obj)) throw py::type_error(where + " must be a dict, got " + type_name(cai_obj));
  py::dict cai = py::reinterpret_borrow<py::dict>(cai_obj);
  for (const char* key : {"typestr", "shape", "data"})
    if (!cai.contains(key)) throw py::value_error(where + " has no '" + key + "' entry");

  py::object typestr = cai["typestr"];
  if (!py::isinstance<py::str>(typestr)) throw py::type_error(where + "'s typestr must be a str, got " + type_name(typestr));
  a.typestr = py::cast<std::string>(typestr);
  a.dtype = dtype_from_typestr(a.typestr);

  a.shape = interface_integers(cai["shape"], where + "'s shape");
  for (int64_t d : a.shape)
    if (d < 0) throw py::value_error(where + "'s shape " + shape_str(a.shape) + " has a negative dimension");
  if (product_exceeds(a.shape, int64_t(1) << 62))
    throw py::value_error(where + "'s shape " + shape_str(a.shape) + " has more than 2^62 elements");

  py::object data = cai["data"];
  if (!py::isinstance<py::tuple>(data) || py::len(data) != 2)
    throw py::type_error(where + "'s data must be a tuple (pointer, read_only), got " +
                         py::cast<std::string>(py::repr(data)));
  py::tuple pointer_and_flag = py::reinterpret_borrow<py::tuple>(data);
  const int64_t pointer = interface_integer(pointer_and_flag[0], where + "'s data pointer");
  if (pointer < 0) throw py::value_error(where + "'s data pointer must be >= 0, got " + std::to_string(pointer));
  a.ptr = reinterpret_cast<void*>(static_cast<std::uintptr_t>(pointer));
  const int read_only = PyObject_IsTrue(pointer_and_flag[1].ptr());
  if (read_only < 0) throw py::error_already_set();
  a.readonly = read_only != 0;

  if (cai.contains("mask") && !cai["mask"].is_none())
    throw py::value_error(where + " has a mask; masked arrays are not supported (fill the masked elements and "
                          "pass the plain array)");
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    const std::vector<int64_t> strides = interface_integers(cai["strides"], where + "'s strides");
    if (strides.size() != a.shape.size())
      throw py::value_error(where + "'s strides " + shape_str(strides) + " do not match its shape " +
                            shape_str(a.shape));
    if (!c_contiguous(a.shape, strides, itemsize_of(a.typestr)))
      throw py::value_error("argument '" + a.name + "' must be C-contiguous (use cupy.ascontiguousarray)");
  }
  if (a.ptr == nullptr && a.numel() != 0)
    throw py::value_error(where + " has a null data pointer but " + std::to_string(a.numel()) + " elements");
}

// numpy.ma.MaskedArray: its buffer holds the masked elements too, which the kernels would compute on as data
// (a masked softmax summed the masked logits; the MaskedArray output then showed the mask, hiding it).
bool is_masked_array(py::handle obj) {
  if (Py_TYPE(obj.ptr()) == py::detail::npy_api::get().PyArray_Type_) return false;  // plain ndarray: no lookup
  // (a reference held for the life of the process: no destructor running after the interpreter is gone)
  static PyObject* masked_type = py::object(py::module_::import("numpy.ma").attr("MaskedArray")).release().ptr();
  return PyObject_IsInstance(obj.ptr(), masked_type) == 1;
}

}  // namespace

bool product_exceeds(const std::vector<int64_t>& sizes, int64_t limit) {
  long double product = 1;
  for (int64_t v : sizes) product *= static_cast<long double>(v);
  return product > static_cast<long double>(limit);
}

Array array_arg(py::handle obj, const char* name, bool writable) {
  Array a;
  a.name = name;
  if (obj.is_none()) throw py::type_error("argument '" + a.name + "' must be an array, got None");

  // numpy first: py::hasattr on an object without the attribute builds and formats an AttributeError, which
  // was most of a small op's 6 us in the bindings (every CPU call asked it of every array).
  if (py::isinstance<py::array>(obj)) {
    if (is_masked_array(obj))
      throw py::value_error("argument '" + a.name + "' is a numpy masked array; the kernels would compute on its "
                            "masked elements too. Pass x.filled(value) or numpy.asarray(x) for what you mean");
    py::array arr = py::reinterpret_borrow<py::array>(obj);
    // dtype.str would format the string anew in Python each call (a third of a small op's binding time).
    const py::dtype dt = arr.dtype();
    const char order = dt.byteorder() == '=' ? (PYA_LITTLE_ENDIAN ? '<' : '>') : dt.byteorder();
    a.typestr = std::string{order, dt.kind()} + std::to_string(dt.itemsize());
    a.dtype = dtype_from_typestr(a.typestr);
    for (py::ssize_t i = 0; i < arr.ndim(); ++i) a.shape.push_back(arr.shape(i));
    if (!(arr.flags() & py::array::c_style))
      throw py::value_error("argument '" + a.name + "' must be C-contiguous (use numpy.ascontiguousarray)");
    a.readonly = !arr.writeable();
    a.ptr = a.readonly ? const_cast<void*>(arr.data()) : arr.mutable_data();
    a.device = -1;
  } else if (py::hasattr(obj, "__cuda_array_interface__")) {
    read_cuda_array_interface(obj, a);
    a.gpu = true;
  } else {
    throw py::type_error("argument '" + a.name + "' must be a numpy.ndarray or a CUDA array such as cupy.ndarray, got " +
                         py::cast<std::string>(py::str(py::type::of(obj).attr("__name__"))));
  }
  // A view at a byte offset that is not a multiple of its element size (frombuffer with an odd offset, a field
  // of a packed record): the kernels read whole elements. On the GPU a misaligned read is a sticky fault that
  // would fail every later call in the process; on the CPU, vectorised loops may assume the alignment.
  const int64_t itemsize = itemsize_of(a.typestr);
  if (itemsize > 0 && reinterpret_cast<std::uintptr_t>(a.ptr) % static_cast<std::uintptr_t>(itemsize) != 0)
    throw py::value_error("argument '" + a.name + "' is not aligned to its " + std::to_string(itemsize) +
                          "-byte elements (a view at an odd byte offset); pass a copy (" +
                          (a.gpu ? "cupy" : "numpy") + ".array(x))");
  if (writable && a.readonly) throw py::value_error("argument '" + a.name + "' is written to but is read-only");
  a.keepalive = py::reinterpret_borrow<py::object>(obj);
  return a;
}

void expect_dtype(const Array& a, DType d) {
  if (a.dtype != d)
    throw py::type_error("argument '" + a.name + "' must have dtype " + dtype_name(d) + ", got " +
                         (a.dtype == DType::other ? a.typestr : std::string(dtype_name(a.dtype))));
}

void expect_float32(const Array& a) { expect_dtype(a, DType::f32); }

void expect_ndim(const Array& a, int ndim) {
  if (a.ndim() != ndim)
    throw py::value_error("argument '" + a.name + "' must be " + std::to_string(ndim) + "-dimensional, got shape " +
                          a.shape_str());
}

void expect_shape(const Array& a, const std::vector<int64_t>& shape) {
  if (a.shape != shape)
    throw py::value_error("argument '" + a.name + "' must have shape " + shape_str(shape) + ", got " + a.shape_str());
}

void expect_same_shape(const Array& a, const Array& b) {
  if (a.shape != b.shape)
    throw py::value_error("arguments '" + a.name + "' " + a.shape_str() + " and '" + b.name + "' " + b.shape_str() +
                          " must have the same shape");
}

namespace {
struct ByteRange {
  std::uintptr_t begin, end;
  bool overlaps(const ByteRange& o) const { return begin < o.end && o.begin < end; }
  bool operator==(const ByteRange& o) const { return begin == o.begin && end == o.end; }
};

// Empty arrays, and an optional argument left out (no pointer), share nothing.
bool byte_range(const Array& a, ByteRange& r) {
  const int64_t bytes = a.numel() * itemsize_of(a.typestr);
  if (a.ptr == nullptr || bytes <= 0) return false;
  r.begin = reinterpret_cast<std::uintptr_t>(a.ptr);
  r.end = r.begin + static_cast<std::uintptr_t>(bytes);
  return true;
}
}  // namespace

void expect_disjoint(std::initializer_list<const Array*> written, std::initializer_list<const Array*> read,
                     bool in_place) {
  for (auto w = written.begin(); w != written.end(); ++w) {
    ByteRange out, other;
    if (!byte_range(**w, out)) continue;
    for (auto o = w + 1; o != written.end(); ++o)
      if (byte_range(**o, other) && out.overlaps(other))
        throw py::value_error("arguments '" + (*w)->name + "' and '" + (*o)->name +
                              "' must not share memory: the call writes both");
    for (const Array* r : read)
      if (byte_range(*r, other) && out.overlaps(other) && !(in_place && out == other))
        throw py::value_error("argument '" + (*w)->name + "' must not share memory with '" + r->name +
                              "': the call writes '" + (*w)->name + "' while it reads '" + r->name +
                              "'; pass a separate output array");
  }
}

namespace {
// Both overloads' one body, over a view of the pointers: the call every op makes copies nothing to the heap.
Launch launch_on_arrays(Array* const* arrays, size_t count, std::uintptr_t stream) {
  Launch l;
  if (count == 0) return l;
  Array* const* const stop = arrays + count;
  const Array* first = *arrays;
  for (Array* const* a = arrays; a != stop; ++a)
    if ((*a)->on_gpu() != first->on_gpu())
      throw py::type_error("arguments '" + first->name + "' and '" + (*a)->name + "' must both be numpy arrays or both GPU arrays; got " +
                           (first->on_gpu() ? "a GPU array and a numpy array" : "a numpy array and a GPU array"));
  if (!first->on_gpu()) return l;
  if (!built_with_cuda()) throw_no_cuda();
  // Devices are looked up only now, after the cheap checks, and only for GPU calls.
  for (Array* const* a = arrays; a != stop; ++a) (*a)->device = device_of_pointer((*a)->ptr, (*a)->name);
  l.device = first->device;
  for (Array* const* a = arrays; a != stop; ++a) {
    if ((*a)->device != first->device)
      throw py::value_error("arguments '" + first->name + "' (cuda:" + std::to_string(first->device) + ") and '" + (*a)->name +
                            "' (cuda:" + std::to_string((*a)->device) + ") are on different GPUs; copy one to the other's device");
  }
  l.stream = reinterpret_cast<Stream>(stream);
  return l;
}
}  // namespace

Launch launch_on(std::initializer_list<Array*> arrays, std::uintptr_t stream) {
  return launch_on_arrays(arrays.begin(), arrays.size(), stream);
}

Launch launch_on(const std::vector<Array*>& arrays, std::uintptr_t stream) {
  return launch_on_arrays(arrays.data(), arrays.size(), stream);
}

[[noreturn]] void throw_no_cuda() {
  throw py::type_error(
      "GPU arrays were passed, but this build of pyalexnet has no CUDA backend (nvcc was not found when it was "
      "built, or PYALEXNET_CUDA=OFF). Reinstall with nvcc on PATH, or pass numpy arrays.");
}

DeviceGuard::DeviceGuard(int device) {
#ifdef PYA_WITH_CUDA
  PYA_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) PYA_CUDA_CHECK(cudaSetDevice(device));
  else previous_ = -1;
#else
  (void)device;
#endif
}

DeviceGuard::~DeviceGuard() {
#ifdef PYA_WITH_CUDA
  if (previous_ >= 0) cudaSetDevice(previous_);
#endif
}

}  // namespace pya
