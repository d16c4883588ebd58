// LRN, max-pooling, dropout and softmax. Every argument is validated here,
// before any launch; messages name the argument.
#include <cfloat>
#include <climits>
#include <array>
#include <cmath>
#include <vector>

#include <pybind11/stl.h>

#include "../kernels/dropout.h"
#include "../kernels/lrn.h"
#include "../kernels/pool.h"
#include "../kernels/random.h"
#include "../kernels/softmax.h"
#include "array.h"
#include "bind.h"

namespace pya {
namespace {

int64_t lrn_workspace(int64_t N, int C, int64_t HW, int size, bool gpu) {
  if (!gpu) return cpu::lrn_workspace_floats(N, C, HW, size);
#ifdef PYA_WITH_CUDA
  return cuda::lrn_workspace_floats(N, C, HW, size);
#else
  throw_no_cuda();
#endif
}

int check_lrn_size(int64_t size) {
  if (size < 1 || size % 2 == 0)
    throw py::value_error("LRN size must be an odd number >= 1 (a window centred on each map), got " +
                          std::to_string(size));
  return int_param(size, "LRN size", 1);
}

// The kernels (lrn.h, both backends) index channels with int up to c + size / 2, the window's far end: with
// C = 2^30 + 2 and size 2^31 - 1 that wrapped negative and the CPU read 8 GB before x (a segfault); with
// C = 2^31 - 1 and size 5 the last channels' windows came out empty.
void check_lrn_reach(int64_t C, int size, const std::string& name) {
  if (C + size / 2 > INT_MAX)
    throw py::value_error("argument '" + name + "' has " + std::to_string(C) + " channels; with LRN size " +
                          std::to_string(size) + " channels + size // 2 must be < 2^31 (the kernels index "
                          "channels with 32-bit integers)");
}

struct LrnParams {
  int size;
  float alpha, beta, k;
};

LrnParams check_lrn_params(const Array& x, int64_t size, double alpha, double beta, double k) {
  expect_float32(x);
  if (x.ndim() != 4)
    throw py::value_error("argument '" + x.name + "' must be 4-dimensional (N, C, H, W), got shape " + x.shape_str());
  LrnParams p{check_lrn_size(size), float_param(alpha, "alpha"), float_param(beta, "beta"), float_param(k, "k")};
  // A subnormal k: where alpha*sum is 0 the GPU's __fdividef by it overflows to inf, and 0 * inf is NaN.
  if (!(p.k >= FLT_MIN))
    throw py::value_error("k must be > 0, at least float32's smallest normal number 1.17549435e-38 (the denominator "
                          "k + alpha*sum must stay positive), got " + number(k));
  if (p.alpha < 0.f) throw py::value_error("alpha must be >= 0, got " + number(alpha));
  // The largest factor d^-beta (at d = k, a window of zeros) must be a float32: as inf it made y = 0 * inf = NaN
  // wherever a window held only zeros (k=1e-20, beta=2), on both backends, where the formula gives 0.
  const double largest = std::pow(double(p.k), -double(p.beta));
  if (!(largest <= 1e38))
    throw py::value_error("k ** -beta must be at most 1e38 (float32 overflows at 3.4e38: a window of zeros would "
                          "give NaN), got k=" + number(k) + ", beta=" + number(beta) + " (k ** -beta = " +
                          number(largest) + "); raise k or lower beta");
  if (x.dim(1) > INT_MAX) throw py::value_error("argument '" + x.name + "' has too many channels");
  check_lrn_reach(x.dim(1), p.size, x.name);
  return p;
}

PoolGeometry check_pool_shape(const std::vector<int64_t>& shape, const std::string& name, int64_t size_,
                              int64_t stride_) {
  if (shape.size() != 4)
    throw py::value_error("argument '" + name + "' must be 4-dimensional (N, C, H, W), got shape " + shape_str(shape));
  for (int64_t d : shape)
    if (d < 0) throw py::value_error("argument '" + name + "' has a negative dimension: " + shape_str(shape));
  const int size = int_param(size_, "pooling size", 1), stride = int_param(stride_, "pooling stride", 1);
  if (size < stride)
    throw py::value_error("pooling size (" + std::to_string(size) + ") must be >= stride (" + std::to_string(stride) +
                          "): windows must cover every input");
  if (size > shape[2] || size > shape[3])
    throw py::value_error("pooling size " + std::to_string(size) + " is larger than the input's spatial size " +
                          std::to_string(shape[2]) + "x" + std::to_string(shape[3]) + " (argument '" + name + "')");
  return pool_geometry(shape[2], shape[3], size, stride);
}

PoolGeometry check_pool(const Array& x, int64_t size, int64_t stride) {
  expect_float32(x);
  return check_pool_shape(x.shape, x.name, size, stride);
}

// An indexed pooling's pooled-shape arrays, (N, C, OH, OW): `pooled` (y or dy, float32) and the winner bytes
// (uint8). Stored winners are one byte per window: dh * size + dw must stay below 256.
void check_indexed(const Array& pooled, const Array& indices, int64_t N, int64_t C, const PoolGeometry& g) {
  const int size = g.size;
  if (size > kPoolMaxIndexedSize)
    throw py::value_error("pooling with stored indices needs size <= " + std::to_string(kPoolMaxIndexedSize) +
                          " (each window's winner is stored in one byte, dh * size + dw < 256), got size " +
                          std::to_string(size) + "; use the backward that recomputes the winners from x and y");
  const std::vector<int64_t> out_shape{N, C, g.OH, g.OW};
  expect_float32(pooled);
  expect_shape(pooled, out_shape);
  expect_dtype(indices, DType::u8);
  expect_shape(indices, out_shape);
}

// Any integer in [0, 2^64), named when it is not one (a uint64_t argument made a negative seed pybind11's
// "incompatible function arguments" with the repr of x).
uint64_t check_seed(py::handle seed) {
  py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(seed.ptr()));
  if (!index) {
    PyErr_Clear();
    throw py::type_error("seed must be an integer, got " + std::string(py::str(py::type::handle_of(seed).attr("__name__"))));
  }
  const unsigned long long v = PyLong_AsUnsignedLongLong(index.ptr());
  if (PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error("seed must be in [0, 2^64), got " + std::string(py::str(index)));
  }
  return v;
}

float check_dropout_p(double p) {
  if (!(p >= 0.0 && p < 1.0)) throw py::value_error("dropout p must be in [0, 1), got " + number(p));
  return static_cast<float>(1.0 / (1.0 - p));
}

void check_logits(const Array& x) {
  expect_float32(x);
  if (x.ndim() != 2)
    throw py::value_error("argument '" + x.name + "' must be 2-dimensional (N, classes), got shape " + x.shape_str());
  if (x.dim(1) < 1) throw py::value_error("argument '" + x.name + "' must have at least one class, got shape " + x.shape_str());
}

}  // namespace

void bind_layers(py::module_& m) {
  m.def("lrn_forward", [](py::handle x_, py::handle y_, int64_t size, double alpha, double beta, double k,
                          std::uintptr_t stream) {
    Array x = array_arg(x_, "x"), y = array_arg(y_, "y", true);
    const LrnParams p = check_lrn_params(x, size, alpha, beta, k);
    expect_float32(y);
    expect_same_shape(x, y);
    expect_disjoint({&y}, {&x});
    Launch l = launch_on({&x, &y}, stream);
    PYA_DISPATCH(l, lrn_forward, x.data<float>(), y.data<float>(), x.dim(0), static_cast<int>(x.dim(1)),
                 x.dim(2) * x.dim(3), p.size, p.alpha, p.beta, p.k);
  }, py::arg("x"), py::arg("y"), py::arg("size"), py::arg("alpha"), py::arg("beta"), py::arg("k"),
     py::arg("stream") = 0);

  m.def("lrn_workspace_floats", [](const std::vector<int64_t>& x_shape, int64_t size, bool gpu) {
    if (x_shape.size() != 4)
      throw py::value_error("argument 'x_shape' must have 4 dimensions (N, C, H, W), got " + shape_str(x_shape));
    for (int64_t d : x_shape)
      if (d < 0) throw py::value_error("argument 'x_shape' has a negative dimension: " + shape_str(x_shape));
    const int lrn_size = check_lrn_size(size);
    if (x_shape[1] > INT_MAX) throw py::value_error("argument 'x_shape' has too many channels");
    check_lrn_reach(x_shape[1], lrn_size, "x_shape");
    // Beyond 2^62 elements the workspace sizes (a few floats per element) wrap int64 (2^80 gave 0).
    if (product_exceeds(x_shape, int64_t(1) << 56))
      throw py::value_error("argument 'x_shape' " + shape_str(x_shape) + " has more than 2^56 elements, more than any "
                            "memory holds");
    return lrn_workspace(x_shape[0], static_cast<int>(x_shape[1]), x_shape[2] * x_shape[3], lrn_size, gpu);
  }, py::arg("x_shape"), py::arg("size"), py::arg("gpu"),
     "float32 elements of workspace lrn_backward needs on the CPU (gpu=False) or CUDA (gpu=True) backend; "
     "0: pass workspace=None.");

  m.def("lrn_backward", [](py::handle dy_, py::handle x_, py::handle y_, py::handle dx_, py::handle ws_, int64_t size,
                           double alpha, double beta, double k, std::uintptr_t stream) {
    Array dy = array_arg(dy_, "dy"), x = array_arg(x_, "x"), y = array_arg(y_, "y"),
          dx = array_arg(dx_, "dx", true);
    const LrnParams p = check_lrn_params(x, size, alpha, beta, k);
    for (const Array* a : {&dy, &y, &dx}) {
      expect_float32(*a);
      expect_same_shape(x, *a);
    }
    const int C = static_cast<int>(x.dim(1));
    const int64_t N = x.dim(0), HW = x.dim(2) * x.dim(3);
    const int64_t need = lrn_workspace(N, C, HW, p.size, x.on_gpu());
    Array ws;
    float* ws_ptr = nullptr;
    if (!ws_.is_none()) {
      ws = array_arg(ws_, "workspace", true);
      expect_float32(ws);
      ws_ptr = ws.data<float>();
    }
    if ((ws_.is_none() ? 0 : ws.numel()) < need)
      throw py::value_error("argument 'workspace' must hold " + std::to_string(need) + " floats for this call, got " +
                            (ws_.is_none() ? std::string("None") : std::to_string(ws.numel())) +
                            " (ask lrn_workspace_floats)");
    expect_disjoint({&dx, &ws}, {&dy, &x, &y});
    Launch l = ws_.is_none() ? launch_on({&dy, &x, &y, &dx}, stream) : launch_on({&dy, &x, &y, &dx, &ws}, stream);
    PYA_DISPATCH(l, lrn_backward, dy.data<float>(), x.data<float>(), y.data<float>(), dx.data<float>(), ws_ptr, N, C,
                 HW, p.size, p.alpha, p.beta, p.k);
  }, py::arg("dy"), py::arg("x"), py::arg("y"), py::arg("dx"), py::arg("workspace"), py::arg("size"),
     py::arg("alpha"), py::arg("beta"), py::arg("k"), py::arg("stream") = 0);

  // The output shape for an input shape, with the same checks as the kernels.
  m.def("max_pool_output_shape", [](std::vector<int64_t> shape, int64_t size, int64_t stride) {
    PoolGeometry g = check_pool_shape(shape, "x", size, stride);
    return py::make_tuple(shape[0], shape[1], g.OH, g.OW);
  }, py::arg("shape"), py::arg("size"), py::arg("stride"));

  m.def("max_pool_forward", [](py::handle x_, py::handle y_, int64_t size, int64_t stride, std::uintptr_t stream) {
    Array x = array_arg(x_, "x"), y = array_arg(y_, "y", true);
    PoolGeometry g = check_pool(x, size, stride);
    expect_float32(y);
    expect_shape(y, {x.dim(0), x.dim(1), g.OH, g.OW});
    expect_disjoint({&y}, {&x});
    Launch l = launch_on({&x, &y}, stream);
    PYA_DISPATCH(l, max_pool_forward, x.data<float>(), y.data<float>(), x.dim(0) * x.dim(1), x.dim(2), x.dim(3), g.size,
                 g.stride);
  }, py::arg("x"), py::arg("y"), py::arg("size"), py::arg("stride"), py::arg("stream") = 0);

  m.def("max_pool_backward", [](py::handle dy_, py::handle x_, py::handle y_, py::handle dx_, int64_t size,
                                int64_t stride, std::uintptr_t stream) {
    Array dy = array_arg(dy_, "dy"), x = array_arg(x_, "x"), y = array_arg(y_, "y"), dx = array_arg(dx_, "dx", true);
    PoolGeometry g = check_pool(x, size, stride);
    for (const Array* a : {&dy, &y, &dx}) expect_float32(*a);
    expect_shape(y, {x.dim(0), x.dim(1), g.OH, g.OW});
    expect_same_shape(y, dy);
    expect_same_shape(x, dx);
    expect_disjoint({&dx}, {&dy, &x, &y});
    Launch l = launch_on({&dy, &x, &y, &dx}, stream);
    PYA_DISPATCH(l, max_pool_backward, dy.data<float>(), x.data<float>(), y.data<float>(), dx.data<float>(),
                 x.dim(0) * x.dim(1), x.dim(2), x.dim(3), g.size, g.stride);
  }, py::arg("dy"), py::arg("x"), py::arg("y"), py::arg("dx"), py::arg("size"), py::arg("stride"),
     py::arg("stream") = 0);

  m.def("max_pool_forward_with_indices", [](py::handle x_, py::handle y_, py::handle indices_, int64_t size,
                                            int64_t stride, std::uintptr_t stream) {
    Array x = array_arg(x_, "x"), y = array_arg(y_, "y", true), indices = array_arg(indices_, "indices", true);
    PoolGeometry g = check_pool(x, size, stride);
    check_indexed(y, indices, x.dim(0), x.dim(1), g);
    expect_disjoint({&y, &indices}, {&x});
    Launch l = launch_on({&x, &y, &indices}, stream);
    PYA_DISPATCH(l, max_pool_forward_with_indices, x.data<float>(), y.data<float>(), indices.data<uint8_t>(),
                 x.dim(0) * x.dim(1), x.dim(2), x.dim(3), g.size, g.stride);
  }, py::arg("x"), py::arg("y"), py::arg("indices"), py::arg("size"), py::arg("stride"), py::arg("stream") = 0,
     "max_pool_forward that also writes each window's winner, dh * size + dw of its first maximal element, "
     "to the uint8 `indices` of y's shape (size <= 16).");

  // dx's shape is the input's: it is the only thing the backward needs of x.
  m.def("max_pool_backward_from_indices", [](py::handle dy_, py::handle indices_, py::handle dx_, int64_t size,
                                             int64_t stride, std::uintptr_t stream) {
    Array dy = array_arg(dy_, "dy"), indices = array_arg(indices_, "indices"), dx = array_arg(dx_, "dx", true);
    expect_float32(dx);
    PoolGeometry g = check_pool_shape(dx.shape, dx.name, size, stride);
    check_indexed(dy, indices, dx.dim(0), dx.dim(1), g);
    expect_disjoint({&dx}, {&dy, &indices});
    Launch l = launch_on({&dy, &indices, &dx}, stream);
    PYA_DISPATCH(l, max_pool_backward_from_indices, dy.data<float>(), indices.data<uint8_t>(), dx.data<float>(),
                 dx.dim(0) * dx.dim(1), dx.dim(2), dx.dim(3), g.size, g.stride);
  }, py::arg("dy"), py::arg("indices"), py::arg("dx"), py::arg("size"), py::arg("stride"), py::arg("stream") = 0,
     "dx of max-pooling from dy and the indices max_pool_forward_with_indices wrote; x is not read.");

  m.def("dropout_forward", [](py::handle x_, py::handle y_, py::handle mask_, py::handle seed_, double p,
                              std::uintptr_t stream) {
    Array x = array_arg(x_, "x"), y = array_arg(y_, "y", true), mask = array_arg(mask_, "mask", true);
    const uint64_t seed = check_seed(seed_);
    float scale = check_dropout_p(p);
    expect_float32(x);
    expect_float32(y);
    expect_dtype(mask, DType::u8);
    expect_same_shape(x, y);
    expect_same_shape(x, mask);
    expect_disjoint({&y, &mask}, {&x}, /*in_place=*/true);
    Launch l = launch_on({&x, &y, &mask}, stream);
    PYA_DISPATCH(l, dropout_forward, x.data<float>(), y.data<float>(), mask.data<uint8_t>(), x.numel(), seed,
                 probability_threshold(p), scale);
  }, py::arg("x"), py::arg("y"), py::arg("mask"), py::arg("seed"), py::arg("p"), py::arg("stream") = 0);

  m.def("dropout_backward", [](py::handle dy_, py::handle mask_, py::handle dx_, double p, std::uintptr_t stream) {
    Array dy = array_arg(dy_, "dy"), mask = array_arg(mask_, "mask"), dx = array_arg(dx_, "dx", true);
    float scale = check_dropout_p(p);
    expect_float32(dy);
    expect_float32(dx);
    expect_dtype(mask, DType::u8);
    expect_same_shape(dy, mask);
    expect_same_shape(dy, dx);
    expect_disjoint({&dx}, {&dy, &mask}, /*in_place=*/true);
    Launch l = launch_on({&dy, &mask, &dx}, stream);
    PYA_DISPATCH(l, dropout_backward, dy.data<float>(), mask.data<uint8_t>(), dx.data<float>(), dy.numel(), scale);
  }, py::arg("dy"), py::arg("mask"), py::arg("dx"), py::arg("p"), py::arg("stream") = 0);

  m.def("softmax_forward", [](py::handle x_, py::handle p_, std::uintptr_t stream) {
    Array x = array_arg(x_, "logits"), p = array_arg(p_, "probabilities", true);
    check_logits(x);
    expect_float32(p);
    expect_same_shape(x, p);
    expect_disjoint({&p}, {&x}, /*in_place=*/true);
    Launch l = launch_on({&x, &p}, stream);
    PYA_DISPATCH(l, softmax_forward, x.data<float>(), p.data<float>(), x.dim(0), x.dim(1));
  }, py::arg("logits"), py::arg("probabilities"), py::arg("stream") = 0);

  // One call: the per-row losses, dlogits, and stats = (sum of the row losses, smallest label, largest label) as 3 float64
  // (on the GPU, written by the kernel's last block, so reading them back is one small copy). `counter`: one uint32
  // on the arrays' device, 0 before the call and left at 0 (softmax.h); one per stream that may run such a call.
  m.def("softmax_cross_entropy", [](py::handle x_, py::handle labels_, py::handle loss_, py::handle dx_,
                                    py::handle stats_, py::handle counter_, std::uintptr_t stream) {
    Array x = array_arg(x_, "logits"), labels = array_arg(labels_, "labels"), loss = array_arg(loss_, "row_loss", true),
          dx = array_arg(dx_, "dlogits", true), stats = array_arg(stats_, "stats", true),
          counter = array_arg(counter_, "counter", true);
    check_logits(x);
    if (labels.dtype != DType::i32 && labels.dtype != DType::i64)
      throw py::type_error("argument 'labels' must have dtype int32 or int64, got " +
                           (labels.dtype == DType::other ? labels.typestr : std::string(dtype_name(labels.dtype))));
    expect_shape(labels, {x.dim(0)});
    expect_float32(loss);
    expect_shape(loss, {x.dim(0)});
    expect_float32(dx);
    expect_same_shape(x, dx);
    expect_dtype(stats, DType::f64);
    expect_shape(stats, {3});
    expect_dtype(counter, DType::u32);
    if (counter.numel() != 1)
      throw py::value_error("argument 'counter' must hold exactly one uint32 (zeroed once, reused by every call on "
                            "its stream), got shape " + counter.shape_str());
    if (x.dim(0) < 1)
      throw py::value_error("softmax_cross_entropy needs at least one row: the mean over an empty batch is undefined");
    // (dlogits in place of the logits: the row loss reads the label's logit after the row's gradient is written)
    expect_disjoint({&dx, &loss, &stats, &counter}, {&x, &labels});
    Launch l = launch_on({&x, &labels, &loss, &dx, &stats, &counter}, stream);
    if (labels.dtype == DType::i32)
      PYA_DISPATCH(l, softmax_cross_entropy, x.data<float>(), labels.data<int32_t>(), loss.data<float>(),
                   dx.data<float>(), stats.data<double>(), counter.data<uint32_t>(), x.dim(0), x.dim(1));
    else
      PYA_DISPATCH(l, softmax_cross_entropy, x.data<float>(), labels.data<int64_t>(), loss.data<float>(),
                   dx.data<float>(), stats.data<double>(), counter.data<uint32_t>(), x.dim(0), x.dim(1));
  }, py::arg("logits"), py::arg("labels"), py::arg("row_loss"), py::arg("dlogits"), py::arg("stats"),
     py::arg("counter"), py::arg("stream") = 0);

  // The generator behind dropout, for known-answer tests and for host code that
  // must reproduce a device stream.
  m.def("philox4x32_10", [](std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
    Philox4x32 r = philox4x32_10(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1]);
    return py::make_tuple(r.v[0], r.v[1], r.v[2], r.v[3]);
  }, py::arg("counter"), py::arg("key"));
}

}  // namespace pya
