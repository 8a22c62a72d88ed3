// Per-element optimizer updates, written once for the CPU (V = Vec<T>) and the
// GPU (V = T). Coefficients arrive already in the parameter's dtype, as torch
// casts its Python-float hyperparameters to the tensor's dtype; everything that
// depends on the step count (bias corrections, decayed learning rates) is
// computed once per call in double by the *_coef builders, never per element.
//
// Each update follows the order of operations of torch.optim's single-tensor
// (for-loop) implementation as torch 2.13's AVX-512 CPU build executes it
// (checked bit for bit, op by op), so float32 results round like torch's:
//   x.add_(y, alpha=a)                -> fma(y, a, x)
//   x.mul_(b).addcmul_(g, g, value=c) -> fma(c * g, g, x * b)
//   p.addcdiv_(a, d, value=c)         -> p + (c * a) / d
//   m.lerp_(g, w)                     -> lerp below (ATen's vectorised lerp)
// Two roundings differ on purpose or by necessity, so results agree with torch
// to a few ulps per step rather than bitwise: sqrt (torch's is not correctly
// rounded: it differs from the IEEE sqrt by an ulp in about 1 element in 5),
// and Adam's and NAdam's division by the bias correction, done here as a
// multiplication by its reciprocal: division and sqrt throughput bound these
// kernels once the arrays sit in L2 (Adam at 50k floats on one thread, the
// share of each of two threads at 100k: 20.4 us with two divisions, 15.7 us
// with one), and the reciprocal costs one ulp at most.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/dk.h"
#include "core/params.h"

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
  V g = c.maximize ? -grad : grad;
  if (c.weight_decay != T(0)) g = fma(param, V(c.weight_decay), g);
  if (buf != nullptr) {
    V b = c.first_step ? g : fma(g, V(c.one_minus_dampening), *buf * V(c.momentum));
    *buf = b;
    g = c.nesterov ? fma(b, V(c.momentum), g) : b;
  }
  return fma(g, V(-c.lr), param);
}

// torch.lerp(self, end, w): self + w * (end - self) for |w| < 0.5, else
// end - (end - self) * (1 - w); one fma either way, as ATen's vector kernel.
template <class T>
struct LerpCoef {
  T coeff;  // w, or w - 1 (rounded in T, as ATen does) when |w| >= 0.5
  bool small;
};
template <class T>
static inline LerpCoef<T> lerp_coef(double w) {
  bool small = std::fabs(w) < 0.5;
  return {small ? T(w) : T(w) - T(1), small};
}
template <class V, class T>
DK_HOST_DEVICE V lerp(V self, V end, const LerpCoef<T>& l) {
  return fma(V(l.coeff), end - self, l.small ? self : end);
}

// grad, negated for maximize, plus the coupled (L2) weight decay.
template <class V, class T>
DK_HOST_DEVICE V decayed_grad(V param, V grad, T weight_decay, bool maximize) {
  V g = maximize ? -grad : grad;
  return weight_decay != T(0) ? fma(param, V(weight_decay), g) : g;
}

// -- Adagrad ------------------------------------------------------------------
//   sum += g * g;   param -= clr * g / (sqrt(sum) + eps),
//   clr = lr / (1 + (step - 1) * lr_decay)
template <class T>
struct AdagradCoef {
  T weight_decay, eps, neg_clr;
  bool maximize;
};
template <class T>
static inline AdagradCoef<T> adagrad_coef(const AdagradParams& p) {
  double clr = p.lr / (1.0 + double(p.step - 1) * p.lr_decay);
  return {T(p.weight_decay), T(p.eps), T(-clr), p.maximize};
}
template <class V, class T>
DK_HOST_DEVICE V adagrad_update(V param, V grad, V& sum, const AdagradCoef<T>& c) {
  V g = decayed_grad(param, grad, c.weight_decay, c.maximize);
  sum = fma(g, g, sum);
  return param + (V(c.neg_clr) * g) / (sqrt(sum) + V(c.eps));
}

// -- Adadelta -----------------------------------------------------------------
//   v = rho * v + (1 - rho) * g^2
//   delta = sqrt(u + eps) / sqrt(v + eps) * g
//   u = rho * u + (1 - rho) * delta^2;   param -= lr * delta
template <class T>
struct AdadeltaCoef {
  T weight_decay, eps, rho, one_minus_rho, neg_lr;
  bool maximize;
};
template <class T>
static inline AdadeltaCoef<T> adadelta_coef(const AdadeltaParams& p) {
  return {T(p.weight_decay), T(p.eps), T(p.rho), T(1.0 - p.rho), T(-p.lr), p.maximize};
}
template <class V, class T>
DK_HOST_DEVICE V adadelta_update(V param, V grad, V& square_avg, V& acc_delta, const AdadeltaCoef<T>& c) {
  V g = decayed_grad(param, grad, c.weight_decay, c.maximize);
  square_avg = fma(V(c.one_minus_rho) * g, g, square_avg * V(c.rho));
  V std_ = sqrt(square_avg + V(c.eps));
  V delta = sqrt(acc_delta + V(c.eps)) / std_ * g;
  acc_delta = fma(V(c.one_minus_rho) * delta, delta, acc_delta * V(c.rho));
  return fma(delta, V(c.neg_lr), param);
}

// -- RMSprop ------------------------------------------------------------------
//   v = alpha * v + (1 - alpha) * g^2
//   centered: a = lerp(a, g, 1 - alpha), avg = sqrt(v - a^2) + eps; else sqrt(v) + eps
//   momentum > 0: buf = momentum * buf + g / avg, param -= lr * buf
//   else:         param -= lr * g / avg
template <class T>
struct RmspropCoef {
  T weight_decay, eps, alpha, one_minus_alpha, momentum, neg_lr;
  LerpCoef<T> grad_avg;
  bool maximize;
};
template <class T>
static inline RmspropCoef<T> rmsprop_coef(const RmspropParams& p) {
  return {T(p.weight_decay), T(p.eps), T(p.alpha), T(1.0 - p.alpha), T(p.momentum), T(-p.lr),
          lerp_coef<T>(1.0 - p.alpha), p.maximize};
}
// grad_avg is nullptr unless centered, buf nullptr unless momentum > 0.
template <class V, class T>
DK_HOST_DEVICE V rmsprop_update(V param, V grad, V& square_avg, V* grad_avg, V* buf, const RmspropCoef<T>& c) {
  V g = decayed_grad(param, grad, c.weight_decay, c.maximize);
  square_avg = fma(V(c.one_minus_alpha) * g, g, square_avg * V(c.alpha));
  V avg;
  if (grad_avg != nullptr) {
    *grad_avg = lerp(*grad_avg, g, c.grad_avg);
    avg = sqrt(fma(-*grad_avg, *grad_avg, square_avg));
  } else {
    avg = sqrt(square_avg);
  }
  avg = avg + V(c.eps);
  if (buf != nullptr) {
    *buf = *buf * V(c.momentum) + g / avg;
    return fma(*buf, V(c.neg_lr), param);
  }
  return param + (V(c.neg_lr) * g) / avg;
}

// -- Adam, AdamW, AMSGrad -----------------------------------------------------
//   AdamW: param *= 1 - lr * wd;   Adam: g += wd * param
//   m = lerp(m, g, 1 - beta1);   v = beta2 * v + (1 - beta2) * g^2
//   amsgrad: vmax = max(vmax, v), used in place of v below
//   param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
template <class T>
struct AdamCoef {
  T weight_decay, decay, beta2, one_minus_beta2, inv_bc2_sqrt, eps, neg_step_size;
  LerpCoef<T> exp_avg;
  bool decoupled, maximize;
};
template <class T>
static inline AdamCoef<T> adam_coef(const AdamParams& p) {
  double t = double(p.step);
  double bc1 = 1.0 - std::pow(p.beta1, t), bc2 = 1.0 - std::pow(p.beta2, t);
  return {T(p.decoupled_weight_decay ? 0.0 : p.weight_decay), T(1.0 - p.lr * p.weight_decay),
          T(p.beta2), T(1.0 - p.beta2), T(1.0 / std::sqrt(bc2)), T(p.eps), T(-(p.lr / bc1)),
          lerp_coef<T>(1.0 - p.beta1), p.decoupled_weight_decay && p.weight_decay != 0.0, p.maximize};
}
// max_exp_avg_sq is nullptr unless amsgrad.
template <class V, class T>
DK_HOST_DEVICE V adam_update(V param, V grad, V& exp_avg, V& exp_avg_sq, V* max_exp_avg_sq,
                             const AdamCoef<T>& c) {
  if (c.decoupled) param = param * V(c.decay);
  V g = decayed_grad(param, grad, c.weight_decay, c.maximize);
  exp_avg = lerp(exp_avg, g, c.exp_avg);
  exp_avg_sq = fma(V(c.one_minus_beta2) * g, g, exp_avg_sq * V(c.beta2));
  V v = exp_avg_sq;
  if (max_exp_avg_sq != nullptr) v = *max_exp_avg_sq = max(exp_avg_sq, *max_exp_avg_sq);
  V denom = sqrt(v) * V(c.inv_bc2_sqrt) + V(c.eps);
  return param + (V(c.neg_step_size) * exp_avg) / denom;
}

// -- Adamax -------------------------------------------------------------------
//   m = lerp(m, g, 1 - beta1);   u = max(beta2 * u, |g| + eps)
//   param -= lr / (1 - beta1^t) * m / u
template <class T>
struct AdamaxCoef {
  T weight_decay, beta2, eps, neg_clr;
  LerpCoef<T> exp_avg;
  bool maximize;
};
template <class T>
static inline AdamaxCoef<T> adamax_coef(const AdamaxParams& p) {
  double bc1 = 1.0 - std::pow(p.beta1, double(p.step));
  return {T(p.weight_decay), T(p.beta2), T(p.eps), T(-(p.lr / bc1)), lerp_coef<T>(1.0 - p.beta1), p.maximize};
}
template <class V, class T>
DK_HOST_DEVICE V adamax_update(V param, V grad, V& exp_avg, V& exp_inf, const AdamaxCoef<T>& c) {
  V g = decayed_grad(param, grad, c.weight_decay, c.maximize);
  exp_avg = lerp(exp_avg, g, c.exp_avg);
  exp_inf = max(exp_inf * V(c.beta2), abs(g) + V(c.eps));
  return param + (V(c.neg_clr) * exp_avg) / exp_inf;
}

// -- NAdam --------------------------------------------------------------------
// The momentum coefficient of step t (torch's mu): beta1 * (1 - 0.5 * 0.96^(t * momentum_decay)).
static inline double nadam_mu(double beta1, double momentum_decay, int64_t step) {
  return beta1 * (1.0 - 0.5 * std::pow(0.96, double(step) * momentum_decay));
}
//   m = lerp(m, g, 1 - beta1);   v = beta2 * v + (1 - beta2) * g^2
//   denom = sqrt(v / (1 - beta2^t)) + eps
//   param -= lr (1 - mu_t) / (1 - prod_{i<=t} mu_i) * g / denom
//   param -= lr mu_{t+1} / (1 - prod_{i<=t+1} mu_i) * m / denom
template <class T>
struct NadamCoef {
  T weight_decay, decay, beta2, one_minus_beta2, inv_bc2, eps, grad_coef, exp_avg_coef;
  LerpCoef<T> exp_avg;
  bool decoupled, maximize;
};
template <class T>
static inline NadamCoef<T> nadam_coef(const NadamParams& p) {
  double mu = nadam_mu(p.beta1, p.momentum_decay, p.step);
  double mu_next = nadam_mu(p.beta1, p.momentum_decay, p.step + 1);
  double bc2 = 1.0 - std::pow(p.beta2, double(p.step));
  return {T(p.decoupled_weight_decay ? 0.0 : p.weight_decay), T(1.0 - p.lr * p.weight_decay),
          T(p.beta2), T(1.0 - p.beta2), T(1.0 / bc2), T(p.eps),
          T(-p.lr * (1.0 - mu) / (1.0 - p.mu_product)),
          T((-p.lr * mu_next) / (1.0 - p.mu_product * mu_next)),
          lerp_coef<T>(1.0 - p.beta1), p.decoupled_weight_decay && p.weight_decay != 0.0, p.maximize};
}
template <class V, class T>
DK_HOST_DEVICE V nadam_update(V param, V grad, V& exp_avg, V& exp_avg_sq, const NadamCoef<T>& c) {
  if (c.decoupled) param = param * V(c.decay);
  V g = decayed_grad(param, grad, c.weight_decay, c.maximize);
  exp_avg = lerp(exp_avg, g, c.exp_avg);
  exp_avg_sq = fma(V(c.one_minus_beta2) * g, g, exp_avg_sq * V(c.beta2));
  V denom = sqrt(exp_avg_sq * V(c.inv_bc2)) + V(c.eps);
  param = param + (V(c.grad_coef) * g) / denom;
  return param + (V(c.exp_avg_coef) * exp_avg) / denom;
}

}  // namespace dk
