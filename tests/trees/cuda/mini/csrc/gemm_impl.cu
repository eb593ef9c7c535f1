// like vLLM's csrc/fp32_router_gemm.cu: defines the template and instantiates it for the entry
template <int kTokens>
__global__ void mini_gemm_kernel(float* out) { out[threadIdx.x] = kTokens; }

template <int kTokens>
void invoke_mini_gemm(float* out) {
  if (out != nullptr) mini_gemm_kernel<kTokens><<<1, 32>>>(out);
}

template void invoke_mini_gemm<1>(float*);
template void invoke_mini_gemm<2>(float*);
