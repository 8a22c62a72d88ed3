// Optimizer steps over many tensors in one call, and the gradient utilities.
//
// Steps: params, grads and state arrays are lists of tensors of sizes[i]
// elements. All the elements are seen as one index space, cut into one
// contiguous range per thread (parallel.h for_each_range), so one huge tensor
// and 200 small ones both use every thread. Each thread makes a single pass over
// its range, one vector at a time: it reads each param, grad and state value
// once and writes each param and state value once (Adam: 4 reads and 3 writes
// per element, the least the algorithm allows). The per-element rule is
// csrc/core/optim_math.h, shared with the GPU; the coefficients that depend on
// the step count are computed once per call.
//
// Each kernel instantiates one loop per combination of its options that change
// the loop body (optional state arrays, lerp's form): see specialize() below.
// At 10M float32 parameters on 2 threads the steps run at the memory bandwidth
// (bench/results/optim.md: Adam 7 x 4 B per parameter at ~55 GB/s); at 100k,
// where the arrays sit in L2, division and sqrt throughput is the limit.
//
// Non-finite gradients: a single pass cannot promise "nothing is written when
// any gradient is NaN/Inf", since an element found late cannot un-write the ones
// already updated. all_finite is therefore a separate, read-only pre-pass over
// the gradients (one extra stream of the grads, stopping at the first bad
// block); callers that want the all-or-nothing rule run it first (the bindings'
// check_finite), and callers that do not pay nothing. Its cost is the extra
// stream: about +1/7 of Adam's traffic, +1/5 of SGD's and RMSprop's.
//
// clip_grad_norm is a reduction (float64 partial sums per thread, combined in
// thread order, so a given thread count gives the same bits every time) and then,
// only when the norm is above max_norm, a scaling pass.
#include "cpu/optim.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/optim_math.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

// The kernels fuse exactly where torch's do (the fma calls in optim_math.h); a
// compiler fusing other multiply-adds (GCC's default -ffp-contract=fast) would
// round differently from torch and between the ISA paths: NAdam's decoupled
// weight decay drifted 8x further from torch over 100 steps with it on.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace dk::cpu::DK_ISA_NS {

// f(offset, lanes) over [begin, end), one vector at a time; lanes < width only at the tail.
template <class T, class F>
static inline void for_each_vec(int64_t begin, int64_t end, F&& f) {
  constexpr int64_t W = Vec<T>::width;
  int64_t j = begin;
  for (; j + W <= end; j += W) f(j, W);
  if (j < end) f(j, end - j);
}

// Each kernel copies its coefficients into the thread's own frame (`auto c =
// coef`): stores through T* could otherwise alias them, forcing reloads.

// Calls f(std::bool_constant<b>...) for the runtime bools given, so a kernel
// gets one loop per combination in which the per-element update's option
// branches fold away: optional state arrays (a pointer tested per vector and a
// vector spilled to take its address) and lerp's choice of base (a select
// through memory). Measured on Adam at 50k floats (one thread's share of the
// 100k case, L2-resident): 21.0 us with the branches, 15.8 us without; SGD with
// momentum 11.6 -> 7.2 us, centered RMSprop with momentum 31 -> 19 us.
template <class F>
static inline void specialize(F&& f) {
  f();
}
template <class F, class... B>
static inline void specialize(F&& f, bool b, B... rest) {
  if (b) specialize([&](auto... k) { f(std::true_type{}, k...); }, rest...);
  else specialize([&](auto... k) { f(std::false_type{}, k...); }, rest...);
}

template <class T>
static void sgd(const SgdParams& p, const TensorList<T>& t, T* const* momentum_buffers) {
  using V = Vec<T>;
  const SgdCoef<T> coef{T(p.lr), T(p.weight_decay), T(p.momentum), T(1.0 - p.dampening),
                        p.nesterov, p.maximize, p.first_step};
  specialize([&](auto momentum) {
    for_each_range(t.count, t.sizes, 64, [&](int64_t i, int64_t begin, int64_t end) {
      const auto c = coef;
      T* w = t.params[i];
      const T* g = t.grads[i];
      T* buf = momentum ? momentum_buffers[i] : nullptr;
      for_each_vec<T>(begin, end, [&](int64_t j, int64_t n) {
        V b = momentum ? V::load(buf + j, n) : V(T(0));
        sgd_update(V::load(w + j, n), V::load(g + j, n), momentum ? &b : nullptr, c).store(w + j, n);
        if (momentum) b.store(buf + j, n);
      });
    });
  }, momentum_buffers != nullptr);
}
template <class T>
static void adagrad(const AdagradParams& p, const TensorList<T>& t, T* const* sums) {
  using V = Vec<T>;
  const auto coef = adagrad_coef<T>(p);
  for_each_range(t.count, t.sizes, 64, [&](int64_t i, int64_t begin, int64_t end) {
    const auto c = coef;
    T* w = t.params[i];
    const T* g = t.grads[i];
    T* s = sums[i];
    for_each_vec<T>(begin, end, [&](int64_t j, int64_t n) {
      V sj = V::load(s + j, n);
      adagrad_update(V::load(w + j, n), V::load(g + j, n), sj, c).store(w + j, n);
      sj.store(s + j, n);
    });
  });
}

template <class T>
static void adadelta(const AdadeltaParams& p, const TensorList<T>& t, T* const* square_avgs,
                     T* const* acc_deltas) {
  using V = Vec<T>;
  const auto coef = adadelta_coef<T>(p);
  for_each_range(t.count, t.sizes, 64, [&](int64_t i, int64_t begin, int64_t end) {
    const auto c = coef;
    T* w = t.params[i];
    const T* g = t.grads[i];
    T *sq = square_avgs[i], *acc = acc_deltas[i];
    for_each_vec<T>(begin, end, [&](int64_t j, int64_t n) {
      V sqj = V::load(sq + j, n), accj = V::load(acc + j, n);
      adadelta_update(V::load(w + j, n), V::load(g + j, n), sqj, accj, c).store(w + j, n);
      sqj.store(sq + j, n);
      accj.store(acc + j, n);
    });
  });
}

template <class T>
static void rmsprop(const RmspropParams& p, const TensorList<T>& t, T* const* square_avgs,
                    T* const* grad_avgs, T* const* momentum_buffers) {
  using V = Vec<T>;
  const auto coef = rmsprop_coef<T>(p);
  specialize([&](auto centered, auto momentum, auto small) {
    for_each_range(t.count, t.sizes, 64, [&](int64_t i, int64_t begin, int64_t end) {
      auto c = coef;
      c.grad_avg.small = small;
      T* w = t.params[i];
      const T* g = t.grads[i];
      T* sq = square_avgs[i];
      T* ga = centered ? grad_avgs[i] : nullptr;
      T* buf = momentum ? momentum_buffers[i] : nullptr;
      for_each_vec<T>(begin, end, [&](int64_t j, int64_t n) {
        V sqj = V::load(sq + j, n);
        V gaj = centered ? V::load(ga + j, n) : V(T(0));
        V bufj = momentum ? V::load(buf + j, n) : V(T(0));
        rmsprop_update(V::load(w + j, n), V::load(g + j, n), sqj, centered ? &gaj : nullptr,
                       momentum ? &bufj : nullptr, c)
            .store(w + j, n);
        sqj.store(sq + j, n);
        if (centered) gaj.store(ga + j, n);
        if (momentum) bufj.store(buf + j, n);
      });
    });
  }, grad_avgs != nullptr, momentum_buffers != nullptr, coef.grad_avg.small);
}
template <class T>
static void adam(const AdamParams& p, const TensorList<T>& t, T* const* exp_avgs, T* const* exp_avg_sqs,
                 T* const* max_exp_avg_sqs) {
  using V = Vec<T>;
  const auto coef = adam_coef<T>(p);
  specialize([&](auto amsgrad, auto small) {
    for_each_range(t.count, t.sizes, 64, [&](int64_t i, int64_t begin, int64_t end) {
      auto c = coef;
      c.exp_avg.small = small;
      T* w = t.params[i];
      const T* g = t.grads[i];
      T *m = exp_avgs[i], *v = exp_avg_sqs[i];
      T* vmax = amsgrad ? max_exp_avg_sqs[i] : nullptr;
      for_each_vec<T>(begin, end, [&](int64_t j, int64_t n) {
        V mj = V::load(m + j, n), vj = V::load(v + j, n);
        V vmaxj = amsgrad ? V::load(vmax + j, n) : V(T(0));
        adam_update(V::load(w + j, n), V::load(g + j, n), mj, vj, amsgrad ? &vmaxj : nullptr, c).store(w + j, n);
        mj.store(m + j, n);
        vj.store(v + j, n);
        if (amsgrad) vmaxj.store(vmax + j, n);
      });
    });
  }, max_exp_avg_sqs != nullptr, coef.exp_avg.small);
}

template <class T>
static void adamax(const AdamaxParams& p, const TensorList<T>& t, T* const* exp_avgs, T* const* exp_infs) {
  using V = Vec<T>;
  const auto coef = adamax_coef<T>(p);
  specialize([&](auto small) {
    for_each_range(t.count, t.sizes, 64, [&](int64_t i, int64_t begin, int64_t end) {
      auto c = coef;
      c.exp_avg.small = small;
      T* w = t.params[i];
      const T* g = t.grads[i];
      T *m = exp_avgs[i], *u = exp_infs[i];
      for_each_vec<T>(begin, end, [&](int64_t j, int64_t n) {
        V mj = V::load(m + j, n), uj = V::load(u + j, n);
        adamax_update(V::load(w + j, n), V::load(g + j, n), mj, uj, c).store(w + j, n);
        mj.store(m + j, n);
        uj.store(u + j, n);
      });
    });
  }, coef.exp_avg.small);
}
template <class T>
static void nadam(const NadamParams& p, const TensorList<T>& t, T* const* exp_avgs, T* const* exp_avg_sqs) {
  using V = Vec<T>;
  const auto coef = nadam_coef<T>(p);
  specialize([&](auto small) {
    for_each_range(t.count, t.sizes, 64, [&](int64_t i, int64_t begin, int64_t end) {
      auto c = coef;
      c.exp_avg.small = small;
      T* w = t.params[i];
      const T* g = t.grads[i];
      T *m = exp_avgs[i], *v = exp_avg_sqs[i];
      for_each_vec<T>(begin, end, [&](int64_t j, int64_t n) {
        V mj = V::load(m + j, n), vj = V::load(v + j, n);
        nadam_update(V::load(w + j, n), V::load(g + j, n), mj, vj, c).store(w + j, n);
        mj.store(m + j, n);
        vj.store(v + j, n);
      });
    });
  }, coef.exp_avg.small);
}

// -- gradient utilities -------------------------------------------------------

// Blocks of this many elements between checks of the early-exit flag, and the
// float -> double staging buffer of the norm (in L1).
constexpr int64_t kBlock = 1024;

// x * 0 is 0 for finite x and NaN for NaN/Inf, so a sum of x * 0 is non-zero
// (NaN) exactly when some x is not finite; four accumulators hide the fma latency.
template <class T>
static bool all_finite(const ArrayList<const T>& a) {
  using V = Vec<T>;
  constexpr int64_t W = V::width;
  std::atomic<bool> bad{false};
  for_each_range(a.count, a.sizes, 64, [&](int64_t i, int64_t begin, int64_t end) {
    const T* x = a.data[i];
    const V zero(T(0));
    for (int64_t b = begin; b < end && !bad.load(std::memory_order_relaxed); b += kBlock) {
      int64_t e = std::min(end, b + kBlock), j = b;
      V s0 = zero, s1 = zero, s2 = zero, s3 = zero;
      for (; j + 4 * W <= e; j += 4 * W) {
        s0 = fma(V::load(x + j), zero, s0);
        s1 = fma(V::load(x + j + W), zero, s1);
        s2 = fma(V::load(x + j + 2 * W), zero, s2);
        s3 = fma(V::load(x + j + 3 * W), zero, s3);
      }
      for_each_vec<T>(j, e, [&](int64_t k, int64_t n) { s0 = fma(V::load(x + k, n), zero, s0); });
      if (!(reduce_add((s0 + s1) + (s2 + s3)) == T(0))) bad.store(true, std::memory_order_relaxed);
    }
  });
  return !bad.load();
}

enum class NormKind { sum_abs, sum_sq, sum_pow, count_nonzero, max_abs, min_abs };

static NormKind norm_kind(double p) {
  if (std::isinf(p)) return p > 0 ? NormKind::max_abs : NormKind::min_abs;
  if (p == 0) return NormKind::count_nonzero;
  if (p == 1) return NormKind::sum_abs;
  if (p == 2) return NormKind::sum_sq;
  return NormKind::sum_pow;
}

// One thread's part of a norm: a sum (or max, or min) of |x| terms, and how
// many NaNs it met (max/min would otherwise drop them; torch's norm is NaN then).
struct alignas(64) NormPartial {
  double value = 0, nans = 0;
};

// Folds n <= kBlock elements into `acc`. |x| is staged as double in L1 first
// (float32 grads accumulate in float64), the tail padded with the neutral value.
template <class T>
static void norm_block(NormKind kind, double p, const T* x, int64_t n, NormPartial& acc) {
  using D = Vec<double>;
  constexpr int64_t W = D::width;
  alignas(64) double y[kBlock + W];
  for (int64_t k = 0; k < n; ++k) y[k] = std::fabs(double(x[k]));
  int64_t padded = (n + W - 1) / W * W;
  for (int64_t k = n; k < padded; ++k) y[k] = kind == NormKind::min_abs ? INFINITY : 0.0;
  const D zero(0.0), one(1.0);
  // Four independent accumulators: one chain would wait on the add latency.
  const D start(kind == NormKind::max_abs || kind == NormKind::min_abs ? acc.value : 0.0);
  D s[4] = {start, start, start, start}, nans[4] = {zero, zero, zero, zero};
  auto fold = [&](auto term) {
    int64_t k = 0;
    for (; k + 4 * W <= padded; k += 4 * W)
      for (int u = 0; u < 4; ++u) term(s[u], nans[u], D::load(y + k + u * W));
    for (; k < padded; k += W) term(s[0], nans[0], D::load(y + k));
  };
  switch (kind) {
    case NormKind::sum_sq:
      fold([](D& a, D&, D v) { a = fma(v, v, a); });
      break;
    case NormKind::sum_abs:
      fold([](D& a, D&, D v) { a = a + v; });
      break;
    case NormKind::count_nonzero:  // NaN is not zero: it counts, as in torch
      fold([&](D& a, D&, D v) { a = a + select(v <= zero, zero, one); });
      break;
    case NormKind::max_abs:
      // max(a, v) keeps a where v is NaN, so NaNs are counted on the side (|x| >= 0 fails only for NaN).
      fold([&](D& a, D& n, D v) { a = max(a, v); n = n + select(v >= zero, zero, one); });
      break;
    case NormKind::min_abs:
      fold([&](D& a, D& n, D v) { a = min(a, v); n = n + select(v >= zero, zero, one); });
      break;
    case NormKind::sum_pow: {  // rare p: std::pow per element
      double t = 0;
      for (int64_t k = 0; k < n; ++k) t += std::pow(y[k], p);
      acc.value += t;
      return;
    }
  }
  if (kind == NormKind::max_abs) acc.value = reduce_max(max(max(s[0], s[1]), max(s[2], s[3])));
  else if (kind == NormKind::min_abs) acc.value = -reduce_max(-min(min(s[0], s[1]), min(s[2], s[3])));
  else acc.value += reduce_add((s[0] + s[1]) + (s[2] + s[3]));
  const D nan_total = (nans[0] + nans[1]) + (nans[2] + nans[3]);
  acc.nans += reduce_add(nan_total);
}

template <class T>
static double clip_grad_norm(const ClipParams& p, const ArrayList<T>& g) {
  using V = Vec<T>;
  const NormKind kind = norm_kind(p.norm_type);
  const double start = kind == NormKind::min_abs ? INFINITY : 0.0;
  int64_t total = 0;
  for (int64_t i = 0; i < g.count; ++i) total += g.sizes[i];
  const int nt = threads_for(total);
  std::vector<NormPartial> part(nt);
  for (auto& q : part) q.value = start;
  for_each_range(g.count, g.sizes, 64, nt, [&](int64_t i, int64_t begin, int64_t end) {
    NormPartial& acc = part[omp_get_thread_num()];
    for (int64_t b = begin; b < end; b += kBlock)
      norm_block(kind, p.norm_type, g.data[i] + b, std::min(kBlock, end - b), acc);
  });
  double value = start, nans = 0;
  for (const auto& q : part) {  // thread order: the same bits for the same thread count
    nans += q.nans;
    if (kind == NormKind::max_abs) value = std::max(value, q.value);
    else if (kind == NormKind::min_abs) value = std::min(value, q.value);
    else value += q.value;
  }
  double norm = nans > 0                            ? std::numeric_limits<double>::quiet_NaN()
                : kind == NormKind::sum_sq          ? std::sqrt(value)
                : kind == NormKind::sum_pow         ? std::pow(value, 1.0 / p.norm_type)
                                                    : value;
  if (p.max_norm < 0 || (!std::isfinite(norm) && !p.scale_nonfinite)) return norm;
  // torch: clamp(max_norm / (norm + 1e-6), max=1); NaN stays NaN and scales every grad to NaN.
  double coef = p.max_norm / (norm + 1e-6);
  if (coef >= 1.0) return norm;  // torch multiplies by 1.0 here: the same values
  const T factor = T(coef);
  for_each_range(g.count, g.sizes, 64, [&](int64_t i, int64_t begin, int64_t end) {
    T* x = g.data[i];
    const V f(factor);
    for_each_vec<T>(begin, end, [&](int64_t j, int64_t n) { (V::load(x + j, n) * f).store(x + j, n); });
  });
  return norm;
}

template <class T>
static void clip_grad_value(T clip, const ArrayList<T>& g) {
  using V = Vec<T>;
  for_each_range(g.count, g.sizes, 64, [&](int64_t i, int64_t begin, int64_t end) {
    T* x = g.data[i];
    const V hi(clip), lo(-clip);
    // max/min return their first argument where it is NaN: NaN passes through.
    for_each_vec<T>(begin, end, [&](int64_t j, int64_t n) { min(max(V::load(x + j, n), lo), hi).store(x + j, n); });
  });
}

DK_DEFINE_TABLE(OptimKernels, optim, sgd<T>, adagrad<T>, adadelta<T>, rmsprop<T>, adam<T>, adamax<T>, nadam<T>,
                all_finite<T>, clip_grad_norm<T>, clip_grad_value<T>)

}  // namespace dk::cpu::DK_ISA_NS
