#include "bind.h"

namespace pya {

// LRN, pooling, dropout, softmax: registered by its kernel issue.
void bind_layers(py::module_& m) { (void)m; }

}  // namespace pya
