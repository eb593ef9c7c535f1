#include "ops.h"

#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY_FRAGMENT(_moe_C, ops) {
  ops.def("router_gemm(Tensor! out, int n) -> ()");
}

STABLE_TORCH_LIBRARY_IMPL(_moe_C, CUDA, ops) {
  ops.impl("router_gemm", TORCH_BOX(&router_gemm));
}
