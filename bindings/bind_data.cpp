#include "bind.h"

namespace pya {

// augmentation: registered by its kernel issue.
void bind_data(py::module_& m) { (void)m; }

}  // namespace pya
