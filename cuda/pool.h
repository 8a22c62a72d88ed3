// CUDA pooling kernels: the CPU family's ops (csrc/cpu/pool.h) on device
// pointers, launched on `stream` (a cudaStream_t as an integer, as in
// cuda/activation.h). Plain C++ declarations, so the bindings compile without
// nvcc. Pointers must be device memory of one GPU (std::invalid_argument
// otherwise); a failed launch throws std::runtime_error naming the op.
#pragma once
#include <cstdint>

#include "core/params.h"

namespace dk::cuda {

// x (planes, ih, iw) -> y, indices (planes, oh, ow): as cpu::PoolKernels::max_pool2d,
// the same values and the same flat indices.
template <class T>
void max_pool2d(const PoolParams& p, const T* x, T* y, int64_t* indices, std::uintptr_t stream);
// dx (planes, ih, iw) from dy and indices (planes, oh, ow). Returns the number of
// indices outside [0, ih * iw) other than -1 (those add nothing); counting them
// waits for the kernel to finish.
template <class T>
int64_t max_pool2d_backward(const PoolParams& p, const T* dy, const int64_t* indices, T* dx,
                            std::uintptr_t stream);
template <class T>
void avg_pool2d(const PoolParams& p, const T* x, T* y, std::uintptr_t stream);
template <class T>
void avg_pool2d_backward(const PoolParams& p, const T* dy, T* dx, std::uintptr_t stream);
// y (planes) = the mean of each plane of x (planes, hw); hw > 0.
template <class T>
void global_avg_pool2d(int64_t planes, int64_t hw, const T* x, T* y, std::uintptr_t stream);
template <class T>
void global_avg_pool2d_backward(int64_t planes, int64_t hw, const T* dy, T* dx, std::uintptr_t stream);

}  // namespace dk::cuda
