// CUDA 2-D convolution, NCHW (ConvParams, core/params.h), as the CPU family
// (csrc/cpu/conv.h): x (n, c, h, w), w (k, c / groups, r, s), y (n, k, oh, ow),
// launched on `stream` (a cudaStream_t as an integer, as in cuda/activation.h).
// Plain C++ declarations, so the bindings compile without nvcc. All pointers
// must be device memory of one GPU (checked: std::invalid_argument); a failed
// launch or workspace allocation throws std::runtime_error naming the op.
// tf32: the matrix products on the tensor cores (float only, see cuda/gemm.h).
// Deterministic: the same inputs give the same bits on every run.
#pragma once
#include <cstdint>

#include "core/params.h"

namespace dk::cuda {

// y from x, w and b (k) or nullptr.
template <class T>
void conv_forward(const ConvParams& p, const T* x, const T* w, const T* b, T* y, std::uintptr_t stream,
                  bool tf32 = false);
// dx (n, c, h, w) from dy (n, k, oh, ow) and w: every element written.
template <class T>
void conv_backward_data(const ConvParams& p, const T* dy, const T* w, T* dx, std::uintptr_t stream,
                        bool tf32 = false);
// dw (k, c / groups, r, s) = sum over the batch of dy correlated with x, and
// db (k) = sum of dy over the batch and the positions; either may be nullptr.
// n == 0 gives zeros.
template <class T>
void conv_backward_weight(const ConvParams& p, const T* dy, const T* x, T* dw, T* db, std::uintptr_t stream,
                          bool tf32 = false);

}  // namespace dk::cuda
