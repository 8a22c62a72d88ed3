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

// c[i][j] = v[j] for i < m, j < n (row stride ldc): a bias row before a gemm with beta = 1.
template <class T>
void broadcast_rows(int64_t m, int64_t n, const T* v, T* c, int64_t ldc, std::uintptr_t stream);

// out[j] = sum over i of x[i * n + j], x (m, n) contiguous, in a fixed order
// (deterministic): the bias gradient of linear. m == 0 gives zeros.
template <class T>
void sum_rows(int64_t m, int64_t n, const T* x, T* out, std::uintptr_t stream);

}  // namespace dk::cuda
