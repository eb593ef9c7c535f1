#include "ops.h"

#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY_FRAGMENT(_moe_C, ops) {
  ops.def("router_gemm(Tensor! out, int n) -> ()");
}
