// The GEMM engine: C = alpha * op(A) * op(B) + beta * C (+ bias), see GemmParams.
//
// Entry points (all dispatch to the active instruction set):
//   gemm(p, a, b, c)                 raw row-major operands, p.lda / p.ldb / p.trans_*
//   gemm(p, A, B, c, bias)           A and B each either a raw pointer or a PackedMatrix;
//                                    for a packed operand p.ld* and p.trans_* are ignored
//   pack_a(m, k, a, lda, trans_a)    op(A) (m x k) packed once into the engine's panels
//   pack_b(k, n, b, ldb, trans_b)    op(B) (k x n) likewise
//   repack_a(into, m, k, a, lda, trans_a)  pack_a into a matrix kept between calls,
//                                    whose storage is reused when big enough
//   sum_rows(m, n, x, out)           out[j] = sum_i x[i * n + j] (bias gradient)
//
// Pre-packing is for a weight multiplied many times: conv's weight is A
// (K x CRS), a linear or LSTM weight W (out x in) is B with trans_b
// (y = x W^T). A PackedMatrix is only valid for the process's active ISA (the
// panel widths differ per ISA); gemm checks this and throws otherwise.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "core/params.h"
#include "cpu/dispatch.h"

namespace dk::cpu {

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

// Uninitialised memory for `bytes` (freed with std::free), 64-byte aligned;
// from 4 MiB up (numpy's threshold too), 2 MiB aligned and marked for
// transparent huge pages, which Linux by default gives only where asked
// (madvise). The engine's packed blocks and an LSTM's gate gradients are read
// in strided runs, and with 4 KiB pages each run was a TLB miss: LSTM T=50
// (32, 512, 512), 2 Zen 3 cores, medians of alternating processes: backward
// 154 -> 131 ms (its dx and weight-gradient GEMMs 109 -> 94 ms), the module's
// forward + backward 205 -> 194 ms.
inline void* aligned_bytes(size_t bytes) {
  constexpr size_t huge = size_t(2) << 20;
  if (bytes < 2 * huge) return std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  bytes = (bytes + huge - 1) / huge * huge;
  void* p = std::aligned_alloc(huge, bytes);
#if defined(__linux__)
  if (p) madvise(p, bytes, MADV_HUGEPAGE);  // advice only: without it, 4 KiB pages
#endif
  return p;
}

// op(X) in panels: for each block of kc rows of K (the last one may be shorter)
// and each strip of `panel` rows of op(A) (or columns of op(B)), a
// (kc x panel) slab, k-major, the last strip zero-padded to the full panel.
// Slab (k0, s) starts at k0 * padded + s * kc_of_block * panel, where `padded`
// is the strip dimension rounded up to `panel`.
template <class T>
struct PackedMatrix {
  bool is_b = false;      // packed as op(B) (k x n) rather than op(A) (m x k)
  int64_t rows = 0;       // m of op(A), or n of op(B): the strip dimension
  int64_t depth = 0;      // k
  int64_t panel = 0;      // MR (A) or NR (B) of the ISA that packed it
  int64_t kc = 0;         // K block of that ISA for this depth
  std::unique_ptr<T[], AlignedFree> data;
  int64_t capacity = 0;   // elements data holds
};

// Added to C after alpha * op(A) op(B) + beta * C, once:
//   C[i][j] += col[j] (a row vector: linear's bias) + row[i] (conv's bias per channel).
template <class T>
struct GemmBias {
  const T* col = nullptr;  // length n, or nullptr
  const T* row = nullptr;  // length m, or nullptr
};

// One operand of gemm: a raw pointer (with p.ld* and p.trans_*) or a packed matrix.
template <class T>
struct GemmOperand {
  const T* raw = nullptr;
  const PackedMatrix<T>* packed = nullptr;
  GemmOperand(const T* p) : raw(p) {}
  GemmOperand(const PackedMatrix<T>& m) : packed(&m) {}
};

template <class T>
struct GemmKernels {
  // Row-major C (m x n, row stride p.ldc). beta == 0: C is not read. alpha == 0
  // or k == 0: A and B are not read (C = beta * C + bias), as BLAS.
  void (*gemm)(const GemmParams& p, GemmOperand<T> a, GemmOperand<T> b, T* c, const GemmBias<T>& bias);
  // is_b false: src holds A (m x k, or k x m when trans); rows = m, depth = k.
  // is_b true:  src holds B (k x n, or n x k when trans); rows = n, depth = k.
  // Packs into out, reusing its storage when it has the capacity.
  void (*pack)(PackedMatrix<T>& out, bool is_b, int64_t rows, int64_t depth, const T* src, int64_t ld, bool trans);
  // out[j] = sum over i of x[i * n + j], x (m, n): the bias gradient of linear.
  void (*sum_rows)(int64_t m, int64_t n, const T* x, T* out);
  // Measured FMA throughput of `threads` threads running for `seconds`:
  // GFLOP/s of this dtype, all threads together (the benchmarks' 100%).
  double (*fma_peak_gflops)(int threads, double seconds);
};

DK_DECLARE_KERNELS(GemmKernels, gemm)

// T is deduced from c alone, so a raw pointer or a PackedMatrix converts.
template <class T>
struct NonDeduced {
  using type = T;
};

template <class T>
inline void gemm(const GemmParams& p, const T* a, const T* b, T* c) {
  gemm_kernels<T>().gemm(p, a, b, c, GemmBias<T>{});
}

template <class T>
inline void gemm(const GemmParams& p, typename NonDeduced<GemmOperand<T>>::type a,
                 typename NonDeduced<GemmOperand<T>>::type b, T* c,
                 const typename NonDeduced<GemmBias<T>>::type& bias = {}) {
  gemm_kernels<T>().gemm(p, a, b, c, bias);
}

template <class T>
inline void repack_a(PackedMatrix<T>& into, int64_t m, int64_t k, const T* a, int64_t lda, bool trans_a) {
  gemm_kernels<T>().pack(into, false, m, k, a, lda, trans_a);
}

template <class T>
inline PackedMatrix<T> pack_a(int64_t m, int64_t k, const T* a, int64_t lda, bool trans_a) {
  PackedMatrix<T> out;
  repack_a(out, m, k, a, lda, trans_a);
  return out;
}

template <class T>
inline PackedMatrix<T> pack_b(int64_t k, int64_t n, const T* b, int64_t ldb, bool trans_b) {
  PackedMatrix<T> out;
  gemm_kernels<T>().pack(out, true, n, k, b, ldb, trans_b);
  return out;
}

template <class T>
inline void sum_rows(int64_t m, int64_t n, const T* x, T* out) {
  gemm_kernels<T>().sum_rows(m, n, x, out);
}

}  // namespace dk::cpu
