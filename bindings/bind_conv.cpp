#include "bind.h"

namespace pya {

// convolution: registered by its kernel issue.
void bind_conv(py::module_& m) { (void)m; }

}  // namespace pya
