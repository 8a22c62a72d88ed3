// GEMM packing (included by gemm.cpp only): copies strips of op(A) or op(B)
// into the k-major panels the micro-kernel streams, dst[kk * panel + r],
// zero-padded from `rows` up to `panel` (padding lanes are multiplied but never
// stored; zeros keep them free of NaN and of slow denormals). Also the K
// blocking and the per-thread packing buffers.
//
// A strip of op(X) is `rows` values of the strip dimension (m for A, n for B)
// by kc values of k, in one of two source layouts:
//   strip-contiguous (A transposed, B plain): (r, kk) at src[kk * ld + r]:
//     each kk is a contiguous run: (masked) vector copies, row by row.
//   k-contiguous (A plain, B transposed: linear's weight): (r, kk) at src[r * ld + kk]:
//     a transpose, done width x width in registers (16 x 16 floats with
//     AVX-512: 16 loads, 64 shuffles and 16 stores per 256 values).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <new>

#include "cpu/gemm.h"
#include "cpu/simd.h"

namespace dk::cpu::DK_ISA_NS {

inline int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

// K blocks of equal size (the last may be shorter by < #blocks).
inline int64_t k_block(int64_t k, int64_t kc_max) {
  int64_t blocks = (k + kc_max - 1) / kc_max;
  return (k + blocks - 1) / blocks;
}

// 64-byte aligned scratch owned by the calling thread, grown on demand and
// reused by later calls (OpenMP keeps its threads alive between regions).
// Slots 0 and 1 are gemm's; 2 and 3 conv's (which calls gemm while holding them).
template <class T>
T* scratch(int slot, int64_t count) {
  struct Buffer {
    T* p = nullptr;
    int64_t cap = 0;
    ~Buffer() { std::free(p); }
  };
  static thread_local Buffer buffers[4];
  Buffer& b = buffers[slot];
  if (b.cap < count) {
    std::free(b.p);
    b.cap = round_up(count, 1024);
    b.p = static_cast<T*>(aligned_bytes(static_cast<size_t>(b.cap) * sizeof(T)));
    if (!b.p) {
      b.cap = 0;
      throw std::bad_alloc();
    }
  }
  return b.p;
}

// r[t] lane u becomes r[u] lane t.
#if defined(__AVX512F__)
static inline void transpose(Vec<float> (&r)[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i].v, r[2 * i + 1].v);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i].v, r[2 * i + 1].v);
  }
  // u[4i + j], 128-bit lane L: rows 4i..4i+3 of column 4L + j.
  for (int i = 0; i < 4; ++i) {
    __m512d t0 = _mm512_castps_pd(t[4 * i]), t1 = _mm512_castps_pd(t[4 * i + 1]);
    __m512d t2 = _mm512_castps_pd(t[4 * i + 2]), t3 = _mm512_castps_pd(t[4 * i + 3]);
    u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  for (int j = 0; j < 4; ++j) {
    __m512 x0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), x1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xdd);
    __m512 y0 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88), y1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xdd);
    r[j].v = _mm512_shuffle_f32x4(x0, y0, 0x88);
    r[8 + j].v = _mm512_shuffle_f32x4(x0, y0, 0xdd);
    r[4 + j].v = _mm512_shuffle_f32x4(x1, y1, 0x88);
    r[12 + j].v = _mm512_shuffle_f32x4(x1, y1, 0xdd);
  }
}

static inline void transpose(Vec<double> (&r)[8]) {
  __m512d t[8];
  // t[2i + j], 128-bit lane L: rows 2i, 2i+1 of column 2L + j.
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm512_unpacklo_pd(r[2 * i].v, r[2 * i + 1].v);
    t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i].v, r[2 * i + 1].v);
  }
  for (int j = 0; j < 2; ++j) {
    __m512d x0 = _mm512_shuffle_f64x2(t[j], t[2 + j], 0x88), x1 = _mm512_shuffle_f64x2(t[j], t[2 + j], 0xdd);
    __m512d y0 = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0x88), y1 = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0xdd);
    r[j].v = _mm512_shuffle_f64x2(x0, y0, 0x88);
    r[4 + j].v = _mm512_shuffle_f64x2(x0, y0, 0xdd);
    r[2 + j].v = _mm512_shuffle_f64x2(x1, y1, 0x88);
    r[6 + j].v = _mm512_shuffle_f64x2(x1, y1, 0xdd);
  }
}
#elif defined(__AVX2__)
static inline void transpose(Vec<float> (&r)[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i].v, r[2 * i + 1].v);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i].v, r[2 * i + 1].v);
  }
  // u[4i + j], 128-bit lane L: rows 4i..4i+3 of column 4L + j.
  for (int i = 0; i < 2; ++i) {
    __m256d t0 = _mm256_castps_pd(t[4 * i]), t1 = _mm256_castps_pd(t[4 * i + 1]);
    __m256d t2 = _mm256_castps_pd(t[4 * i + 2]), t3 = _mm256_castps_pd(t[4 * i + 3]);
    u[4 * i] = _mm256_castpd_ps(_mm256_unpacklo_pd(t0, t2));
    u[4 * i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(t0, t2));
    u[4 * i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(t1, t3));
    u[4 * i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(t1, t3));
  }
  for (int j = 0; j < 4; ++j) {
    r[j].v = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    r[4 + j].v = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}

static inline void transpose(Vec<double> (&r)[4]) {
  __m256d t0 = _mm256_unpacklo_pd(r[0].v, r[1].v), t1 = _mm256_unpackhi_pd(r[0].v, r[1].v);
  __m256d t2 = _mm256_unpacklo_pd(r[2].v, r[3].v), t3 = _mm256_unpackhi_pd(r[2].v, r[3].v);
  r[0].v = _mm256_permute2f128_pd(t0, t2, 0x20);
  r[1].v = _mm256_permute2f128_pd(t1, t3, 0x20);
  r[2].v = _mm256_permute2f128_pd(t0, t2, 0x31);
  r[3].v = _mm256_permute2f128_pd(t1, t3, 0x31);
}
#else
template <class T>
static inline void transpose(Vec<T> (&)[1]) {}
#endif

// The first n lanes of src (n may be <= 0 or >= width); the rest zero.
template <class T>
static inline Vec<T> load_part(const T* src, int64_t n) {
  return n <= 0 ? Vec<T>(T(0)) : Vec<T>::load(src, n);
}

// Many strips at once: (r, kk) at src[kk * ld + r] for r < rows (any count),
// strip s = r / panel to dst + s * kc * panel. Walks src row by row, so a wide
// matrix is read as long sequential runs the prefetchers follow; strip by
// strip it would be kc short runs ld apart, each a cache (and often TLB) miss,
// which left a third of the time of (64, 32768, 576) waiting on memory.
// Short runs (up to 8 lines) are touched kPackPrefetchRows rows before they
// are copied: each is a few lines on what is often a new page, where the
// hardware prefetchers do not run ahead. 2 Zen 3 cores, medians of 25
// interleaved runs: dA^T x of an LSTM backward (2048, 512, 1600) 126 -> 129-134
// GFLOP/s; the (32, 512, 512) layer's forward + backward about 1% faster
// (-2% to +3% over six in-process A/B runs).
constexpr int64_t kPackPrefetchRows = 8;

template <class T>
void pack_strips_copy(const T* src, int64_t ld, int64_t rows, int64_t kc, T* dst, int64_t panel) {
  using V = Vec<T>;
  const int64_t strips = (rows + panel - 1) / panel;
  const bool short_runs = rows * int64_t(sizeof(T)) <= 512;
  for (int64_t kk = 0; kk < kc; ++kk, src += ld) {
    if (short_runs && kk + kPackPrefetchRows < kc)
      for (int64_t o = 0; o < rows; o += 64 / int64_t(sizeof(T))) __builtin_prefetch(src + kPackPrefetchRows * ld + o);
    for (int64_t s = 0; s < strips; ++s) {
      const T* from = src + s * panel;
      T* to = dst + (s * kc + kk) * panel;
      int64_t live = rows - s * panel;
      if (live >= panel) {  // (masked only when panel is no multiple of the width: A's MR)
        for (int64_t o = 0; o < panel; o += V::width) V::load(from + o, panel - o).store(to + o, panel - o);
      } else {
        for (int64_t o = 0; o < panel; o += V::width) load_part(from + o, live - o).store(to + o, panel - o);
      }
    }
  }
}

// (r, kk) at src[r * ld + kk] -> dst[kk * panel + r], r < rows <= panel.
template <class T>
void pack_strip_transpose(const T* src, int64_t ld, int64_t rows, int64_t kc, T* dst, int64_t panel) {
  using V = Vec<T>;
  constexpr int W = V::width;
  for (int64_t o = 0; o < panel; o += W) {
    int64_t live = rows - o;  // source rows feeding lanes o .. o + W
    for (int64_t k0 = 0; k0 < kc; k0 += W) {
      int64_t kn = kc - k0 < W ? kc - k0 : W;
      V r[W];
      for (int t = 0; t < W; ++t) r[t] = t < live ? V::load(src + (o + t) * ld + k0, kn) : V(T(0));
      transpose(r);
      for (int64_t u = 0; u < kn; ++u) r[u].store(dst + (k0 + u) * panel + o, panel - o);
    }
  }
}

}  // namespace dk::cpu::DK_ISA_NS
