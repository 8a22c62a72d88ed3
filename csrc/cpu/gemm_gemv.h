// Matrix-vector products (included by gemm.cpp only): gemm with m == 1 or n == 1.
//
// A 1-row (or 1-column) C reuses nothing: every element of the matrix operand
// is used once, so the time is the time to stream it, and the blocked engine
// would spend it on packing and on a 1-row tile that keeps two FMA chains
// busy of the four needed ((1, 4096, 1024) with trans_b: 3.8 GFLOP/s there,
// 13 here). Two streaming forms instead, by the matrix's layout:
//   rows form: y[j] = sum_kk v[kk] * x[kk * ldx + j]   (x read row by row;
//              four rows per pass into accumulators that stay in L1)
//   dots form: y[r] = sum_kk x[r * ldx + kk] * v[kk]   (four rows at once, each
//              a contiguous stream, two accumulators each, reduced at the end)
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "core/params.h"
#include "cpu/gemm.h"
#include "cpu/gemm_pack.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace dk::cpu::DK_ISA_NS {

constexpr int64_t kGemvTile = 2048;  // rows form: accumulator tile, 8 KiB of floats

// y[0 .. n) = sum over kk < k of v[kk] * x[kk * ldx + j].
template <class T>
void gemv_rows(int64_t k, int64_t n, const T* x, int64_t ldx, const T* v, T* y) {
  using V = Vec<T>;
  for (int64_t j0 = 0; j0 < n; j0 += kGemvTile) {
    const int64_t nj = std::min(kGemvTile, n - j0);
    T* acc = y + j0;
    std::fill(acc, acc + nj, T(0));
    int64_t kk = 0;
    for (; kk + 4 <= k; kk += 4) {
      const T* x0 = x + kk * ldx + j0;
      const V v0(v[kk]), v1(v[kk + 1]), v2(v[kk + 2]), v3(v[kk + 3]);
      for (int64_t j = 0; j < nj; j += V::width) {
        int64_t r = nj - j;
        V s = fma(v0, V::load(x0 + j, r), V::load(acc + j, r));
        V t = v1 * V::load(x0 + ldx + j, r);
        s = fma(v2, V::load(x0 + 2 * ldx + j, r), s);
        t = fma(v3, V::load(x0 + 3 * ldx + j, r), t);
        (s + t).store(acc + j, r);
      }
    }
    for (; kk < k; ++kk) {
      const T* x0 = x + kk * ldx + j0;
      const V v0(v[kk]);
      for (int64_t j = 0; j < nj; j += V::width) {
        int64_t r = nj - j;
        fma(v0, V::load(x0 + j, r), V::load(acc + j, r)).store(acc + j, r);
      }
    }
  }
}

// y[r] = sum over kk < k of x[r * ldx + kk] * v[kk], for r < rows.
template <class T>
void gemv_dots(int64_t rows, int64_t k, const T* x, int64_t ldx, const T* v, T* y) {
  using V = Vec<T>;
  constexpr int W = V::width;
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const T* x0 = x + r * ldx;
    V acc[4][2];
    for (auto& row : acc) row[0] = row[1] = V(T(0));
    int64_t kk = 0;
    for (; kk + 2 * W <= k; kk += 2 * W) {
      const V va = V::load(v + kk), vb = V::load(v + kk + W);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        acc[i][0] = fma(V::load(x0 + i * ldx + kk), va, acc[i][0]);
        acc[i][1] = fma(V::load(x0 + i * ldx + kk + W), vb, acc[i][1]);
      }
    }
    for (; kk < k; kk += W) {
      const V va = V::load(v + kk, k - kk);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) acc[i][0] = fma(V::load(x0 + i * ldx + kk, k - kk), va, acc[i][0]);
    }
    for (int i = 0; i < 4; ++i) y[r + i] = reduce_add(acc[i][0] + acc[i][1]);
  }
  for (; r < rows; ++r) {
    const T* x0 = x + r * ldx;
    V acc(T(0));
    for (int64_t kk = 0; kk < k; kk += W) acc = fma(V::load(x0 + kk, k - kk), V::load(v + kk, k - kk), acc);
    y[r] = reduce_add(acc);
  }
}

// m == 1 or n == 1, raw operands: out = mat * vec by streaming the matrix once
// (gemm_gemv.h), then C = alpha * out + beta * C + bias along C's row or column.
template <class T>
void gemv(const GemmParams& p, const T* a, const T* b, T* c, const GemmBias<T>& bias) {
  const bool row = p.m == 1;  // else a column: n == 1
  const int64_t len = row ? p.n : p.m, k = p.k;
  // The vector: op(A)'s only row, or op(B)'s only column; the matrix: the other.
  const T* vec = row ? a : b;
  const int64_t vec_step = row ? (p.trans_a ? p.lda : 1) : (p.trans_b ? 1 : p.ldb);
  const T* mat = row ? b : a;
  const int64_t ld = row ? p.ldb : p.lda;
  const bool rows_form = row ? !p.trans_b : p.trans_a;  // the matrix is k-major
  T* y = scratch<T>(1, len);
  if (vec_step != 1) {
    T* v = scratch<T>(0, k);
    for (int64_t kk = 0; kk < k; ++kk) v[kk] = vec[kk * vec_step];
    vec = v;
  }
  const int nt = threads_for(len * k);
  const int64_t align = 64;
#pragma omp parallel num_threads(nt)
  {
    int id = omp_get_thread_num(), count = omp_get_num_threads();
    int64_t per = round_up((len + count - 1) / count, align);
    int64_t lo = std::min(len, per * id), hi = std::min(len, lo + per);
    if (lo < hi) {
      if (rows_form) gemv_rows(k, hi - lo, mat + lo, ld, vec, y + lo);
      else gemv_dots(hi - lo, k, mat + lo * ld, ld, vec, y + lo);
    }
  }
  using V = Vec<T>;
  const T alpha = T(p.alpha), beta = T(p.beta);
  if (row) {  // C's row is contiguous, and so is bias.col
    const V va(alpha), vb(beta), add(bias.row ? bias.row[0] : T(0));
    for (int64_t j = 0; j < len; j += V::width) {
      int64_t r = len - j;
      V out = va * V::load(y + j, r) + add;
      if (beta != T(0)) out = fma(vb, V::load(c + j, r), out);
      if (bias.col) out = out + V::load(bias.col + j, r);
      out.store(c + j, r);
    }
    return;
  }
  for (int64_t i = 0; i < len; ++i) {
    T out = alpha * y[i] + (bias.col ? bias.col[0] : T(0)) + (bias.row ? bias.row[i] : T(0));
    if (beta != T(0)) out += beta * c[i * p.ldc];
    c[i * p.ldc] = out;
  }
}

}  // namespace dk::cpu::DK_ISA_NS
