#include "../kernels/elementwise.h"

#include "array.h"
#include "bind.h"

namespace pya {

void bind_elementwise(py::module_& m) {
  m.def("relu_forward", [](py::handle x_, py::handle y_, std::uintptr_t stream) {
    Array x = array_arg(x_, "x"), y = array_arg(y_, "y", true);
    expect_float32(x);
    expect_float32(y);
    expect_same_shape(x, y);
    Launch l = launch_on({&x, &y}, stream);
    PYA_DISPATCH(l, relu_forward, x.data<float>(), y.data<float>(), x.numel());
  }, py::arg("x"), py::arg("y"), py::arg("stream") = 0);

  m.def("relu_backward", [](py::handle dy_, py::handle y_, py::handle dx_, std::uintptr_t stream) {
    Array dy = array_arg(dy_, "dy"), y = array_arg(y_, "y"), dx = array_arg(dx_, "dx", true);
    for (const Array* a : {&dy, &y, &dx}) expect_float32(*a);
    expect_same_shape(dy, y);
    expect_same_shape(dy, dx);
    Launch l = launch_on({&dy, &y, &dx}, stream);
    PYA_DISPATCH(l, relu_backward, dy.data<float>(), y.data<float>(), dx.data<float>(), dy.numel());
  }, py::arg("dy"), py::arg("y"), py::arg("dx"), py::arg("stream") = 0);

  m.def("sgd_update", [](py::handle w_, py::handle dw_, py::handle v_, float lr, float momentum, float weight_decay,
                         std::uintptr_t stream) {
    Array w = array_arg(w_, "w", true), dw = array_arg(dw_, "dw"), v = array_arg(v_, "v", true);
    for (const Array* a : {&w, &dw, &v}) expect_float32(*a);
    expect_same_shape(w, dw);
    expect_same_shape(w, v);
    Launch l = launch_on({&w, &dw, &v}, stream);
    PYA_DISPATCH(l, sgd_update, w.data<float>(), dw.data<float>(), v.data<float>(), w.numel(), lr, momentum,
                 weight_decay);
  }, py::arg("w"), py::arg("dw"), py::arg("v"), py::arg("lr"), py::arg("momentum"), py::arg("weight_decay"),
     py::arg("stream") = 0);
}

}  // namespace pya
