// CUDA batch norm, forward (training and eval) and backward: the CPU family's
// ops (csrc/cpu/batchnorm.h, same arguments and semantics) on device pointers,
// launched on `stream` (a cudaStream_t as an integer, as in cuda/activation.h).
// Plain C++ declarations, so the bindings compile without nvcc. Optional
// arrays are nullptr; so are empty ones.
#pragma once
#include <cstdint>

#include "core/params.h"

namespace dk::cuda {

template <class T>
void batchnorm_forward(const BatchNormParams& p, const T* x, const T* weight, const T* bias, T* running_mean,
                       T* running_var, T* y, T* save_mean, T* save_invstd, std::uintptr_t stream);
template <class T>
void batchnorm_backward(const BatchNormParams& p, const T* dy, const T* x, const T* weight, const T* save_mean,
                        const T* save_invstd, T* dx, T* dweight, T* dbias, std::uintptr_t stream);

}  // namespace dk::cuda
