// Per-element optimizer updates, written once for the CPU (V = Vec<T>) and the
// GPU (V = T). Coefficients arrive already in the parameter's dtype, as torch
// casts its Python-float hyperparameters to the tensor's dtype.
#pragma once
#include "core/dk.h"

namespace dk {

template <class T>
struct SgdCoef {
  T lr, weight_decay, momentum, one_minus_dampening;
  bool nesterov, maximize, first_step;
};

// torch.optim.SGD on one element:
//   g   = (maximize ? -grad : grad) + weight_decay * param
//   buf = first step ? g : momentum * buf + (1 - dampening) * g
//   g   = nesterov ? g + momentum * buf : buf        (when momentum != 0)
//   param -= lr * g
template <class V, class T>
DK_HOST_DEVICE V sgd_update(V param, V grad, V* buf, const SgdCoef<T>& c) {
  V g = c.maximize ? V(T(0)) - grad : grad;
  if (c.weight_decay != T(0)) g = g + V(c.weight_decay) * param;
  if (buf != nullptr) {
    V b = c.first_step ? g : V(c.momentum) * *buf + V(c.one_minus_dampening) * g;
    *buf = b;
    g = c.nesterov ? g + V(c.momentum) * b : b;
  }
  return param - V(c.lr) * g;
}

}  // namespace dk
