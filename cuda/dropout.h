// CUDA dropout kernels: the CPU family's ops (csrc/cpu/dropout.h) on device
// pointers, launched on `stream` (a cudaStream_t as an integer, as in
// cuda/activation.h). Plain C++ declarations, so the bindings compile without nvcc.
#pragma once
#include <cstdint>

#include "core/params.h"

namespace dk::cuda {

// y = x * mask / (1 - p), mask[i] = 1 when element i is kept by core/random.h's
// stream p.seed: the same mask, bit for bit, as the CPU kernel's.
template <class T>
void dropout_forward(const DropoutParams& p, const T* x, T* y, uint8_t* mask, std::uintptr_t stream);
// dx = dy * mask / (1 - p), mask nonzero where kept.
template <class T>
void dropout_backward(const DropoutParams& p, const T* dy, const uint8_t* mask, T* dx, std::uintptr_t stream);

}  // namespace dk::cuda
