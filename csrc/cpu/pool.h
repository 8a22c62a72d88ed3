// 2-D pooling of NCHW planes, forward and backward: max and average over
// windows (PoolParams), and global average over whole planes.
#pragma once
#include <cstdint>

#include "core/params.h"
#include "cpu/dispatch.h"

namespace dk::cpu {

template <class T>
struct PoolKernels {
  // x (planes, ih, iw) -> y, indices (planes, oh, ow): each window's maximum and the
  // flat index h * iw + w within its plane of the first maximum in row-major window
  // order, where a NaN always replaces the running maximum (torch's rule). A window
  // lying wholly in padding (possible only with dilation) gives -inf and index -1.
  void (*max_pool2d)(const PoolParams& p, const T* x, T* y, int64_t* indices);
  // dx (planes, ih, iw) = 0, then dx[plane][indices[o]] += dy[o] for each output o.
  // Index -1 (an empty window) adds nothing. Any other index outside [0, ih * iw)
  // adds nothing either and is counted: returns the count (the binding raises).
  int64_t (*max_pool2d_backward)(const PoolParams& p, const T* dy, const int64_t* indices, T* dx);
  // y (planes, oh, ow): each window's sum over the input elements it covers, divided
  // by torch's divisor (see PoolParams); 0 for a window with no input element.
  void (*avg_pool2d)(const PoolParams& p, const T* x, T* y);
  // dx (planes, ih, iw): each dy spread evenly, with the forward's divisor, over its window.
  void (*avg_pool2d_backward)(const PoolParams& p, const T* dy, T* dx);
  // y (planes) = the mean of each plane of x (planes, hw); hw > 0.
  void (*global_avg_pool2d)(int64_t planes, int64_t hw, const T* x, T* y);
  // dx (planes, hw) = dy[plane] / hw.
  void (*global_avg_pool2d_backward)(int64_t planes, int64_t hw, const T* dy, T* dx);
};

DK_DECLARE_KERNELS(PoolKernels, pool)

}  // namespace dk::cpu
