// like vLLM's csrc/cpu/torch_bindings.cpp: the CPU build's registrations (no CUDA build has them)
#include <torch/library.h>

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def(
      "cpu_only_op(Tensor(a!) out, Tensor mat1, bool is_vnni, "
      "Tensor? scale) -> ()");
  ops.impl("cpu_only_op", torch::kCPU, &cpu_only_op);
}
