#include "bind.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyalexnet's compiled kernels (CPU and, where built, CUDA). Use pyalexnet.ops, not this module.";
  pya::bind_device_info(m);
  pya::bind_elementwise(m);
  pya::bind_conv(m);
  pya::bind_layers(m);
  pya::bind_data(m);
}
