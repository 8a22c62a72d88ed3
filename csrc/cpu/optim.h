// Optimizer steps: one call updates every tensor of an optimizer in place.
#pragma once
#include <cstdint>

#include "core/params.h"
#include "cpu/dispatch.h"

namespace dk::cpu {

// count tensors of sizes[i] elements each; state arrays are parallel to params
// (nullptr where the optimizer keeps no such state).
template <class T>
struct TensorList {
  int64_t count = 0;
  T* const* params = nullptr;
  const T* const* grads = nullptr;
  const int64_t* sizes = nullptr;
};

template <class T>
struct OptimKernels {
  // torch.optim.SGD; momentum_buffers is nullptr when p.momentum == 0.
  void (*sgd)(const SgdParams& p, const TensorList<T>& t, T* const* momentum_buffers);
};

DK_DECLARE_KERNELS(OptimKernels, optim)

}  // namespace dk::cpu
