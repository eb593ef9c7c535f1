// like vLLM's dsv3_router_gemm_bf16_out.cu: file-level helpers (not static) that the other output's
// source defines too; vLLM's CMake compiles the two on their own, in one translation unit they are redefinitions
__device__ __forceinline__ void fma(float2& d, float2 const& a, float2 const& b, float2 const& c) {
  d.x = a.x * b.x + c.x;
  d.y = a.y * b.y + c.y;
}

template <int VPT>
__device__ __forceinline__ void widen(float const* src, float* dst) {
#pragma unroll
  for (int i = 0; i < VPT; i++) dst[i] = src[i];
}

template <int kTokens>
__global__ void router_gemm_kernel_half_output(float* out) {
  float2 d, a = make_float2(kTokens, 1.f);
  fma(d, a, a, a);
  widen<1>(&d.x, out + threadIdx.x);
}

template <int kTokens>
void invokeRouterGemmHalfOutput(float* out) {
  if (out != nullptr) router_gemm_kernel_half_output<kTokens><<<1, 32>>>(out);
}

template void invokeRouterGemmHalfOutput<1>(float*);
