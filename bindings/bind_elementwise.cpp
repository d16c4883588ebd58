#include "../kernels/elementwise.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "array.h"
#include "bind.h"

namespace pya {

void bind_elementwise(py::module_& m) {
  m.def("relu_forward", [](py::handle x_, py::handle y_, std::uintptr_t stream) {
    Array x = array_arg(x_, "x"), y = array_arg(y_, "y", true);
    expect_float32(x);
    expect_float32(y);
    expect_same_shape(x, y);
    expect_disjoint({&y}, {&x}, /*in_place=*/true);
    Launch l = launch_on({&x, &y}, stream);
    PYA_DISPATCH(l, relu_forward, x.data<float>(), y.data<float>(), x.numel());
  }, py::arg("x"), py::arg("y"), py::arg("stream") = 0);

  m.def("relu_backward", [](py::handle dy_, py::handle y_, py::handle dx_, std::uintptr_t stream) {
    Array dy = array_arg(dy_, "dy"), y = array_arg(y_, "y"), dx = array_arg(dx_, "dx", true);
    for (const Array* a : {&dy, &y, &dx}) expect_float32(*a);
    expect_same_shape(dy, y);
    expect_same_shape(dy, dx);
    expect_disjoint({&dx}, {&dy, &y}, /*in_place=*/true);
    Launch l = launch_on({&dy, &y, &dx}, stream);
    PYA_DISPATCH(l, relu_backward, dy.data<float>(), y.data<float>(), dx.data<float>(), dy.numel());
  }, py::arg("dy"), py::arg("y"), py::arg("dx"), py::arg("stream") = 0);

  // ws, dws, vs: sequences of one length (one tensor each; `indexed` names them 'w[i]' in messages, else 'w').
  m.def("sgd_update", [](py::sequence ws, py::sequence dws, py::sequence vs, double lr_, double momentum_,
                         double weight_decay_, bool indexed, std::uintptr_t stream) {
    const float lr = float_param(lr_, "lr"), momentum = float_param(momentum_, "momentum"),
                weight_decay = float_param(weight_decay_, "weight_decay");
    const size_t n = ws.size();
    if (dws.size() != n || vs.size() != n)
      throw py::value_error("w, dw and v must be as many arrays each, got " + std::to_string(n) + ", " +
                            std::to_string(dws.size()) + " and " + std::to_string(vs.size()));
    if (n > size_t(1) << 20) throw py::value_error("sgd_update takes at most 2^20 parameters in one call");
    std::vector<Array> arrays;  // per tensor: w, v, dw (the order the overlap messages name them in)
    arrays.reserve(3 * n);
    for (size_t i = 0; i < n; ++i) {
      const std::string at = indexed ? "[" + std::to_string(i) + "]" : "";
      arrays.push_back(array_arg(ws[i], ("w" + at).c_str(), true));
      arrays.push_back(array_arg(vs[i], ("v" + at).c_str(), true));
      arrays.push_back(array_arg(dws[i], ("dw" + at).c_str()));
      Array &w = arrays[3 * i], &v = arrays[3 * i + 1], &dw = arrays[3 * i + 2];
      for (const Array* a : {&w, &v})
        if (a->dtype != DType::f32)
          throw py::type_error("argument '" + a->name + "' is updated in place and must be float32, got " +
                               (a->dtype == DType::other ? a->typestr : std::string(dtype_name(a->dtype))));
      expect_float32(dw);
      expect_same_shape(w, dw);
      expect_same_shape(w, v);
    }
    if (n == 0) return;
    std::vector<Array*> all;
    for (Array& a : arrays) all.push_back(&a);
    Launch l = launch_on(all, stream);
    // Updated in place element by element, an array that overlaps a written one reads values the update has
    // already written (no error, a wrong step): refused. Gradients may share memory with one another.
    std::vector<size_t> order(arrays.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    auto begin = [&](size_t k) { return reinterpret_cast<std::uintptr_t>(arrays[k].ptr); };
    auto end = [&](size_t k) { return begin(k) + std::uintptr_t(arrays[k].numel()) * sizeof(float); };
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return std::make_pair(begin(a), a) < std::make_pair(begin(b), b); });
    const size_t none = arrays.size();
    size_t reach_any = none, reach_written = none;  // the arrays seen so far that reach furthest
    for (size_t k : order) {
      if (arrays[k].numel() == 0) continue;
      const bool written = k % 3 != 2;
      const size_t other = written ? reach_any : reach_written;
      if (other != none && end(other) > begin(k))
        throw py::value_error("argument '" + arrays[k].name + "' must not share memory with '" + arrays[other].name +
                              "': sgd_update writes w and v in place");
      if (reach_any == none || end(k) > end(reach_any)) reach_any = k;
      if (written && (reach_written == none || end(k) > end(reach_written))) reach_written = k;
    }
    std::vector<SgdTensor> tensors(n);
    for (size_t i = 0; i < n; ++i)
      tensors[i] = {arrays[3 * i].data<float>(), arrays[3 * i + 2].data<float>(), arrays[3 * i + 1].data<float>(),
                    arrays[3 * i].numel()};
    PYA_DISPATCH(l, sgd_update, tensors.data(), static_cast<int>(n), lr, momentum, weight_decay);
  }, py::arg("w"), py::arg("dw"), py::arg("v"), py::arg("lr"), py::arg("momentum"), py::arg("weight_decay"),
     py::arg("indexed") = true, py::arg("stream") = 0);
}

}  // namespace pya
