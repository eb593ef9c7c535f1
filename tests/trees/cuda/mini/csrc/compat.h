#pragma once
// like vLLM's csrc/cuda_compat.h
#define WARP_SIZE 32
