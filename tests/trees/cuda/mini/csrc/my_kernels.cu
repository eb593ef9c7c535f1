// Copyright (c) 2024, Example Corp. All rights reserved.
#include "ops.h"
#include "common.h"
#include "sub/helper.cuh"
/* #include "unused.h" */

namespace mini {
template <typename T>
__global__ void my_op_kernel(T* out, const T* x, float eps) {
  // dynamic shared memory: sized by the launcher below
  extern __shared__ float smem[];
  out[threadIdx.x] = x[threadIdx.x] + eps;
}
__global__ void other_kernel(float* out) {}
}  // namespace mini

void my_op_impl(torch::stable::Tensor& out, torch::stable::Tensor& x, double eps) {
  const size_t smem_bytes = mini::kBlock * sizeof(float) * 2;
  (void)smem_bytes;
}

void other_op(torch::stable::Tensor& out, torch::stable::Tensor& x) {
  my_op_impl(out, x, 1e-6);
}
