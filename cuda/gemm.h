// CUDA GEMM: C = alpha * op(A) op(B) + beta * C on device pointers, row-major,
// the CPU engine's GemmParams (core/params.h), launched on `stream` (a
// cudaStream_t as an integer, as in cuda/activation.h). The other CUDA families
// (conv, rnn) call it for their matrix products. Plain C++ declarations, so the
// bindings compile without nvcc.
#pragma once
#include <cstdint>

#include "core/params.h"

namespace dk::cuda {

// tf32: float32 products on the tensor cores with TF32 inputs (about 10 bits of
// mantissa), opt-in; ignored for double. Default: float32-exact FMA tiles.
template <class T>
void gemm(const GemmParams& p, const T* a, const T* b, T* c, std::uintptr_t stream, bool tf32 = false);

}  // namespace dk::cuda
