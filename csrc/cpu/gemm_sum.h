// sum_rows (included by gemm.cpp only): out[j] = sum over i of x[i * n + j],
// x (m, n) row-major: the column sums that are linear's bias gradient.
//
// Streams x once, row by row: a tile of up to kSumTile columns is summed into
// accumulators that stay in L1 while rows pass (four rows per pass, so each
// accumulator load/store carries four additions); a tile of at most four
// vectors keeps its sums in registers (through memory, each pass would wait
// on a masked store forwarding to the next load). Threads take column tiles
// when there are enough of them (no reduction needed); otherwise (narrow, tall
// x) each thread sums a range of rows into its own partial row, and the
// partials are added in thread order, so the result does not depend on timing.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace dk::cpu::DK_ISA_NS {

constexpr int64_t kSumTile = 1024;

// acc[0 .. nc) (+)= column sums of rows [r0, r1) of x, columns [c0, c0 + nc).
template <class T>
void sum_rows_tile(const T* x, int64_t n, int64_t r0, int64_t r1, int64_t c0, int64_t nc, T* acc, bool add) {
  using V = Vec<T>;
  constexpr int W = V::width;
  if (nc <= 4 * W) {  // narrow: the sums stay in registers for every row
    V s[4] = {V(T(0)), V(T(0)), V(T(0)), V(T(0))};
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * n + c0;
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v)
        if (v * W < nc) s[v] = s[v] + V::load(xr + v * W, nc - v * W);
    }
    for (int v = 0; v * W < nc; ++v) (add ? V::load(acc + v * W, nc - v * W) + s[v] : s[v]).store(acc + v * W, nc - v * W);
    return;
  }
  if (!add) std::fill(acc, acc + nc, T(0));
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const T* x0 = x + r * n + c0;
    for (int64_t j = 0; j < nc; j += V::width) {
      int64_t k = nc - j;
      V s = (V::load(x0 + j, k) + V::load(x0 + n + j, k)) + (V::load(x0 + 2 * n + j, k) + V::load(x0 + 3 * n + j, k));
      (V::load(acc + j, k) + s).store(acc + j, k);
    }
  }
  for (; r < r1; ++r) {
    const T* x0 = x + r * n + c0;
    for (int64_t j = 0; j < nc; j += V::width) {
      int64_t k = nc - j;
      (V::load(acc + j, k) + V::load(x0 + j, k)).store(acc + j, k);
    }
  }
}

template <class T>
void sum_rows(int64_t m, int64_t n, const T* x, T* out) {
  if (n <= 0) return;
  if (m <= 0) return std::fill(out, out + n, T(0));
  const int nt = threads_for(m * n);
  const int64_t tiles = (n + kSumTile - 1) / kSumTile;
  if (nt == 1 || tiles >= 2 * nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      int64_t c0 = t * kSumTile;
      sum_rows_tile(x, n, 0, m, c0, std::min(kSumTile, n - c0), out + c0, false);
    }
    return;
  }
  std::vector<T> partial(static_cast<size_t>(nt) * n);
#pragma omp parallel num_threads(nt)
  {
    int id = omp_get_thread_num(), count = omp_get_num_threads();
    int64_t r0 = m * id / count, r1 = m * (id + 1) / count;
    T* mine = partial.data() + id * n;
    for (int64_t c0 = 0; c0 < n; c0 += kSumTile) sum_rows_tile(x, n, r0, r1, c0, std::min(kSumTile, n - c0), mine + c0, false);
  }
  using V = Vec<T>;
  for (int64_t j = 0; j < n; j += V::width) {
    V s = V::load(partial.data() + j, n - j);
    for (int t = 1; t < nt; ++t) s = s + V::load(partial.data() + t * n + j, n - j);
    s.store(out + j, n - j);
  }
}

}  // namespace dk::cpu::DK_ISA_NS
