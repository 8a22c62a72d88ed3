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
  // Binary cross-entropy of logits (n, c) against targets in [0, 1] of the same
  // shape, pos_weight (c) or nullptr; out as for cross_entropy, over n * c elements.
  void (*bce_with_logits)(const LossParams& p, const T* logits, const T* target, const T* pos_weight, T* out);
  void (*bce_with_logits_backward)(const LossParams& p, const T* logits, const T* target, const T* pos_weight,
                                   const T* dout, T* dlogits);
  // Multi-class hinge of x (n, c) against labels (n), weight (c) or nullptr.
  void (*multi_margin)(const MarginParams& p, const T* x, const int64_t* labels, const T* weight, T* out);
  void (*multi_margin_backward)(const MarginParams& p, const T* x, const int64_t* labels, const T* weight,
                                const T* dout, T* dx);
};

DK_DECLARE_KERNELS(LossKernels, loss)

}  // namespace dk::cpu
