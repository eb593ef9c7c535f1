#pragma once
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/tensor.h>

void router_gemm(torch::stable::Tensor& out, int64_t n);
