// 2-D convolution of NCHW arrays, forward and backward (ConvParams), as
// torch.nn.functional.conv2d: a cross-correlation with stride, padding,
// dilation and groups; weights (k, c / groups, r, s).
// The algorithm is picked by shape inside (conv.cpp says which and why).
// Results are bit-identical for any thread count.
#pragma once
#include <cstdint>

#include "core/params.h"
#include "cpu/dispatch.h"

namespace dk::cpu {

template <class T>
struct ConvKernels {
  // y (n, k, oh, ow) from x (n, c, h, w), w (k, c / groups, r, s) and b (k) or nullptr.
  void (*forward)(const ConvParams& p, const T* x, const T* w, const T* b, T* y);
  // dx (n, c, h, w) from dy (n, k, oh, ow) and w: every element written.
  void (*backward_data)(const ConvParams& p, const T* dy, const T* w, T* dx);
  // dw (k, c / groups, r, s) = sum over the batch of dy correlated with x, and
  // db (k) = sum of dy over the batch and the positions; either may be nullptr.
  // n == 0 gives zeros.
  void (*backward_weight)(const ConvParams& p, const T* dy, const T* x, T* dw, T* db);
};

DK_DECLARE_KERNELS(ConvKernels, conv)

}  // namespace dk::cpu
