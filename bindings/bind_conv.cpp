// conv2d: every shape check has one home, conv_shape() below. Python asks
// conv2d_shape() for the output shape and conv2d_workspace_size() for the
// workspace, allocates both, and the launchers re-validate everything from the
// arrays they are given before running. Every entry point takes algorithm="auto"
// ("auto" | "direct" | "winograd" | "fft", see kernels/conv_winograd.h and
// kernels/conv_fft.h); the workspace size depends on it, so size and launch must
// name the same one.
#include <pybind11/stl.h>

#include <initializer_list>
#include <limits>
#include <string>

#include "../kernels/conv.h"
#include "../kernels/conv_fft.h"
#include "../kernels/conv_winograd.h"
#include "array.h"
#include "bind.h"

namespace pya {
namespace {

std::string dims(const std::vector<int64_t>& shape) { return shape_str(shape); }

ConvAlgorithm parse_algorithm(const std::string& algorithm) {
  if (algorithm == "auto") return ConvAlgorithm::automatic;
  if (algorithm == "direct") return ConvAlgorithm::direct;
  if (algorithm == "winograd") return ConvAlgorithm::winograd;
  if (algorithm == "fft") return ConvAlgorithm::fft;
  throw py::value_error("algorithm must be 'auto', 'direct', 'winograd' or 'fft', got '" + algorithm + "'");
}

ConvShape conv_shape(const std::vector<int64_t>& x, const std::vector<int64_t>& w, int64_t stride, int64_t padding,
                     int64_t groups, const std::string& algorithm = "auto") {
  const ConvAlgorithm algo = parse_algorithm(algorithm);
  if (x.size() != 4)
    throw py::value_error("x must be 4-dimensional (N, C, H, W), got shape " + dims(x));
  if (w.size() != 4)
    throw py::value_error("w must be 4-dimensional (K, C/groups, R, S), got shape " + dims(w));
  if (stride < 1) throw py::value_error("stride must be >= 1, got " + std::to_string(stride));
  if (padding < 0) throw py::value_error("padding must be >= 0, got " + std::to_string(padding));
  if (groups < 1) throw py::value_error("groups must be >= 1, got " + std::to_string(groups));
  // The CUDA launchers pass them as int (and the stride to FastDiv, which needs d < 2^31: a stride of
  // 2^32 would truncate to 0 and divide by zero on the host).
  constexpr int64_t kMaxHyper = std::numeric_limits<int32_t>::max();
  if (stride > kMaxHyper) throw py::value_error("stride must be < 2^31, got " + std::to_string(stride));
  if (padding > kMaxHyper) throw py::value_error("padding must be < 2^31, got " + std::to_string(padding));
  ConvShape s;
  s.N = x[0], s.C = x[1], s.H = x[2], s.W = x[3];
  s.K = w[0], s.R = w[2], s.S = w[3];
  s.stride = stride, s.pad = padding, s.groups = groups;
  if (s.C < 1 || s.H < 1 || s.W < 1 || s.N < 0)
    throw py::value_error("x must have at least one channel, row and column, got shape " + dims(x));
  if (s.K < 1 || w[1] < 1 || s.R < 1 || s.S < 1)
    throw py::value_error("w must have at least one filter, channel, row and column, got shape " + dims(w));
  if (s.C % groups != 0)
    throw py::value_error("groups=" + std::to_string(groups) + " does not divide the " + std::to_string(s.C) +
                          " input channels of x " + dims(x));
  if (s.K % groups != 0)
    throw py::value_error("groups=" + std::to_string(groups) + " does not divide the " + std::to_string(s.K) +
                          " filters of w " + dims(w));
  if (w[1] > s.C || w[1] * groups != s.C)  // (the first test keeps the product from wrapping int64)
    throw py::value_error("channel mismatch: w " + dims(w) + " expects " + std::to_string(w[1]) +
                          " input channels per group, so x needs " + std::to_string(w[1] * groups) +
                          " channels with groups=" + std::to_string(groups) + ", but x " + dims(x) + " has " +
                          std::to_string(s.C));
  if (s.H + 2 * padding < s.R || s.W + 2 * padding < s.S)
    throw py::value_error("filter " + std::to_string(s.R) + "x" + std::to_string(s.S) +
                          " is larger than the padded input " + std::to_string(s.H + 2 * padding) + "x" +
                          std::to_string(s.W + 2 * padding) + " (x " + dims(x) + ", padding=" +
                          std::to_string(padding) + ")");
  s.P = conv_out_size(s.H, s.R, stride, padding);
  s.Q = conv_out_size(s.W, s.S, stride, padding);
  // The GPU kernels index with 32-bit integers (and FastDiv needs n < 2^31). Their last tile computes
  // indices up to ~150 past a tensor's end (columns rounded up to 128, reduction read 16+ ahead), so
  // leave room: a tensor just under 2^31 elements would overflow int there.
  // Products in long double: padding and stride up to 2^31 make int64 products of four sizes wrap (a
  // padding of 2^31 - 1 once passed this check with a wrapped padded plane).
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max() - 1024;
  const auto over = [](std::initializer_list<int64_t> sizes) { return product_exceeds(sizes, kMax); };
  // Each named as what it is: "split the batch" was the advice for a padding of 2^20 on one image.
  const auto too_big = [&](const std::string& what, std::initializer_list<int64_t> sizes, const char* advice) {
    std::string dims_text;
    for (int64_t v : sizes) dims_text += (dims_text.empty() ? "" : "x") + std::to_string(v);
    throw py::value_error("conv2d: the " + what + " (" + dims_text + ") has 2^31 - 1024 or more elements, more than "
                          "the kernels index; " + advice);
  };
  const char* smaller = s.N > 1 ? "split the batch" : "use a smaller image";
  if (over({s.N, s.C, s.H, s.W})) too_big("input x", {s.N, s.C, s.H, s.W}, smaller);
  if (over({s.H + 2 * padding, s.W + 2 * padding}))
    too_big("padded input plane", {s.H + 2 * padding, s.W + 2 * padding}, "use less padding");
  if (over({s.N, s.K, s.P, s.Q})) too_big("output", {s.N, s.K, s.P, s.Q}, smaller);
  if (over({s.K, s.Cg(), s.R, s.S})) too_big("filter tensor w", {s.K, s.Cg(), s.R, s.S}, "use fewer or smaller filters");
  // The same refusal on both backends (the CPU backend ignores the algorithm), so code tested on the CPU
  // does not fail later on a GPU.
  s.algorithm = algo;
  if (algo == ConvAlgorithm::winograd)
    if (const char* why = winograd::unsupported(s))
      throw py::value_error(std::string("algorithm='winograd' needs ") + why + " (got " + std::to_string(s.R) + "x" +
                            std::to_string(s.S) + " filters, stride " + std::to_string(stride) + ", groups " +
                            std::to_string(groups) + ")");
  // "fft" only changes the filter gradient, but is refused for every pass of a shape it cannot do, so that
  // one algorithm named for a whole backward (dx and dw) fails early and the same way everywhere.
  if (algo == ConvAlgorithm::fft)
    if (const char* why = fft::unsupported(s))
      throw py::value_error(std::string("algorithm='fft' needs ") + why + "; got stride " + std::to_string(stride) +
                            " and a " + std::to_string(s.H + 2 * padding) + "x" + std::to_string(s.W + 2 * padding) +
                            " padded input (use 'auto' or 'direct')");
  return s;
}

std::vector<int64_t> out_shape(const ConvShape& s) { return {s.N, s.K, s.P, s.Q}; }

ConvPass parse_pass(const std::string& pass) {
  if (pass == "forward") return ConvPass::forward;
  if (pass == "backward_data") return ConvPass::backward_data;
  if (pass == "backward_filter") return ConvPass::backward_filter;
  if (pass == "backward_bias") return ConvPass::backward_bias;
  throw py::value_error("pass must be 'forward', 'backward_data', 'backward_filter' or 'backward_bias', got '" + pass +
                        "'");
}

int64_t workspace_floats(const ConvShape& s, ConvPass pass, bool gpu) {
  if (!gpu) return cpu::conv2d_workspace_floats(s, pass);
#ifdef PYA_WITH_CUDA
  return cuda::conv2d_workspace_floats(s, pass);
#else
  throw_no_cuda();
#endif
}

void expect_workspace(const Array& ws, const ConvShape& s, ConvPass pass) {
  expect_float32(ws);
  const int64_t need = workspace_floats(s, pass, ws.on_gpu());
  if (ws.numel() < need)
    throw py::value_error("argument 'workspace' has " + std::to_string(ws.numel()) + " floats, but this call needs " +
                          std::to_string(need) + " (ask conv2d_workspace_size)");
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv2d_shape", [](const std::vector<int64_t>& x_shape, const std::vector<int64_t>& w_shape, int64_t stride,
                           int64_t padding, int64_t groups, const std::string& algorithm) {
    return out_shape(conv_shape(x_shape, w_shape, stride, padding, groups, algorithm));
  }, py::arg("x_shape"), py::arg("w_shape"), py::arg("stride"), py::arg("padding"), py::arg("groups"),
     py::arg("algorithm") = "auto",
     "Validates a conv2d call and returns the output shape (N, K, P, Q). algorithm: 'auto', 'direct', "
     "'winograd' or 'fft' (CUDA only; the CPU backend ignores it, but 'winograd' and 'fft' are refused for "
     "shapes they cannot do on either backend; 'fft' changes only the filter gradient).");

  m.def("conv2d_workspace_size", [](const std::vector<int64_t>& x_shape, const std::vector<int64_t>& w_shape,
                                    int64_t stride, int64_t padding, int64_t groups, const std::string& pass, bool gpu,
                                    const std::string& algorithm) {
    return workspace_floats(conv_shape(x_shape, w_shape, stride, padding, groups, algorithm), parse_pass(pass), gpu);
  }, py::arg("x_shape"), py::arg("w_shape"), py::arg("stride"), py::arg("padding"), py::arg("groups"),
     py::arg("pass"), py::arg("gpu"), py::arg("algorithm") = "auto",
     "float32 elements of workspace that `pass` needs on the CPU (gpu=False) or CUDA (gpu=True) backend, "
     "computed with `algorithm` (the launch must name the same one).");

  m.def("conv2d_forward", [](py::handle x_, py::handle w_, py::handle b_, py::handle y_, py::handle ws_, int64_t stride,
                             int64_t padding, int64_t groups, std::uintptr_t stream, const std::string& algorithm) {
    Array x = array_arg(x_, "x"), w = array_arg(w_, "w"), y = array_arg(y_, "y", true);
    Array ws = array_arg(ws_, "workspace", true);
    const bool has_b = !b_.is_none();
    Array b = has_b ? array_arg(b_, "b") : Array{};
    for (const Array* a : {&x, &w, &y}) expect_float32(*a);
    if (has_b) expect_float32(b);
    ConvShape s = conv_shape(x.shape, w.shape, stride, padding, groups, algorithm);
    if (has_b) expect_shape(b, {s.K});
    expect_shape(y, out_shape(s));
    expect_workspace(ws, s, ConvPass::forward);
    expect_disjoint({&y, &ws}, {&x, &w, &b});
    Launch l = has_b ? launch_on({&x, &w, &b, &y, &ws}, stream) : launch_on({&x, &w, &y, &ws}, stream);
    PYA_DISPATCH(l, conv2d_forward, x.data<float>(), w.data<float>(), has_b ? b.data<float>() : nullptr,
                 y.data<float>(), s, ws.data<float>(), ws.numel());
  }, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("y"), py::arg("workspace"), py::arg("stride"),
     py::arg("padding"), py::arg("groups"), py::arg("stream") = 0, py::arg("algorithm") = "auto");

  m.def("conv2d_backward_data", [](py::handle dy_, py::handle w_, py::handle dx_, py::handle ws_, int64_t stride,
                                   int64_t padding, int64_t groups, std::uintptr_t stream,
                                   const std::string& algorithm) {
    Array dy = array_arg(dy_, "dy"), w = array_arg(w_, "w"), dx = array_arg(dx_, "dx", true);
    Array ws = array_arg(ws_, "workspace", true);
    for (const Array* a : {&dy, &w, &dx}) expect_float32(*a);
    ConvShape s = conv_shape(dx.shape, w.shape, stride, padding, groups, algorithm);
    expect_shape(dy, out_shape(s));
    expect_workspace(ws, s, ConvPass::backward_data);
    expect_disjoint({&dx, &ws}, {&dy, &w});
    Launch l = launch_on({&dy, &w, &dx, &ws}, stream);
    PYA_DISPATCH(l, conv2d_backward_data, dy.data<float>(), w.data<float>(), dx.data<float>(), s, ws.data<float>(),
                 ws.numel());
  }, py::arg("dy"), py::arg("w"), py::arg("dx"), py::arg("workspace"), py::arg("stride"), py::arg("padding"),
     py::arg("groups"), py::arg("stream") = 0, py::arg("algorithm") = "auto");

  m.def("conv2d_backward_filter", [](py::handle dy_, py::handle x_, py::handle dw_, py::handle ws_, int64_t stride,
                                     int64_t padding, int64_t groups, std::uintptr_t stream,
                                     const std::string& algorithm) {
    Array dy = array_arg(dy_, "dy"), x = array_arg(x_, "x"), dw = array_arg(dw_, "dw", true);
    Array ws = array_arg(ws_, "workspace", true);
    for (const Array* a : {&dy, &x, &dw}) expect_float32(*a);
    ConvShape s = conv_shape(x.shape, dw.shape, stride, padding, groups, algorithm);
    expect_shape(dy, out_shape(s));
    expect_workspace(ws, s, ConvPass::backward_filter);
    expect_disjoint({&dw, &ws}, {&dy, &x});
    Launch l = launch_on({&dy, &x, &dw, &ws}, stream);
    PYA_DISPATCH(l, conv2d_backward_filter, dy.data<float>(), x.data<float>(), dw.data<float>(), s, ws.data<float>(),
                 ws.numel());
  }, py::arg("dy"), py::arg("x"), py::arg("dw"), py::arg("workspace"), py::arg("stride"), py::arg("padding"),
     py::arg("groups"), py::arg("stream") = 0, py::arg("algorithm") = "auto");

  m.def("conv2d_backward_bias", [](py::handle dy_, py::handle db_, py::handle ws_, std::uintptr_t stream) {
    Array dy = array_arg(dy_, "dy"), db = array_arg(db_, "db", true), ws = array_arg(ws_, "workspace", true);
    expect_float32(dy);
    expect_float32(db);
    expect_ndim(dy, 4);
    ConvShape s;  // only N, K, P, Q matter for the bias
    s.N = dy.dim(0), s.K = dy.dim(1), s.P = dy.dim(2), s.Q = dy.dim(3);
    s.C = s.K, s.H = s.P, s.W = s.Q, s.R = s.S = 1;
    expect_shape(db, {s.K});
    expect_workspace(ws, s, ConvPass::backward_bias);
    expect_disjoint({&db, &ws}, {&dy});
    Launch l = launch_on({&dy, &db, &ws}, stream);
    PYA_DISPATCH(l, conv2d_backward_bias, dy.data<float>(), db.data<float>(), s, ws.data<float>(), ws.numel());
  }, py::arg("dy"), py::arg("db"), py::arg("workspace"), py::arg("stream") = 0);
}

}  // namespace pya
