// One registration function per group of ops; module.cpp calls them all.
// Each group lives in its own bind_*.cpp so that its owner edits only that file.
#pragma once
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace pya {
void bind_device_info(py::module_& m);  // device_info.cpp
void bind_elementwise(py::module_& m);  // bind_elementwise.cpp: relu, sgd_update
void bind_conv(py::module_& m);         // bind_conv.cpp: convolution
void bind_layers(py::module_& m);       // bind_layers.cpp: lrn, pooling, dropout, softmax
void bind_data(py::module_& m);         // bind_data.cpp: augmentation
}  // namespace pya
