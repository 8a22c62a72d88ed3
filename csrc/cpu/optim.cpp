// Optimizer steps over many tensors in one call: every thread takes one
// contiguous slice of the concatenated elements and makes a single pass over
// it, reading param, grad and state once and writing param and state once.
// The per-element rule is csrc/core/optim_math.h, shared with the GPU.
#include "cpu/optim.h"

#include "core/optim_math.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace dk::cpu::DK_ISA_NS {

template <class T>
static void sgd(const SgdParams& p, const TensorList<T>& t, T* const* momentum_buffers) {
  using V = Vec<T>;
  const SgdCoef<T> c{T(p.lr), T(p.weight_decay), T(p.momentum), T(1.0 - p.dampening),
                     p.nesterov, p.maximize, p.first_step};
  for_each_range(t.count, t.sizes, 64, [&](int64_t i, int64_t begin, int64_t end) {
    T* w = t.params[i];
    const T* g = t.grads[i];
    T* buf = momentum_buffers ? momentum_buffers[i] : nullptr;
    int64_t j = begin;
    auto step = [&](int64_t j, int64_t n) {
      V b = buf ? V::load(buf + j, n) : V(T(0));
      V w_new = sgd_update(V::load(w + j, n), V::load(g + j, n), buf ? &b : nullptr, c);
      w_new.store(w + j, n);
      if (buf) b.store(buf + j, n);
    };
    for (; j + V::width <= end; j += V::width) step(j, V::width);
    if (j < end) step(j, end - j);
  });
}

DK_DEFINE_TABLE(OptimKernels, optim, sgd<T>)

}  // namespace dk::cpu::DK_ISA_NS
