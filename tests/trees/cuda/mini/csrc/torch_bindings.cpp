#include "ops.h"
#include "core/registration.h"

#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY_FRAGMENT(_C, ops) {
  // A comment with ops.def("commented_out(Tensor x) -> ()") that must be ignored.
  ops.def(
      "my_op(Tensor! out, Tensor x, "
      "float eps=1e-6) -> ()");
  ops.def("other_op(Tensor! out, Tensor x) -> ()");
  ops.def("no_impl(Tensor x) -> ()");
  ops.def("cutlass_op(Tensor! out) -> ()");
  ops.def("ghost(Tensor! out) -> ()");
  ops.def("scoring_a(Tensor! out) -> ()");
  ops.def("scoring_b(Tensor! out, int scoring_func) -> ()");
  ops.def("gemm_op(Tensor! out, int n) -> ()");
#ifdef USE_ROCM
  ops.def("rocm_only(Tensor x) -> ()");
#endif
}

STABLE_TORCH_LIBRARY_IMPL(_C, CUDA, ops) {
  ops.impl("my_op", TORCH_BOX(&my_op_impl));
  ops.impl("other_op", TORCH_BOX(&other_op));
  ops.impl("cutlass_op", TORCH_BOX(&cutlass_op));
  ops.impl("ghost", TORCH_BOX(&ghost_impl));
  ops.impl("scoring_a", TORCH_BOX(&scoring_a));
  ops.impl("scoring_b", TORCH_BOX(&scoring_b));
  ops.impl("gemm_op", TORCH_BOX(&gemm_op));
}

STABLE_TORCH_LIBRARY_IMPL(_C, CPU, ops) {
  ops.impl("no_impl", TORCH_BOX(&no_impl_cpu));
}
