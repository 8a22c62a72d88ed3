// Batch-norm math written once for the CPU (V = Vec<T>) and the GPU (V = T):
// the per-element forward and backward, the merge of partial statistics, and
// the running-statistics update.
//
// Statistics are (count, mean, M2 = sum (x - mean)^2) triples merged with Chan,
// Golub and LeVeque's pairwise rule, in double: kernels reduce blocks of values
// in the input dtype, then merge the blocks, so no sum of squares of the raw
// values (which cancels catastrophically when |mean| >> std) is ever formed.
#pragma once
#include <cmath>

#include "core/dk.h"

namespace dk {

struct BnMoments {
  double n = 0, mean = 0, m2 = 0;
};

// a <- the statistics of the union of a's and b's values.
DK_HOST_DEVICE void bn_merge(BnMoments& a, const BnMoments& b) {
  if (b.n == 0) return;
  if (a.n == 0) {
    a = b;
    return;
  }
  double n = a.n + b.n, delta = b.mean - a.mean, bn_n = b.n / n;
  a.mean += delta * bn_n;
  a.m2 += b.m2 + delta * delta * a.n * bn_n;
  a.n = n;
}

// The moments of one block from its values' sums about a guess c of their mean
// (the corrected two-pass rule): with s1 = sum (x - c), s2 = sum (x - c)^2,
//   mean = c + s1 / n,   M2 = s2 - s1^2 / n.
// s1 is tiny when c is the block's computed mean, so the correction only
// removes the rounding of c.
DK_HOST_DEVICE BnMoments bn_block(double n, double c, double s1, double s2) {
  BnMoments m;
  double s1_n = s1 / n;
  m.n = n;
  m.mean = c + s1_n;
  double m2 = s2 - s1 * s1_n;
  m.m2 = m2 > 0 ? m2 : 0;
  return m;
}

// torch's running-statistic update: running <- (1 - momentum) * running + momentum * batch.
DK_HOST_DEVICE double bn_running(double running, double batch, double momentum) {
  return (1.0 - momentum) * running + momentum * batch;
}

// 1 / sqrt(var + eps): the forward's save_invstd from the biased variance (training)
// or the running variance (eval).
DK_HOST_DEVICE double bn_invstd(double var, double eps) { return 1.0 / ::sqrt(var + eps); }

// The per-channel terms of the backward from s_dy = sum dy and s_dy_xmu =
// sum dy (x - mean) over the channel's m values: dbias = s_dy, dweight =
// s_dy_xmu * invstd, and bn_backward's coefficients (mean_dy = k = 0 in eval).
struct BnBackCoef {
  double dweight, dbias, mean_dy, k, scale;
};

DK_HOST_DEVICE BnBackCoef bn_backward_coef(double s_dy, double s_dy_xmu, double invstd, double weight, double m,
                                           bool training) {
  BnBackCoef c;
  c.dbias = s_dy;
  c.dweight = s_dy_xmu * invstd;
  c.scale = invstd * weight;
  c.mean_dy = training ? s_dy / m : 0.0;
  c.k = training ? invstd * invstd * s_dy_xmu / m : 0.0;
  return c;
}

// y = (x - mean) * scale + shift, scale = invstd * weight, shift = bias.
// (x - mean) first, as the statistics: folding mean into shift would cancel
// when |mean| >> std.
template <class V>
DK_HOST_DEVICE V bn_forward(V x, V mean, V scale, V shift) {
  return (x - mean) * scale + shift;
}

// dx of y = xhat * weight + bias, xhat = (x - mean) * invstd, with scale = invstd * weight.
// training (the statistics depend on x), over the m values of a channel:
//   dx = (dy - mean(dy) - (x - mean) * k) * scale,  k = invstd^2 * mean(dy * (x - mean))
// eval (the statistics are constants): mean_dy = k = 0, dx = dy * scale.
template <class V>
DK_HOST_DEVICE V bn_backward(V dy, V x, V mean, V mean_dy, V k, V scale) {
  return (dy - mean_dy - (x - mean) * k) * scale;
}

}  // namespace dk
