// Per-element activation math, written once for both devices: the CPU
// kernels call these with V = Vec<T> (exp, log1p, tanh, max, select, ... then
// come from cpu/simd_math.h and cpu/simd.h by argument-dependent lookup), the
// CUDA kernels with V = T (the scalar overloads below). So the CPU tests check
// the formula the GPU runs.
//
// Semantics are PyTorch's, including its choices at kinks and for NaN:
//   relu'(0) = 0, leaky_relu'(0) = negative_slope, elu'(0) = alpha (torch's
//   elu_backward tests x <= 0), softplus is the identity where beta x > threshold;
//   relu and elu pass dy through at x = NaN, as torch does.
#pragma once
#include <cmath>
#include <type_traits>

#include "core/dk.h"
#include "core/params.h"

namespace dk {

// -- scalar primitives (one per dtype: no float-only call in a double path) ------

DK_HOST_DEVICE float exp(float x) { return ::expf(x); }
DK_HOST_DEVICE double exp(double x) { return ::exp(x); }
DK_HOST_DEVICE float expm1(float x) { return ::expm1f(x); }
DK_HOST_DEVICE double expm1(double x) { return ::expm1(x); }
DK_HOST_DEVICE float log(float x) { return ::logf(x); }
DK_HOST_DEVICE double log(double x) { return ::log(x); }
DK_HOST_DEVICE float log1p(float x) { return ::log1pf(x); }
DK_HOST_DEVICE double log1p(double x) { return ::log1p(x); }
DK_HOST_DEVICE float tanh(float x) { return ::tanhf(x); }
DK_HOST_DEVICE double tanh(double x) { return ::tanh(x); }
DK_HOST_DEVICE float abs(float x) { return ::fabsf(x); }
DK_HOST_DEVICE double abs(double x) { return ::fabs(x); }
// max/min return a where a is NaN, as Vec's do.
DK_HOST_DEVICE float max(float a, float b) { return (a != a || a > b) ? a : b; }
DK_HOST_DEVICE double max(double a, double b) { return (a != a || a > b) ? a : b; }
DK_HOST_DEVICE float min(float a, float b) { return (a != a || a < b) ? a : b; }
DK_HOST_DEVICE double min(double a, double b) { return (a != a || a < b) ? a : b; }
DK_HOST_DEVICE float select(bool m, float a, float b) { return m ? a : b; }
DK_HOST_DEVICE double select(bool m, double a, double b) { return m ? a : b; }

// The hyperparameters in the data's dtype, as torch casts its Python floats.
// alpha: leaky_relu's negative_slope, elu's alpha, softplus's beta.
template <class T>
struct ActCoef {
  T alpha, threshold;
};

// sigmoid(x) = 1 / (1 + e^-x): exactly 0 for x < -745 (e^-x = inf), 1 for large x.
template <class V, class T>
DK_HOST_DEVICE V sigmoid(V x) {
  return V(T(1)) / (V(T(1)) + exp(-x));
}

// -- forward: y = f(x) ----------------------------------------------------------

template <class V, class T>
DK_HOST_DEVICE V relu_forward(V x, const ActCoef<T>&) {
  return max(x, V(T(0)));
}
template <class V, class T>
DK_HOST_DEVICE V leaky_relu_forward(V x, const ActCoef<T>& c) {
  return select(x > V(T(0)), x, x * V(c.alpha));
}
// alpha (e^x - 1) for x <= 0; expm1 keeps its relative accuracy near 0
template <class V, class T>
DK_HOST_DEVICE V elu_forward(V x, const ActCoef<T>& c) {
  return select(x > V(T(0)), x, V(c.alpha) * expm1(x));
}
template <class V, class T>
DK_HOST_DEVICE V sigmoid_forward(V x, const ActCoef<T>&) {
  return sigmoid<V, T>(x);
}
template <class V, class T>
DK_HOST_DEVICE V tanh_forward(V x, const ActCoef<T>&) {
  return tanh(x);
}
// log(1 + e^(beta x)) / beta = (max(z, 0) + log1p(e^-|z|)) / beta, z = beta x:
// never overflows, whatever the threshold.
template <class V, class T>
DK_HOST_DEVICE V softplus_forward(V x, const ActCoef<T>& c) {
  V z = x * V(c.alpha);
  V soft = (max(z, V(T(0))) + log1p(exp(-abs(z)))) / V(c.alpha);
  return select(z > V(c.threshold), x, soft);
}
// x / (1 + e^-x), torch's form (so silu(-inf) is NaN there and here)
template <class V, class T>
DK_HOST_DEVICE V silu_forward(V x, const ActCoef<T>&) {
  return x / (V(T(1)) + exp(-x));
}

// -- backward: dx = dy * f'(.), from x (from y for sigmoid and tanh) -------------------

template <class V, class T>
DK_HOST_DEVICE V relu_backward(V dy, V x, const ActCoef<T>&) {
  return select(x <= V(T(0)), V(T(0)), dy);
}
template <class V, class T>
DK_HOST_DEVICE V leaky_relu_backward(V dy, V x, const ActCoef<T>& c) {
  return select(x > V(T(0)), dy, dy * V(c.alpha));
}
// elu'(x) = alpha e^x for x <= 0, else 1
template <class V, class T>
DK_HOST_DEVICE V elu_backward(V dy, V x, const ActCoef<T>& c) {
  return select(x <= V(T(0)), dy * (V(c.alpha) * exp(x)), dy);
}
// sigmoid'(x) = y (1 - y)
template <class V, class T>
DK_HOST_DEVICE V sigmoid_backward(V dy, V y, const ActCoef<T>&) {
  return dy * (V(T(1)) - y) * y;
}
// tanh'(x) = 1 - y^2
template <class V, class T>
DK_HOST_DEVICE V tanh_backward(V dy, V y, const ActCoef<T>&) {
  return dy * (V(T(1)) - y * y);
}
// softplus'(x) = sigmoid(beta x), 1 past the threshold
template <class V, class T>
DK_HOST_DEVICE V softplus_backward(V dy, V x, const ActCoef<T>& c) {
  V z = x * V(c.alpha);
  return select(z > V(c.threshold), dy, dy * sigmoid<V, T>(z));
}
// silu'(x) = s (1 + x (1 - s)), s = sigmoid(x)
template <class V, class T>
DK_HOST_DEVICE V silu_backward(V dy, V x, const ActCoef<T>&) {
  V s = sigmoid<V, T>(x);
  return dy * (s * (V(T(1)) + x * (V(T(1)) - s)));
}

// -- by kind: the kernels are instantiated per activation, the switch is outside ----

template <Activation K, class V, class T>
DK_HOST_DEVICE V activation_forward(V x, const ActCoef<T>& c) {
  if constexpr (K == Activation::relu) return relu_forward<V, T>(x, c);
  else if constexpr (K == Activation::leaky_relu) return leaky_relu_forward<V, T>(x, c);
  else if constexpr (K == Activation::elu) return elu_forward<V, T>(x, c);
  else if constexpr (K == Activation::sigmoid) return sigmoid_forward<V, T>(x, c);
  else if constexpr (K == Activation::tanh) return tanh_forward<V, T>(x, c);
  else if constexpr (K == Activation::softplus) return softplus_forward<V, T>(x, c);
  else return silu_forward<V, T>(x, c);
}

template <Activation K, class V, class T>
DK_HOST_DEVICE V activation_backward(V dy, V saved, const ActCoef<T>& c) {
  if constexpr (K == Activation::relu) return relu_backward<V, T>(dy, saved, c);
  else if constexpr (K == Activation::leaky_relu) return leaky_relu_backward<V, T>(dy, saved, c);
  else if constexpr (K == Activation::elu) return elu_backward<V, T>(dy, saved, c);
  else if constexpr (K == Activation::sigmoid) return sigmoid_backward<V, T>(dy, saved, c);
  else if constexpr (K == Activation::tanh) return tanh_backward<V, T>(dy, saved, c);
  else if constexpr (K == Activation::softplus) return softplus_backward<V, T>(dy, saved, c);
  else return silu_backward<V, T>(dy, saved, c);
}

// Host side: calls f(std::integral_constant<Activation, kind>{}), so a kernel
// template can take the kind as a compile-time constant.
template <class F>
decltype(auto) with_activation(Activation kind, F&& f) {
  using A = Activation;
  switch (kind) {
    case A::leaky_relu: return f(std::integral_constant<A, A::leaky_relu>{});
    case A::elu: return f(std::integral_constant<A, A::elu>{});
    case A::sigmoid: return f(std::integral_constant<A, A::sigmoid>{});
    case A::tanh: return f(std::integral_constant<A, A::tanh>{});
    case A::softplus: return f(std::integral_constant<A, A::softplus>{});
    case A::silu: return f(std::integral_constant<A, A::silu>{});
    default: return f(std::integral_constant<A, A::relu>{});
  }
}

// The op's name in messages and in deepkern.ops.
inline const char* activation_name(Activation kind) {
  switch (kind) {
    case Activation::leaky_relu: return "leaky_relu";
    case Activation::elu: return "elu";
    case Activation::sigmoid: return "sigmoid";
    case Activation::tanh: return "tanh";
    case Activation::softplus: return "softplus";
    case Activation::silu: return "silu";
    default: return "relu";
  }
}

// sigmoid and tanh differentiate from the forward output y, the others from x.
inline bool backward_uses_output(Activation kind) {
  return kind == Activation::sigmoid || kind == Activation::tanh;
}

}  // namespace dk
