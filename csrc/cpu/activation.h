// Activation kernels: elementwise functions and softmax, forward and backward.
#pragma once
#include "core/params.h"
#include "cpu/dispatch.h"

namespace dk::cpu {

template <class T>
struct ActivationKernels {
  // y = f(x) over p.n contiguous elements (y may alias x).
  void (*forward)(const ActivationParams& p, const T* x, T* y);
  // dx = dy * f'(.) where `saved` is the forward input x, except for sigmoid and
  // tanh, whose derivative is cheaper from the output y (as in PyTorch).
  void (*backward)(const ActivationParams& p, const T* dy, const T* saved, T* dx);
  // softmax or log_softmax (p.log) over the middle axis of (outer, dim, inner).
  void (*softmax)(const SoftmaxParams& p, const T* x, T* y);
  // dx from dy and the forward output y.
  void (*softmax_backward)(const SoftmaxParams& p, const T* dy, const T* y, T* dx);
};

DK_DECLARE_KERNELS(ActivationKernels, activation)

}  // namespace dk::cpu
