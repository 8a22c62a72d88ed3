// Activations, forward and backward, and softmax / log_softmax.
//
// Elementwise: x (n) -> y (n), one pass, Vec-wide with a masked tail, threads
// over contiguous slices (parallel.h) once n is large. The kind is switched
// once per call, outside the loop; the per-element formula is
// core/activation_math.h, the same the CUDA kernels run. exp/log/tanh are
// simd_math.h's polynomials. Speed over torch 2.13's (float32, 4M elements,
// 1 thread, AVX-512): relu 1.5x, sigmoid 1.5x, silu 1.5x, elu 4.3x, tanh 5.9x,
// softplus 1.2x (compute-bound there: exp + log1p, 1.2 ns per element).
//
// softmax over the middle axis of a contiguous (outer, dim, inner) view,
// max-subtracted so exp never overflows:
//   inner == 1 (the last axis, the common case): each row is contiguous and
//     vectorised along dim (softmax_rows.h): max, then e = exp(x - max) stored
//     in y while summing, then y *= 1/sum (log: y = x - max - log(sum)). The
//     row's partial last vector stays in registers: a first version stored and
//     reloaded it (masked store, then load: no store-to-load forwarding) and
//     (65536, 10) rows ran 1.7x slower (1.74 vs 1.04 ms, float32, 1 thread).
//   inner > 1: the same three passes for a block of adjacent columns at once,
//     vectorised along inner, so every load is contiguous.
//   Rows (or column blocks) are split over threads.
// backward: softmax dx = y (dy - sum(dy y)); log_softmax dx = dy - exp(y) sum(dy).
#include "cpu/activation.h"

#include <limits>

#include "core/activation_math.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "cpu/simd_math.h"
#include "cpu/softmax_rows.h"

namespace dk::cpu::DK_ISA_NS {

// y[i] = f(x[i]) over [0, n), threaded; f maps a Vec to a Vec.
template <class T, class F>
static void map_unary(int64_t n, const T* x, T* y, F f) {
  using V = Vec<T>;
  for_each_range(1, &n, 64, [&](int64_t, int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + V::width <= end; i += V::width) f(V::load(x + i)).store(y + i);
    if (i < end) f(V::load(x + i, end - i)).store(y + i, end - i);
  });
}

template <class T, class F>
static void map_binary(int64_t n, const T* a, const T* b, T* y, F f) {
  using V = Vec<T>;
  for_each_range(1, &n, 64, [&](int64_t, int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + V::width <= end; i += V::width) f(V::load(a + i), V::load(b + i)).store(y + i);
    if (i < end) f(V::load(a + i, end - i), V::load(b + i, end - i)).store(y + i, end - i);
  });
}

template <class T>
static void forward(const ActivationParams& p, const T* x, T* y) {
  const ActCoef<T> c{T(p.alpha), T(p.threshold)};
  with_activation(p.kind, [&](auto kind) {
    map_unary(p.n, x, y, [&](Vec<T> v) { return activation_forward<decltype(kind)::value>(v, c); });
  });
}

template <class T>
static void backward(const ActivationParams& p, const T* dy, const T* saved, T* dx) {
  const ActCoef<T> c{T(p.alpha), T(p.threshold)};
  with_activation(p.kind, [&](auto kind) {
    map_binary(p.n, dy, saved, dx,
               [&](Vec<T> g, Vec<T> s) { return activation_backward<decltype(kind)::value>(g, s, c); });
  });
}

// -- softmax ----------------------------------------------------------------------

// One contiguous row of d elements (y may be x).
template <class T>
static void softmax_row(const T* x, T* y, int64_t d, bool log) {
  using V = Vec<T>;
  const T m = row_max(x, d);
  V tail;
  const T sum = row_sum_exp(x, d, m, log ? static_cast<T*>(nullptr) : y, &tail);
  const int64_t full = full_vectors<T>(d);
  if (log) {
    const V mv(m), lse(std::log(sum));
    for (int64_t i = 0; i < full; i += V::width) ((V::load(x + i) - mv) - lse).store(y + i);
    if (full < d) ((V::load(x + full, d - full) - mv) - lse).store(y + full, d - full);
  } else {
    const V inv(T(1) / sum);
    for (int64_t i = 0; i < full; i += V::width) (V::load(y + i) * inv).store(y + i);
    if (full < d) (tail * inv).store(y + full, d - full);
  }
}

// Column blocks of a (d, inner) slab: the passes walk down dim with stride
// inner, one cache line per slab row and Vec. Short dims take kColumnVectors
// Vecs side by side, to keep more loads and exps in flight ((8, 21, 128, 128)
// over dim 1: 1.25-1.8x faster than one Vec); long dims keep one Vec, so that
// the block (d lines per array) stays in L1 between the passes ((64, 256, 196):
// four Vecs made log_softmax 1.1x and the backward 1.7x slower).
constexpr int kColumnVectors = 4;
constexpr int64_t kWideColumnsMaxDim = 32;

// Columns [0, w) of the slab (x, y point at the first one): NB full vectors
// (w = NB * width), or one partial vector (NB = 1, w <= width).
template <int NB, class T>
static void softmax_columns(const T* x, T* y, int64_t d, int64_t inner, int64_t w, bool log) {
  using V = Vec<T>;
  auto at = [&](const T* p, int64_t k, int b) { return V::load(p + k * inner + b * V::width, w - b * V::width); };
  auto put = [&](V v, T* p, int64_t k, int b) { v.store(p + k * inner + b * V::width, w - b * V::width); };
  V m[NB], sum[NB];
  for (int b = 0; b < NB; ++b) m[b] = V(-std::numeric_limits<T>::infinity()), sum[b] = V(T(0));
  for (int64_t k = 0; k < d; ++k)
    for (int b = 0; b < NB; ++b) m[b] = max(m[b], at(x, k, b));
  for (int64_t k = 0; k < d; ++k)
    for (int b = 0; b < NB; ++b) {
      V e = exp(at(x, k, b) - m[b]);
      if (!log) put(e, y, k, b);
      sum[b] = sum[b] + e;
    }
  if (log) {
    for (int b = 0; b < NB; ++b) sum[b] = DK_ISA_NS::log(sum[b]);
    for (int64_t k = 0; k < d; ++k)  // (x - max) first: exact, where x - (max + log(sum)) would round
      for (int b = 0; b < NB; ++b) put((at(x, k, b) - m[b]) - sum[b], y, k, b);
  } else {
    for (int b = 0; b < NB; ++b) sum[b] = V(T(1)) / sum[b];
    for (int64_t k = 0; k < d; ++k)
      for (int b = 0; b < NB; ++b) put(at(y, k, b) * sum[b], y, k, b);
  }
}

// Calls f(outer index, first inner column, columns) for every row (inner == 1,
// columns = 1) or block of columns of the (outer, dim, inner) view, over threads.
template <class T, class F>
static void for_each_row(const SoftmaxParams& p, F f) {
  const int64_t w = (p.dim <= kWideColumnsMaxDim ? kColumnVectors : 1) * Vec<T>::width;
  const int64_t blocks = p.inner == 1 ? 1 : (p.inner + w - 1) / w;
  const int64_t rows = p.outer * blocks;
#pragma omp parallel for num_threads(threads_for(p.outer * p.dim * p.inner)) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t o = r / blocks, j = (r % blocks) * w;
    f(o, j, p.inner == 1 ? 1 : std::min(w, p.inner - j));
  }
}

// A block of w columns: kColumnVectors full Vecs at once, else one Vec at a time.
template <class T, class F1, class FN>
static void column_block(int64_t w, F1 one, FN all) {
  const int64_t width = Vec<T>::width;
  if (w == kColumnVectors * width) return all();
  for (int64_t j = 0; j < w; j += width) one(j, std::min(width, w - j));
}

template <class T>
static void softmax(const SoftmaxParams& p, const T* x, T* y) {
  const int64_t slab = p.dim * p.inner;
  for_each_row<T>(p, [&](int64_t o, int64_t j, int64_t w) {
    const T* xs = x + o * slab + j;
    T* ys = y + o * slab + j;
    if (p.inner == 1) return softmax_row(xs, ys, p.dim, p.log);
    column_block<T>(
        w, [&](int64_t c, int64_t n) { softmax_columns<1>(xs + c, ys + c, p.dim, p.inner, n, p.log); },
        [&] { softmax_columns<kColumnVectors>(xs, ys, p.dim, p.inner, w, p.log); });
  });
}

// Backward of one row (inner == 1) or column block (stride = inner, w lanes):
// s = sum(dy * y) (softmax) or sum(dy) (log_softmax), then one elementwise pass.
template <class T>
static void softmax_backward_row(const T* dy, const T* y, T* dx, int64_t d, bool log) {
  using V = Vec<T>;
  V acc0(T(0)), acc1(T(0));
  int64_t i = 0;
  for (; i + 2 * V::width <= d; i += 2 * V::width) {
    V g0 = V::load(dy + i), g1 = V::load(dy + i + V::width);
    if (log) acc0 = acc0 + g0, acc1 = acc1 + g1;
    else acc0 = fma(g0, V::load(y + i), acc0), acc1 = fma(g1, V::load(y + i + V::width), acc1);
  }
  for (; i < d; i += V::width) {
    V g = V::load(dy + i, d - i);  // zero-filled tail lanes add nothing
    acc0 = log ? acc0 + g : fma(g, V::load(y + i, d - i), acc0);
  }
  const V s(reduce_add(acc0 + acc1));
  for (i = 0; i < d; i += V::width) {
    V g = V::load(dy + i, d - i), out = V::load(y + i, d - i);
    (log ? g - exp(out) * s : out * (g - s)).store(dx + i, d - i);
  }
}

template <int NB, class T>
static void softmax_backward_columns(const T* dy, const T* y, T* dx, int64_t d, int64_t inner, int64_t w,
                                     bool log) {
  using V = Vec<T>;
  auto at = [&](const T* p, int64_t k, int b) { return V::load(p + k * inner + b * V::width, w - b * V::width); };
  V s[NB];
  for (int b = 0; b < NB; ++b) s[b] = V(T(0));
  for (int64_t k = 0; k < d; ++k)
    for (int b = 0; b < NB; ++b) s[b] = log ? s[b] + at(dy, k, b) : fma(at(dy, k, b), at(y, k, b), s[b]);
  for (int64_t k = 0; k < d; ++k)
    for (int b = 0; b < NB; ++b) {
      V g = at(dy, k, b), out = at(y, k, b);
      (log ? g - exp(out) * s[b] : out * (g - s[b])).store(dx + k * inner + b * V::width, w - b * V::width);
    }
}

template <class T>
static void softmax_backward(const SoftmaxParams& p, const T* dy, const T* y, T* dx) {
  const int64_t slab = p.dim * p.inner;
  for_each_row<T>(p, [&](int64_t o, int64_t j, int64_t w) {
    const int64_t off = o * slab + j;
    if (p.inner == 1) return softmax_backward_row(dy + off, y + off, dx + off, p.dim, p.log);
    column_block<T>(
        w,
        [&](int64_t c, int64_t n) {
          softmax_backward_columns<1>(dy + off + c, y + off + c, dx + off + c, p.dim, p.inner, n, p.log);
        },
        [&] { softmax_backward_columns<kColumnVectors>(dy + off, y + off, dx + off, p.dim, p.inner, w, p.log); });
  });
}

DK_DEFINE_TABLE(ActivationKernels, activation, forward<T>, backward<T>, softmax<T>, softmax_backward<T>)

}  // namespace dk::cpu::DK_ISA_NS
