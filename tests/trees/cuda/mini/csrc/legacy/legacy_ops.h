#pragma once
#include <torch/all.h>
torch::Tensor legacy_op(torch::Tensor const& x, int64_t n);
