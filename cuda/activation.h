// CUDA activation kernels: the CPU family's ops (csrc/cpu/activation.h) on
// device pointers, launched on `stream` (a cudaStream_t as an integer: 0 the
// default stream, 1 the legacy, 2 the per-thread default stream). Plain C++
// declarations, so the bindings compile without nvcc. All pointers must be
// device memory of one GPU (checked: std::invalid_argument); a failed launch
// throws std::runtime_error naming the op.
#pragma once
#include <cstdint>

#include "core/params.h"

namespace dk::cuda {

template <class T>
void activation_forward(const ActivationParams& p, const T* x, T* y, std::uintptr_t stream);
template <class T>
void activation_backward(const ActivationParams& p, const T* dy, const T* saved, T* dx, std::uintptr_t stream);
template <class T>
void softmax_forward(const SoftmaxParams& p, const T* x, T* y, std::uintptr_t stream);
template <class T>
void softmax_backward(const SoftmaxParams& p, const T* dy, const T* y, T* dx, std::uintptr_t stream);

}  // namespace dk::cuda
