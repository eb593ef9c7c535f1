#include "legacy_ops.h"
torch::Tensor legacy_op(torch::Tensor const& x, int64_t n) { return x * n; }
