#pragma once
#include "../common.h"
#include <cuda_runtime.h>
#ifdef USE_ROCM
  #include "rocm_only.h"
#endif
