// like vLLM's csrc/fp32_router_gemm_entry.cu: the op calls a template it only declares
#include "ops.h"

template <int kTokens>
void invoke_mini_gemm(float* out);

void gemm_op(torch::stable::Tensor& out, int64_t n) {
  if (n == 1) {
    invoke_mini_gemm<1>(nullptr);
  } else {
    invoke_mini_gemm<2>(nullptr);
  }
  (void)out;
}
