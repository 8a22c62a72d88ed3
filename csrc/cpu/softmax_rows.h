// The two reductions of a max-subtracted softmax over one contiguous row,
// shared by softmax / log_softmax (activation.cpp) and cross_entropy (loss.cpp).
// The partial last vector is loaded with -inf in its dead lanes, so it is
// neutral for the max and adds exp(-inf) = 0 to the sum without a scalar loop.
#pragma once
#include <limits>

#include "cpu/simd.h"
#include "cpu/simd_math.h"

namespace dk::cpu::DK_ISA_NS {

// max over x[0, d). NaNs may be skipped: they reach the sum through exp and
// make the row NaN there, as in torch.
template <class T>
static T row_max(const T* x, int64_t d) {
  using V = Vec<T>;
  const T ninf = -std::numeric_limits<T>::infinity();
  V m0(ninf), m1(ninf);  // two chains: max is latency-bound
  int64_t i = 0;
  for (; i + 2 * V::width <= d; i += 2 * V::width)
    m0 = max(m0, V::load(x + i)), m1 = max(m1, V::load(x + i + V::width));
  for (; i < d; i += V::width) m0 = max(m0, load_fill(x + i, d - i, ninf));
  return reduce_max(max(m0, m1));
}

// sum of exp(x_j - m) over x[0, d). With e, the exponentials of the full
// vectors are stored to e and those of the partial last vector (zeros when d
// is a multiple of the width) returned in *tail, kept in a register: reading
// back a masked store would stall on store-to-load forwarding.
template <class T>
static T row_sum_exp(const T* x, int64_t d, T m, T* e, Vec<T>* tail) {
  using V = Vec<T>;
  const V mv(m);
  V acc0(T(0)), acc1(T(0));
  int64_t i = 0;
  for (; i + 2 * V::width <= d; i += 2 * V::width) {
    V e0 = exp(V::load(x + i) - mv), e1 = exp(V::load(x + i + V::width) - mv);
    if (e) e0.store(e + i), e1.store(e + i + V::width);
    acc0 = acc0 + e0, acc1 = acc1 + e1;
  }
  for (; i + V::width <= d; i += V::width) {
    V e0 = exp(V::load(x + i) - mv);
    if (e) e0.store(e + i);
    acc0 = acc0 + e0;
  }
  V t = i < d ? exp(load_fill(x + i, d - i, -std::numeric_limits<T>::infinity()) - mv) : V(T(0));
  if (tail) *tail = t;
  return reduce_add((acc0 + acc1) + t);
}

// Elements of a row covered by full vectors.
template <class T>
static int64_t full_vectors(int64_t d) {
  return d - d % Vec<T>::width;
}

}  // namespace dk::cpu::DK_ISA_NS
