// Loss kernels, forward and backward.
#pragma once
#include "core/params.h"
#include "cpu/dispatch.h"

namespace dk::cpu {

template <class T>
struct LossKernels {
  // Fused log-softmax + NLL of logits (n, c) against labels (n) in [0, c).
  // out: n per-row losses for Reduction::none, else one value (mean or sum).
  void (*cross_entropy)(const LossParams& p, const T* logits, const int64_t* labels, T* out);
  // dlogits (n, c) = d(loss)/d(logits) * dout; dout has n values for
  // Reduction::none, else one.
  void (*cross_entropy_backward)(const LossParams& p, const T* logits, const int64_t* labels,
                                 const T* dout, T* dlogits);
  // Mean squared error over p.n elements (p.c == 1); out as for cross_entropy.
  void (*mse)(const LossParams& p, const T* pred, const T* target, T* out);
  void (*mse_backward)(const LossParams& p, const T* pred, const T* target, const T* dout, T* dpred);
};

DK_DECLARE_KERNELS(LossKernels, loss)

}  // namespace dk::cpu
