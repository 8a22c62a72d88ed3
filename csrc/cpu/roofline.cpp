// STREAM triad: the memory bandwidth a streaming kernel can hope for on this
// machine. Arrays are first touched by the threads that use them (page
// placement), and the timed loop is the same static split as the kernels'.
#include "cpu/roofline.h"

#include <omp.h>

#include <algorithm>
#include <memory>

#include "cpu/simd.h"

namespace dk::cpu::DK_ISA_NS {

template <class T>
static double triad_gbps(int64_t n, int threads, int repeats) {
  using V = Vec<T>;
  std::unique_ptr<T[]> a(new T[n]), b(new T[n]), c(new T[n]);
  T *pa = a.get(), *pb = b.get(), *pc = c.get();
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    pa[i] = T(0);
    pb[i] = T(1);
    pc[i] = T(2);
  }
  const V s(T(3));
  double best = 0;
  for (int r = 0; r < std::max(1, repeats); ++r) {
    double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads)
    {
      int nt = omp_get_num_threads(), id = omp_get_thread_num();
      int64_t per = (n + nt - 1) / nt / V::width * V::width + V::width;
      int64_t lo = std::min(n, per * id), hi = std::min(n, lo + per);
      for (int64_t i = lo; i < hi; i += V::width)
        fma(s, V::load(pc + i, hi - i), V::load(pb + i, hi - i)).store(pa + i, hi - i);
    }
    double dt = omp_get_wtime() - t0;
    best = std::max(best, 3.0 * double(n) * sizeof(T) / dt / 1e9);
  }
  return best;
}

DK_DEFINE_TABLE(RooflineKernels, roofline, triad_gbps<T>)

}  // namespace dk::cpu::DK_ISA_NS
