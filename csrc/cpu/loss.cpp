// Losses, forward and backward.
//
// cross_entropy: logits (n, c), labels (n) in [0, c) (checked by the binding).
//   Fused log-softmax + NLL: per row, loss = log(sum_j exp(x_j - max)) + max - x_label,
//   so no (n, c) log-probability array is ever written. Backward writes
//   exp(x - max) into dlogits while summing, then scales by g / sum and
//   subtracts g at the label: dlogits = (softmax - onehot) * g, with
//   g = dout[i] (none), dout / n (mean) or dout (sum). Rows over threads.
//   Forward + backward over torch 2.13's (float32, 1 thread): (4096, 1000)
//   2.7x, (65536, 10) 6.4x.
// mse: pred, target (n); loss = (pred - target)^2, backward 2 (pred - target) g.
// bce_with_logits: logits x, targets t (n, c), pos_weight w (c) optional; torch's
//   stable form loss = (1 - t) x + l (log1p(exp(-|x|)) + max(-x, 0)), l = 1 + (w - 1) t,
//   never exp of a large positive number; d/dx = (1 - t) - l sigmoid(-x).
// multi_margin (torch.nn.MultiMarginLoss): x (n, c), labels y (n), weight w (c)
//   optional; loss_i = sum_{j != y} w_y max(0, margin - x_y + x_j)^p / c, p 1 or 2;
//   d/dx_j = w_y p h^(p-1) / c for each positive h = margin - x_y + x_j, and
//   d/dx_y = minus their sum. Both are scalar loops over rows: losses are a
//   small share of a step, and these two are not on a path the benchmarks time.
//
// Reductions add row losses (cross_entropy) or fixed blocks of squares (mse) in
// double, in index order: the result does not depend on the thread count, and
// float32 sums of millions of terms keep float32 accuracy. Mean of nothing is
// NaN (0 / 0), as in torch.
#include "cpu/loss.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/loss_math.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "cpu/simd_math.h"
#include "cpu/softmax_rows.h"

namespace dk::cpu::DK_ISA_NS {

// Elements per block of an mse reduction: small enough for float32 lane sums to
// stay accurate, large enough to amortise the per-block bookkeeping.
constexpr int64_t kSumBlock = 4096;

static int threads_for_rows(const LossParams& p) { return threads_for(p.n * p.c); }

template <class T>
static void cross_entropy(const LossParams& p, const T* logits, const int64_t* labels, T* out) {
  // Reduction::none writes the row losses straight to out.
  std::vector<T> rows(p.reduction == Reduction::none ? 0 : p.n);
  T* loss = p.reduction == Reduction::none ? out : rows.data();
#pragma omp parallel for num_threads(threads_for_rows(p)) schedule(static)
  for (int64_t i = 0; i < p.n; ++i) {
    const T* x = logits + i * p.c;
    T m = row_max(x, p.c);
    loss[i] = cross_entropy_row(row_sum_exp(x, p.c, m, static_cast<T*>(nullptr), static_cast<Vec<T>*>(nullptr)),
                                m, x[labels[i]]);
  }
  if (p.reduction == Reduction::none) return;
  double total = 0.0;
  for (int64_t i = 0; i < p.n; ++i) total += rows[i];
  out[0] = T(p.reduction == Reduction::mean ? total / double(p.n) : total);
}

template <class T>
static void cross_entropy_backward(const LossParams& p, const T* logits, const int64_t* labels, const T* dout,
                                   T* dlogits) {
  using V = Vec<T>;
  const T g_all = p.reduction == Reduction::mean ? T(double(dout[0]) / double(p.n)) : dout[0];
#pragma omp parallel for num_threads(threads_for_rows(p)) schedule(static)
  for (int64_t i = 0; i < p.n; ++i) {
    const T* x = logits + i * p.c;
    T* dx = dlogits + i * p.c;
    const T g = p.reduction == Reduction::none ? dout[i] : g_all;
    const T m = row_max(x, p.c);
    V tail;
    const V scale(g / row_sum_exp(x, p.c, m, dx, &tail));  // d(loss)/dx_j = g softmax_j - g [j == label]
    const int64_t full = full_vectors<T>(p.c);
    for (int64_t j = 0; j < full; j += V::width) (V::load(dx + j) * scale).store(dx + j);
    if (full < p.c) (tail * scale).store(dx + full, p.c - full);
    dx[labels[i]] -= g;
  }
}

template <class T>
static void mse(const LossParams& p, const T* pred, const T* target, T* out) {
  using V = Vec<T>;
  const int64_t n = p.n * p.c;
  if (p.reduction == Reduction::none) {
    for_each_range(1, &n, 64, [&](int64_t, int64_t begin, int64_t end) {
      int64_t i = begin;
      for (; i + V::width <= end; i += V::width) {
        mse_term(V::load(pred + i), V::load(target + i)).store(out + i);
      }
      if (i < end) {
        mse_term(V::load(pred + i, end - i), V::load(target + i, end - i)).store(out + i, end - i);
      }
    });
    return;
  }
  const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  std::vector<double> part(blocks);
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t end = std::min(n, (b + 1) * kSumBlock);
    V acc0(T(0)), acc1(T(0));
    int64_t i = b * kSumBlock;
    for (; i + 2 * V::width <= end; i += 2 * V::width) {
      V d0 = V::load(pred + i) - V::load(target + i);
      V d1 = V::load(pred + i + V::width) - V::load(target + i + V::width);
      acc0 = fma(d0, d0, acc0), acc1 = fma(d1, d1, acc1);
    }
    for (; i < end; i += V::width) {  // zero-filled tail lanes add 0
      V d = V::load(pred + i, end - i) - V::load(target + i, end - i);
      acc0 = fma(d, d, acc0);
    }
    part[b] = double(reduce_add(acc0 + acc1));
  }
  double total = 0.0;
  for (double s : part) total += s;
  out[0] = T(p.reduction == Reduction::mean ? total / double(n) : total);
}

// torch: dpred = norm * (pred - target) * dout, norm = 2 / n (mean) or 2.
template <class T>
static void mse_backward(const LossParams& p, const T* pred, const T* target, const T* dout, T* dpred) {
  using V = Vec<T>;
  const int64_t n = p.n * p.c;
  const bool each = p.reduction == Reduction::none;
  const V scale(T((p.reduction == Reduction::mean ? 2.0 / double(n) : 2.0)));
  const V g_all(each ? T(0) : dout[0]);
  // one loop per case, so the per-element choice is not in the loop
  auto run = [&](auto upstream) {
    for_each_range(1, &n, 64, [&](int64_t, int64_t begin, int64_t end) {
      int64_t i = begin;
      for (; i + V::width <= end; i += V::width)
        mse_grad(V::load(pred + i), V::load(target + i), scale, upstream(i, V::width)).store(dpred + i);
      if (i < end)
        mse_grad(V::load(pred + i, end - i), V::load(target + i, end - i), scale, upstream(i, end - i))
            .store(dpred + i, end - i);
    });
  };
  if (each) run([&](int64_t i, int64_t k) { return V::load(dout + i, k); });
  else run([&](int64_t, int64_t) { return g_all; });
}

// Per-row losses reduced as cross_entropy's: straight to out for Reduction::none,
// else summed in double in row order (thread-count independent). `count` divides a mean.
template <class T, class F>
static void reduce_rows(Reduction r, int64_t rows, int64_t count, int64_t work, T* out, F row_loss) {
  std::vector<double> part(r == Reduction::none ? 0 : rows);
#pragma omp parallel for num_threads(threads_for(work)) schedule(static)
  for (int64_t i = 0; i < rows; ++i) {
    if (r == Reduction::none) row_loss(i, out);
    else part[i] = row_loss(i, static_cast<T*>(nullptr));
  }
  if (r == Reduction::none) return;
  double total = 0.0;
  for (double v : part) total += v;
  out[0] = T(r == Reduction::mean ? total / double(count) : total);
}

template <class T>
static void bce_with_logits(const LossParams& p, const T* x, const T* t, const T* pos_weight, T* out) {
  reduce_rows(p.reduction, p.n, p.n * p.c, p.n * p.c, out, [&](int64_t i, T* each) {
    double sum = 0.0;
    for (int64_t j = 0, k = i * p.c; j < p.c; ++j, ++k) {
      const T l = pos_weight ? bce_pos_coef(pos_weight[j], t[k]) : T(1);
      const T v = bce_term(x[k], t[k], l);
      if (each) each[k] = v;
      else sum += double(v);
    }
    return sum;
  });
}

template <class T>
static void bce_with_logits_backward(const LossParams& p, const T* x, const T* t, const T* pos_weight,
                                     const T* dout, T* dx) {
  const bool each = p.reduction == Reduction::none;
  const T g_all = p.reduction == Reduction::mean ? T(double(dout[0]) / double(p.n * p.c)) : dout[0];
  const int64_t n = p.n * p.c;
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
  for (int64_t k = 0; k < n; ++k) {
    const T l = pos_weight ? bce_pos_coef(pos_weight[k % p.c], t[k]) : T(1);
    dx[k] = bce_grad(x[k], t[k], l) * (each ? dout[k] : g_all);
  }
}

template <class T>
static void multi_margin(const MarginParams& p, const T* x, const int64_t* labels, const T* weight, T* out) {
  reduce_rows(p.reduction, p.n, p.n, p.n * p.c, out, [&](int64_t i, T* each) {
    const T* row = x + i * p.c;
    const int64_t y = labels[i];
    const T margin = T(p.margin) - row[y], w = weight ? weight[y] : T(1);
    T sum = T(0);
    for (int64_t j = 0; j < p.c; ++j) {
      const T h = margin + row[j];
      if (j != y && h > T(0)) sum += margin_term(h, p.p_norm);
    }
    const T v = w * sum / T(p.c);
    if (each) each[i] = v;
    return double(v);
  });
}

template <class T>
static void multi_margin_backward(const MarginParams& p, const T* x, const int64_t* labels, const T* weight,
                                  const T* dout, T* dx) {
  const T g_all = p.reduction == Reduction::mean ? T(double(dout[0]) / double(p.n)) : dout[0];
#pragma omp parallel for num_threads(threads_for(p.n * p.c)) schedule(static)
  for (int64_t i = 0; i < p.n; ++i) {
    const T* row = x + i * p.c;
    T* d = dx + i * p.c;
    const int64_t y = labels[i];
    const T g = (p.reduction == Reduction::none ? dout[i] : g_all) * (weight ? weight[y] : T(1)) / T(p.c);
    const T margin = T(p.margin) - row[y];
    T total = T(0);
    for (int64_t j = 0; j < p.c; ++j) {
      const T h = margin + row[j];
      d[j] = (j != y && h > T(0)) ? margin_grad(h, p.p_norm, g) : T(0);
      total += d[j];
    }
    d[y] = -total;
  }
}

DK_DEFINE_TABLE(LossKernels, loss, cross_entropy<T>, cross_entropy_backward<T>, mse<T>, mse_backward<T>,
                bce_with_logits<T>, bce_with_logits_backward<T>, multi_margin<T>, multi_margin_backward<T>)

}  // namespace dk::cpu::DK_ISA_NS
