// like vLLM's csrc/libtorch_stable/moe/dsv3_router_gemm_entry.cu: the op calls templates it only declares, which
// two other sources of its library define and instantiate
#include "ops.h"

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
