// The GEMM engine: C = alpha * op(A) * op(B) + beta * C (see GemmParams).
#pragma once
#include "core/params.h"
#include "cpu/dispatch.h"

namespace dk::cpu {

template <class T>
struct GemmKernels {
  void (*gemm)(const GemmParams& p, const T* a, const T* b, T* c);
  // out[j] = sum over i of x[i * n + j], x (m, n): the bias gradient of linear.
  void (*sum_rows)(int64_t m, int64_t n, const T* x, T* out);
};

DK_DECLARE_KERNELS(GemmKernels, gemm)

template <class T>
inline void gemm(const GemmParams& p, const T* a, const T* b, T* c) {
  gemm_kernels<T>().gemm(p, a, b, c);
}

}  // namespace dk::cpu
