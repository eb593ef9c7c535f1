#include "../ops.h"
void my_op_impl(torch::stable::Tensor& out, torch::stable::Tensor& x, double eps) {}
