#include "legacy_ops.h"
#include "core/registration.h"
#include <torch/library.h>

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("legacy_op(Tensor x, int n=2) -> Tensor");
  ops.impl("legacy_op", torch::kCUDA, &legacy_op);
}
