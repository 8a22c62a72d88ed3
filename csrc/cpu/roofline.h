// The machine's limits, measured, so benchmarks can print a kernel's share of them.
#pragma once
#include <cstdint>

#include "cpu/dispatch.h"

namespace dk::cpu {

template <class T>
struct RooflineKernels {
  // a[i] = b[i] + s * c[i] over three arrays of n elements with `threads` threads, best of
  // `repeats`; returns GB/s counting 3 * n * sizeof(T) bytes moved per pass (STREAM's rule).
  double (*triad_gbps)(int64_t n, int threads, int repeats);
};

DK_DECLARE_KERNELS(RooflineKernels, roofline)

}  // namespace dk::cpu
