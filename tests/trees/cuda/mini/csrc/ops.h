#pragma once
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/tensor.h>

void my_op_impl(torch::stable::Tensor& out, torch::stable::Tensor& x, double eps);
void other_op(torch::stable::Tensor& out, torch::stable::Tensor& x);
void cutlass_op(torch::stable::Tensor& out);
void ghost_impl(torch::stable::Tensor& out);
