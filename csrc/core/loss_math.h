// Per-element loss math written once for both devices: the CPU kernels call
// these (mse with V = Vec<T>, the others with V = T), the CUDA kernels with
// V = T, so the CPU tests check the formulas the GPU runs. Reductions (the
// order of the sums) are each device's own.
#pragma once
#include "core/activation_math.h"
#include "core/dk.h"

namespace dk {

// cross_entropy of one row from its max m, sum_exp = sum_j exp(x_j - m) and the
// label's logit: -log softmax(x)_label = log(sum_exp) + m - x_label.
template <class T>
DK_HOST_DEVICE T cross_entropy_row(T sum_exp, T m, T x_label) {
  return log(sum_exp) + (m - x_label);
}

// mse: (pred - target)^2; d/dpred = scale (pred - target) g, scale = 2 (/ n for mean).
template <class V>
DK_HOST_DEVICE V mse_term(V pred, V target) {
  V d = pred - target;
  return d * d;
}
template <class V>
DK_HOST_DEVICE V mse_grad(V pred, V target, V scale, V g) {
  return scale * (pred - target) * g;
}

// binary_cross_entropy_with_logits, torch's stable form: with l = 1 + (w - 1) t
// (w the column's pos_weight, l = 1 without one),
//   loss = (1 - t) x + l (log1p(exp(-|x|)) + max(-x, 0)),
// never exp of a large positive number; d/dx = (1 - t) - l sigmoid(-x).
template <class T>
DK_HOST_DEVICE T bce_pos_coef(T pos_weight, T t) {
  return T(1) + (pos_weight - T(1)) * t;
}
template <class T>
DK_HOST_DEVICE T bce_term(T x, T t, T l) {
  return (T(1) - t) * x + l * (log1p(exp(-abs(x))) + max(-x, T(0)));
}
template <class T>
DK_HOST_DEVICE T bce_grad(T x, T t, T l) {
  const T sig_neg = T(1) / (T(1) + exp(x));  // sigmoid(-x)
  return (T(1) - t) - l * sig_neg;
}

// multi_margin (torch.nn.MultiMarginLoss): the term h^p of a positive hinge
// h = margin - x_y + x_j, p 1 or 2, and its derivative g p h^(p-1).
template <class T>
DK_HOST_DEVICE T margin_term(T h, int p_norm) {
  return p_norm == 1 ? h : h * h;
}
template <class T>
DK_HOST_DEVICE T margin_grad(T h, int p_norm, T g) {
  return g * (p_norm == 1 ? T(1) : T(2) * h);
}

}  // namespace dk
