// Dropout kernels, forward and backward.
#pragma once
#include <cstdint>

#include "core/params.h"
#include "cpu/dispatch.h"

namespace dk::cpu {

template <class T>
struct DropoutKernels {
  // y = x * mask / (1 - p), mask[i] = 1 when element i is kept (core/random.h).
  void (*forward)(const DropoutParams& p, const T* x, T* y, uint8_t* mask);
  // dx = dy * mask / (1 - p).
  void (*backward)(const DropoutParams& p, const T* dy, const uint8_t* mask, T* dx);
};

DK_DECLARE_KERNELS(DropoutKernels, dropout)

}  // namespace dk::cpu
