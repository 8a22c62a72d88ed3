// GEMM micro-kernel and blocking, per instruction set (included by gemm.cpp only).
//
// The micro-kernel computes one ROWS x (NV * width) tile of C from a packed A
// strip (k x MR, k-major: a[kk * MR + i]) and a B strip (k rows of NV vectors,
// `b_step` elements apart: NR when packed, ldb when B is read in place). The
// tile lives in ROWS * NV vector registers for the whole k loop; each k step is
// NV vector loads of B, ROWS broadcasts of A and ROWS * NV independent FMAs.
// ROWS < MR and NV < NV_max are the edge tiles: same code, fewer registers,
// so edges run at full speed instead of a scalar tail; the last vector of a
// row is stored masked. A tile of a few edge rows spans several B strips
// (edge_strips), or its few FMA chains would wait on latency.
//
// Register blocking (vectors along N, C row-major):
//   AVX-512: 14 x 32 float / 14 x 16 double: 28 accumulators + 2 B vectors +
//            1 broadcast = 31 of 32 zmm. Zen 4 runs one zmm FMA per cycle with
//            latency 4, so 28 chains hide the latency 7 times over, and the 16
//            loads per 28 FMAs stay well under the load ports. With A and B in
//            cache it runs at 94% of the measured FMA peak on one core; 12 x 32,
//            8 x 48 and 6 x 64 measured the same or up to 2% lower.
//   AVX2:    6 x 16 float / 6 x 8 double: 12 accumulators + 2 + 1 = 15 of 16 ymm.
//   generic: 4 x 4 scalars (the compiler vectorises what it can).
// b_in_place: B stored k-major may be read in place rather than packed
// (gemm.cpp's b_in_place() says when).
// Cache blocking (Zen 4: 32 KiB L1D, 1 MiB L2 per core, 32 MiB L3 shared): the
// A block (MC x KC) sits in L2 and is swept once per B strip; a B strip
// (KC x NR) is reused from L2 by the MC / MR tiles of the block. See gemm.cpp.
#pragma once
#include <omp.h>

#include <array>
#include <cstdint>
#include <utility>

#include "cpu/simd.h"

namespace dk::cpu::DK_ISA_NS {

template <class T>
struct GemmBlocking;

#if defined(__AVX512F__)
template <>
struct GemmBlocking<float> {
  static constexpr int mr = 14, nv = 2;
  static constexpr int64_t kc = 768, mc = 168, nc = 3072;
  static constexpr bool b_in_place = true;
};
template <>
struct GemmBlocking<double> {
  static constexpr int mr = 14, nv = 2;
  static constexpr int64_t kc = 768, mc = 84, nc = 1536;
  static constexpr bool b_in_place = true;
};
#elif defined(__AVX2__)
template <>
struct GemmBlocking<float> {
  static constexpr int mr = 6, nv = 2;
  static constexpr int64_t kc = 768, mc = 120, nc = 3072;
  static constexpr bool b_in_place = false;
};
template <>
struct GemmBlocking<double> {
  static constexpr int mr = 6, nv = 2;
  static constexpr int64_t kc = 512, mc = 96, nc = 1536;
  static constexpr bool b_in_place = false;
};
#else
template <class T>
struct GemmBlocking {
  static constexpr int mr = 4, nv = 4;
  static constexpr int64_t kc = 256, mc = 128, nc = 1024;
  static constexpr bool b_in_place = true;
};
#endif

// What happens to a finished tile: C = alpha * acc + beta * C + col[j] + row[i].
template <class T>
struct Epilogue {
  T alpha = T(1), beta = T(0);
  const T* col = nullptr;  // at this tile's first column
  const T* row = nullptr;  // at this tile's first row
};

// b_prefetch: when B is read in place, each k row of the strip also touches
// the same row b_prefetch elements on (two strips ahead): the rows of a strip
// lie ldb apart, each on its own page, where the hardware prefetchers do not
// follow; touched early, the next strips arrive while this one computes.
// This made reading B in place beat packing it on every shape measured
// ((64, 32768, 576): 91 against 72 GFLOP/s on one core). 0: no prefetch.
// NV beyond GemmBlocking::nv (edge rows only, see edge_strips): vector v
// is vector v % nv of the strip v / nv, strips b_strip elements apart.
template <class T, int ROWS, int NV>
__attribute__((noinline)) void micro_kernel(int64_t k, const T* __restrict a, const T* __restrict b,
                                            int64_t b_step, int64_t b_strip, int64_t b_prefetch, T* __restrict c,
                                            int64_t ldc, int64_t n_valid, const Epilogue<T>& e) {
  using V = Vec<T>;
  constexpr int W = V::width, MR = GemmBlocking<T>::mr, NVS = GemmBlocking<T>::nv;
  V acc[ROWS][NV];
#pragma GCC unroll 64
  for (int i = 0; i < ROWS; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = V(T(0));

  // The C tile's lines, needed only after the k loop: loaded during it, not
  // at the epilogue's latency (C of a large product lives in L3). 2 Zen 3
  // cores (AVX2), medians of alternating processes: LSTM T=50 forward +
  // backward (32, 512, 512) 193 -> 172 ms, (64, 128, 256) 97 -> 75 ms,
  // (1600, 512, 2048) 26.8 -> 23.4 ms.
#pragma GCC unroll 64
  for (int i = 0; i < ROWS; ++i) {
    __builtin_prefetch(c + i * ldc, 1);
    __builtin_prefetch(c + i * ldc + n_valid - 1, 1);
  }
#pragma GCC unroll 2
  for (int64_t kk = 0; kk < k; ++kk) {
    V bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const T* bp = b + v / NVS * b_strip + v % NVS * W;
      if (b_prefetch) __builtin_prefetch(bp + b_prefetch);
      bv[v] = V::load(bp);
    }
#pragma GCC unroll 64
    for (int i = 0; i < ROWS; ++i) {
      V ai(a[i]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = fma(ai, bv[v], acc[i][v]);
    }
    a += MR;
    b += b_step;
  }

  const V alpha(e.alpha), beta(e.beta);
#pragma GCC unroll 64
  for (int i = 0; i < ROWS; ++i) {
    T* cr = c + i * ldc;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      int64_t n = n_valid - v * W;  // > 0: NV covers n_valid
      V r = acc[i][v] * alpha;
      if (e.beta != T(0)) r = fma(V::load(cr + v * W, n), beta, r);
      if (e.col) r = r + V::load(e.col + v * W, n);
      if (e.row) r = r + V(e.row[i]);
      r.store(cr + v * W, n);
    }
  }
}

// B strips an edge tile of `rows` rows takes at once, so that it still has
// the 8 accumulator chains that hide the FMA latency (4 cycles) on two pipes:
// a 2-row AVX2 tile of one strip has 4 and ran at half speed, 10% of the
// time of the (32, 2048, 512) products of an LSTM recurrence at batch 32.
// With the packing prefetch (gemm_pack.h), 2 Zen 3 cores, LSTM T=50
// (32, 512, 512) forward + backward, old and new alternating in one process,
// medians of 15: 3-6% faster in 4 runs of 5, 6% slower in one.
template <class T>
constexpr int edge_strips(int64_t rows) {
  constexpr int chains = 8, nv = GemmBlocking<T>::nv;
  return static_cast<int>((chains + rows * nv - 1) / (rows * nv));
}

// micro_kernel<T, rows, nv> for run-time rows in [1, MR] and nv in [1, NV]
// (more for edge rows): a table built at compile time, indexed [rows - 1][nv - 1].
template <class T>
using MicroKernel = void (*)(int64_t, const T*, const T*, int64_t, int64_t, int64_t, T*, int64_t, int64_t,
                             const Epilogue<T>&);

template <class T, int ROWS, int NV>
constexpr MicroKernel<T> kernel_entry() {
  if constexpr (NV <= GemmBlocking<T>::nv * edge_strips<T>(ROWS)) return &micro_kernel<T, ROWS, NV>;
  else return nullptr;
}

template <class T, int ROWS, int... NVs>
constexpr auto kernel_row(std::integer_sequence<int, NVs...>) {
  return std::array<MicroKernel<T>, sizeof...(NVs)>{kernel_entry<T, ROWS, NVs + 1>()...};
}

template <class T, int... Rs>
constexpr auto kernel_table(std::integer_sequence<int, Rs...>) {
  constexpr int most = GemmBlocking<T>::nv * edge_strips<T>(1);
  return std::array<std::array<MicroKernel<T>, most>, sizeof...(Rs)>{
      kernel_row<T, Rs + 1>(std::make_integer_sequence<int, most>{})...};
}

template <class T>
inline MicroKernel<T> pick_kernel(int64_t rows, int64_t n_valid) {
  static constexpr auto table = kernel_table<T>(std::make_integer_sequence<int, GemmBlocking<T>::mr>{});
  constexpr int W = Vec<T>::width;
  return table[rows - 1][(n_valid + W - 1) / W - 1];
}

// The FMA throughput micro_kernel is measured against (GemmKernels::fma_peak_gflops):
// independent FMA chains, as many as hide the latency on both pipes, in registers.
inline volatile double peak_sink;

template <class T>
double fma_peak_gflops(int threads, double seconds) {
  using V = Vec<T>;
  // Latency 4 x 2 FMA pipes needs 8 chains; more for margin, but chains and
  // the two operands must stay in registers: 16 of AVX2's 16 ymm spilled and
  // measured 53 of 92 GFLOP/s on a Zen 3 core (12: 92).
  constexpr int chains = sizeof(V) == 64 ? 16 : 12;
  double flops = 0, elapsed = 0;
#pragma omp parallel num_threads(std::max(1, threads)) reduction(+ : flops) reduction(max : elapsed)
  {
    V acc[chains];
    for (int i = 0; i < chains; ++i) acc[i] = V(T(i));
    const V x(T(0.999999)), y(T(1e-6));
    double t0 = omp_get_wtime(), t = t0;
    int64_t iters = 0;
    while (t - t0 < seconds) {
      for (int rep = 0; rep < 4096; ++rep) {
#pragma GCC unroll 16
        for (int i = 0; i < chains; ++i) acc[i] = fma(acc[i], x, y);
      }
      iters += 4096;
      t = omp_get_wtime();
    }
    V s = acc[0];
    for (int i = 1; i < chains; ++i) s = s + acc[i];
    peak_sink = double(reduce_add(s));  // the chains' result is observable: no FMA is dead
    flops = 2.0 * chains * V::width * double(iters);
    elapsed = t - t0;
  }
  return flops / elapsed / 1e9;
}

}  // namespace dk::cpu::DK_ISA_NS
