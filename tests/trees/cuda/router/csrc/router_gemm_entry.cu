// like vLLM's csrc/libtorch_stable/moe/dsv3_router_gemm_entry.cu: the op calls templates it only declares, which
// two other sources of its library define and instantiate; it registers its own implementation, and needs its
// CMake target's definitions (vLLM's torch_utils.h declares its CUDA stream calls under USE_CUDA)
#include "ops.h"

#ifndef USE_CUDA
  #error "compiled without the definitions of its CMake target (USE_CUDA)"
#endif

template <int kTokens>
void invokeRouterGemmFloatOutput(float* out);

template <int kTokens>
void invokeRouterGemmHalfOutput(float* out);

void router_gemm(torch::stable::Tensor& out, int64_t n) {
  if (n == 1) {
    invokeRouterGemmFloatOutput<1>(nullptr);
  } else {
    invokeRouterGemmHalfOutput<1>(nullptr);
  }
  (void)out;
}

STABLE_TORCH_LIBRARY_IMPL(_moe_C, CUDA, m) {
  m.impl("router_gemm", TORCH_BOX(&router_gemm));
}
