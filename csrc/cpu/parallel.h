// Splitting work over the OpenMP threads.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "core/cpu_features.h"

namespace dk::cpu::DK_ISA_NS {

// Below this many elements of streaming work, waking a second thread costs more
// than it saves.
constexpr int64_t kMinParallelElements = 1 << 15;

// Threads worth using for `work` elements of streaming work.
inline int threads_for(int64_t work) {
  int64_t most = std::max<int64_t>(1, work / kMinParallelElements);
  return static_cast<int>(std::min<int64_t>(get_num_threads(), most));
}

// The elements of many tensors seen as one index space of sum(sizes) elements,
// cut into one contiguous range per thread (so many small tensors and one huge
// tensor both use every thread). Ranges are cut at multiples of `align`
// elements to keep threads off each other's cache lines.
// Calls f(tensor, begin, end) for each piece of a tensor a thread owns.
// `nthreads` is fixed by the caller when it sizes per-thread results with it:
// reading the thread count twice would race with set_num_threads on another thread.
template <class F>
void for_each_range(int64_t count, const int64_t* sizes, int64_t align, int nthreads, F&& f) {
  int64_t total = 0;
  for (int64_t t = 0; t < count; ++t) total += sizes[t];
#pragma omp parallel num_threads(nthreads)
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    int64_t per = (total + nt - 1) / nt;
    per = (per + align - 1) / align * align;
    int64_t lo = std::min(total, per * id), hi = std::min(total, lo + per);
    int64_t start = 0;  // global index of tensor t's first element
    for (int64_t t = 0; t < count && start < hi; start += sizes[t], ++t) {
      int64_t b = std::max(lo, start), e = std::min(hi, start + sizes[t]);
      if (b < e) f(t, b - start, e - start);
    }
  }
}

template <class F>
void for_each_range(int64_t count, const int64_t* sizes, int64_t align, F&& f) {
  int64_t total = 0;
  for (int64_t t = 0; t < count; ++t) total += sizes[t];
  for_each_range(count, sizes, align, threads_for(total), f);
}

}  // namespace dk::cpu::DK_ISA_NS
