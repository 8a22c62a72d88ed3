// Optimizer steps: one call updates every tensor of an optimizer in place; and
// the gradient utilities that go with them (finiteness, clipping).
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

// count arrays of sizes[i] elements each (T may be const: read-only arrays).
template <class T>
struct ArrayList {
  int64_t count = 0;
  T* const* data = nullptr;
  const int64_t* sizes = nullptr;
};

// Every step kernel is a single pass: it reads each param, grad and state value
// once and writes each param and state value once. It never checks the grads:
// callers wanting the all-or-nothing rule call all_finite first.
template <class T>
struct OptimKernels {
  // torch.optim.SGD; momentum_buffers is nullptr when p.momentum == 0.
  void (*sgd)(const SgdParams& p, const TensorList<T>& t, T* const* momentum_buffers);
  // torch.optim.Adagrad; sums is state["sum"].
  void (*adagrad)(const AdagradParams& p, const TensorList<T>& t, T* const* sums);
  void (*adadelta)(const AdadeltaParams& p, const TensorList<T>& t, T* const* square_avgs, T* const* acc_deltas);
  // grad_avgs: nullptr unless centered; momentum_buffers: nullptr unless momentum > 0.
  void (*rmsprop)(const RmspropParams& p, const TensorList<T>& t, T* const* square_avgs, T* const* grad_avgs,
                  T* const* momentum_buffers);
  // Adam / AdamW / AMSGrad; max_exp_avg_sqs: nullptr unless amsgrad.
  void (*adam)(const AdamParams& p, const TensorList<T>& t, T* const* exp_avgs, T* const* exp_avg_sqs,
               T* const* max_exp_avg_sqs);
  void (*adamax)(const AdamaxParams& p, const TensorList<T>& t, T* const* exp_avgs, T* const* exp_infs);
  void (*nadam)(const NadamParams& p, const TensorList<T>& t, T* const* exp_avgs, T* const* exp_avg_sqs);

  // True when no element of any array is NaN or +-Inf (read-only; stops early).
  bool (*all_finite)(const ArrayList<const T>& a);
  // torch.nn.utils.clip_grad_norm_: the norm of all grads together (accumulated
  // in double), then the grads scaled in place as ClipParams says. Returns the norm.
  double (*clip_grad_norm)(const ClipParams& p, const ArrayList<T>& grads);
  // torch.nn.utils.clip_grad_value_: every element clamped to [-clip, clip]; NaN stays NaN.
  void (*clip_grad_value)(T clip, const ArrayList<T>& grads);
};

DK_DECLARE_KERNELS(OptimKernels, optim)

}  // namespace dk::cpu
