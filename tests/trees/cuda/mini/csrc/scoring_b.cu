// like vLLM's csrc/moe/grouped_topk_kernels.cu: its own WARP_SIZE constant and another ScoringFunc; like
// cache_kernels.cu, it does not include ops.h, and gives the default argument ops.h gives too
#include <torch/csrc/stable/tensor.h>

namespace mini {
static constexpr int WARP_SIZE = 32;
enum ScoringFunc { SCORING_NONE = 0, SCORING_SIGMOID = 1 };
__global__ void scoring_b_kernel(float* out, int f) { out[threadIdx.x % WARP_SIZE] = f == SCORING_SIGMOID; }
}  // namespace mini

void scoring_b(torch::stable::Tensor& out, int64_t scoring_func = 0) { (void)out; (void)scoring_func; }
