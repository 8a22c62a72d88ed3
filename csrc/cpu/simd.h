// Vec<T>: the one vector type CPU kernels are written against. Each file in
// csrc/cpu/ is compiled once per instruction set with DK_ISA_NS naming it
// (generic, avx2, avx512); this header then gives Vec the widest registers that
// set has, inside that set's own namespace, so the copies never meet.
//
//   Vec<T>::width              lanes: 16/8 (avx512 f32/f64), 8/4 (avx2), 1 (generic)
//   Vec<T>::load(p)            load width elements;   load(p, n): the first min(n, width), rest 0
//   v.store(p)                 store width elements;  store(p, n): the first min(n, width) only
//   + - * /, unary -, fma(a, b, c) = a * b + c, max, min, abs, sqrt
//   a < b, a > b, ...          a Mask; select(mask, a, b) = mask ? a : b per lane
//   reduce_add(v), reduce_max(v)
// max(a, b) and min(a, b) return a where a is NaN, so NaN inputs propagate.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "core/dk.h"

#ifndef DK_ISA_NS
#error "files in csrc/cpu/ are compiled once per instruction set, with -DDK_ISA_NS=<isa>"
#endif

namespace dk::cpu::DK_ISA_NS {

template <class T>
struct Vec;

#if defined(__AVX512F__)
#define DK_VEC_ISA avx512

#define DK_VEC512(T, R, S, MASK)                                                         \
  template <>                                                                            \
  struct Vec<T> {                                                                        \
    static constexpr int width = sizeof(R) / sizeof(T);                                  \
    using Mask = MASK;                                                                   \
    R v;                                                                                 \
    Vec() = default;                                                                     \
    Vec(R x) : v(x) {}                                                                   \
    Vec(T x) : v(_mm512_set1_##S(x)) {}                                                  \
    static MASK tail(int64_t n) { return static_cast<MASK>((1u << n) - 1u); }            \
    static Vec load(const T* p) { return _mm512_loadu_##S(p); }                          \
    static Vec load(const T* p, int64_t n) {                                             \
      return n >= width ? load(p) : Vec(_mm512_maskz_loadu_##S(tail(n), p));             \
    }                                                                                    \
    void store(T* p) const { _mm512_storeu_##S(p, v); }                                  \
    void store(T* p, int64_t n) const {                                                  \
      if (n >= width) store(p);                                                          \
      else _mm512_mask_storeu_##S(p, tail(n), v);                                        \
    }                                                                                    \
  };                                                                                     \
  static inline Vec<T> operator+(Vec<T> a, Vec<T> b) { return _mm512_add_##S(a.v, b.v); } \
  static inline Vec<T> operator-(Vec<T> a, Vec<T> b) { return _mm512_sub_##S(a.v, b.v); } \
  static inline Vec<T> operator*(Vec<T> a, Vec<T> b) { return _mm512_mul_##S(a.v, b.v); } \
  static inline Vec<T> operator/(Vec<T> a, Vec<T> b) { return _mm512_div_##S(a.v, b.v); } \
  static inline Vec<T> operator-(Vec<T> a) { return _mm512_sub_##S(_mm512_setzero_##S(), a.v); } \
  static inline Vec<T> fma(Vec<T> a, Vec<T> b, Vec<T> c) { return _mm512_fmadd_##S(a.v, b.v, c.v); } \
  static inline Vec<T> max(Vec<T> a, Vec<T> b) { return _mm512_max_##S(b.v, a.v); }     \
  static inline Vec<T> min(Vec<T> a, Vec<T> b) { return _mm512_min_##S(b.v, a.v); }     \
  static inline Vec<T> abs(Vec<T> a) { return _mm512_abs_##S(a.v); }                    \
  static inline Vec<T> sqrt(Vec<T> a) { return _mm512_sqrt_##S(a.v); }                  \
  static inline MASK operator<(Vec<T> a, Vec<T> b) { return _mm512_cmp_##S##_mask(a.v, b.v, _CMP_LT_OQ); } \
  static inline MASK operator<=(Vec<T> a, Vec<T> b) { return _mm512_cmp_##S##_mask(a.v, b.v, _CMP_LE_OQ); } \
  static inline MASK operator>(Vec<T> a, Vec<T> b) { return _mm512_cmp_##S##_mask(a.v, b.v, _CMP_GT_OQ); } \
  static inline MASK operator>=(Vec<T> a, Vec<T> b) { return _mm512_cmp_##S##_mask(a.v, b.v, _CMP_GE_OQ); } \
  static inline Vec<T> select(MASK m, Vec<T> a, Vec<T> b) { return _mm512_mask_blend_##S(m, b.v, a.v); } \
  static inline T reduce_add(Vec<T> a) { return _mm512_reduce_add_##S(a.v); }          \
  static inline T reduce_max(Vec<T> a) { return _mm512_reduce_max_##S(a.v); }

DK_VEC512(float, __m512, ps, __mmask16)
DK_VEC512(double, __m512d, pd, __mmask8)
#undef DK_VEC512

#elif defined(__AVX2__)
#define DK_VEC_ISA avx2

// AVX2 has no mask registers: masks are vectors of all-ones / all-zeros lanes,
// and the partial loads take such a vector built from the lane count. Partial
// stores are split by the bits of the count into 4-, 2- and 1-lane stores
// instead: vmaskmovps to memory is microcoded on AMD (Zen 3: about 12 cycles
// a store), and packing a GEMM's A panels (6 floats per k) spent 22% of a
// trans_a product in it.
static inline void store_part(float* p, __m256 v, int64_t n) {  // 0 < n < 8
  __m128 x = _mm256_castps256_ps128(v);
  if (n & 4) _mm_storeu_ps(p, x), p += 4, x = _mm256_extractf128_ps(v, 1);
  if (n & 2) _mm_storel_pi(reinterpret_cast<__m64*>(p), x), p += 2, x = _mm_movehl_ps(x, x);
  if (n & 1) _mm_store_ss(p, x);
}
static inline void store_part(double* p, __m256d v, int64_t n) {  // 0 < n < 4
  __m128d x = _mm256_castpd256_pd128(v);
  if (n & 2) _mm_storeu_pd(p, x), p += 2, x = _mm256_extractf128_pd(v, 1);
  if (n & 1) _mm_store_sd(p, x);
}

#define DK_VEC256(T, R, S, TAIL)                                                         \
  template <>                                                                            \
  struct Vec<T> {                                                                        \
    static constexpr int width = sizeof(R) / sizeof(T);                                  \
    using Mask = R;                                                                      \
    R v;                                                                                 \
    Vec() = default;                                                                     \
    Vec(R x) : v(x) {}                                                                   \
    Vec(T x) : v(_mm256_set1_##S(x)) {}                                                  \
    static __m256i tail(int64_t n) { return TAIL; }                                      \
    static Vec load(const T* p) { return _mm256_loadu_##S(p); }                          \
    static Vec load(const T* p, int64_t n) {                                             \
      return n >= width ? load(p) : Vec(_mm256_maskload_##S(p, tail(n)));                \
    }                                                                                    \
    void store(T* p) const { _mm256_storeu_##S(p, v); }                                  \
    void store(T* p, int64_t n) const {                                                  \
      if (n >= width) store(p);                                                          \
      else if (n > 0) store_part(p, v, n);                                               \
    }                                                                                    \
  };                                                                                     \
  static inline Vec<T> operator+(Vec<T> a, Vec<T> b) { return _mm256_add_##S(a.v, b.v); } \
  static inline Vec<T> operator-(Vec<T> a, Vec<T> b) { return _mm256_sub_##S(a.v, b.v); } \
  static inline Vec<T> operator*(Vec<T> a, Vec<T> b) { return _mm256_mul_##S(a.v, b.v); } \
  static inline Vec<T> operator/(Vec<T> a, Vec<T> b) { return _mm256_div_##S(a.v, b.v); } \
  static inline Vec<T> operator-(Vec<T> a) { return _mm256_xor_##S(a.v, _mm256_set1_##S(T(-0.0))); } \
  static inline Vec<T> fma(Vec<T> a, Vec<T> b, Vec<T> c) { return _mm256_fmadd_##S(a.v, b.v, c.v); } \
  static inline Vec<T> max(Vec<T> a, Vec<T> b) { return _mm256_max_##S(b.v, a.v); }     \
  static inline Vec<T> min(Vec<T> a, Vec<T> b) { return _mm256_min_##S(b.v, a.v); }     \
  static inline Vec<T> abs(Vec<T> a) { return _mm256_andnot_##S(_mm256_set1_##S(T(-0.0)), a.v); } \
  static inline Vec<T> sqrt(Vec<T> a) { return _mm256_sqrt_##S(a.v); }                  \
  static inline R operator<(Vec<T> a, Vec<T> b) { return _mm256_cmp_##S(a.v, b.v, _CMP_LT_OQ); } \
  static inline R operator<=(Vec<T> a, Vec<T> b) { return _mm256_cmp_##S(a.v, b.v, _CMP_LE_OQ); } \
  static inline R operator>(Vec<T> a, Vec<T> b) { return _mm256_cmp_##S(a.v, b.v, _CMP_GT_OQ); } \
  static inline R operator>=(Vec<T> a, Vec<T> b) { return _mm256_cmp_##S(a.v, b.v, _CMP_GE_OQ); } \
  static inline Vec<T> select(R m, Vec<T> a, Vec<T> b) { return _mm256_blendv_##S(b.v, a.v, m); } \
  static inline T reduce_add(Vec<T> a) {                                                 \
    alignas(32) T t[Vec<T>::width];                                                      \
    a.store(t);                                                                          \
    T s = 0;                                                                             \
    for (int i = 0; i < Vec<T>::width; ++i) s += t[i];                                   \
    return s;                                                                            \
  }                                                                                      \
  static inline T reduce_max(Vec<T> a) {                                                 \
    alignas(32) T t[Vec<T>::width];                                                      \
    a.store(t);                                                                          \
    T s = t[0];                                                                          \
    for (int i = 1; i < Vec<T>::width; ++i) s = t[i] > s ? t[i] : s;                     \
    return s;                                                                            \
  }

DK_VEC256(float, __m256, ps,
          _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)))
DK_VEC256(double, __m256d, pd,
          _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)))
#undef DK_VEC256

#else
#define DK_VEC_ISA generic

// The portable path: one lane. Kernels keep their vector structure and the
// compiler is free to vectorise what it can for the baseline target.
template <class T>
struct Vec {
  static constexpr int width = 1;
  using Mask = bool;
  T v;
  Vec() = default;
  Vec(T x) : v(x) {}
  static Vec load(const T* p) { return *p; }
  static Vec load(const T* p, int64_t n) { return n > 0 ? *p : T(0); }
  void store(T* p) const { *p = v; }
  void store(T* p, int64_t n) const { if (n > 0) *p = v; }
};
template <class T> static inline Vec<T> operator+(Vec<T> a, Vec<T> b) { return a.v + b.v; }
template <class T> static inline Vec<T> operator-(Vec<T> a, Vec<T> b) { return a.v - b.v; }
template <class T> static inline Vec<T> operator*(Vec<T> a, Vec<T> b) { return a.v * b.v; }
template <class T> static inline Vec<T> operator/(Vec<T> a, Vec<T> b) { return a.v / b.v; }
template <class T> static inline Vec<T> operator-(Vec<T> a) { return -a.v; }
template <class T> static inline Vec<T> fma(Vec<T> a, Vec<T> b, Vec<T> c) { return std::fma(a.v, b.v, c.v); }
template <class T> static inline Vec<T> max(Vec<T> a, Vec<T> b) { return (a.v != a.v || a.v > b.v) ? a.v : b.v; }
template <class T> static inline Vec<T> min(Vec<T> a, Vec<T> b) { return (a.v != a.v || a.v < b.v) ? a.v : b.v; }
template <class T> static inline Vec<T> abs(Vec<T> a) { return std::fabs(a.v); }
template <class T> static inline Vec<T> sqrt(Vec<T> a) { return std::sqrt(a.v); }
template <class T> static inline bool operator<(Vec<T> a, Vec<T> b) { return a.v < b.v; }
template <class T> static inline bool operator<=(Vec<T> a, Vec<T> b) { return a.v <= b.v; }
template <class T> static inline bool operator>(Vec<T> a, Vec<T> b) { return a.v > b.v; }
template <class T> static inline bool operator>=(Vec<T> a, Vec<T> b) { return a.v >= b.v; }
template <class T> static inline Vec<T> select(bool m, Vec<T> a, Vec<T> b) { return m ? a : b; }
template <class T> static inline T reduce_add(Vec<T> a) { return a.v; }
template <class T> static inline T reduce_max(Vec<T> a) { return a.v; }
#endif

// load_even(p, n), n >= 1: lanes l < n hold p[2 * l], the rest 0; reads
// p[0 .. 2n - 2] only. The inputs of stride-2 windows (pooling, im2col).
#if defined(__AVX512F__)
static inline Vec<float> load_even(const float* p, int64_t n) {
  int64_t need = 2 * n - 1;
  __m512 a = Vec<float>::load(p, need).v;
  __m512 b = need > 16 ? Vec<float>::load(p + 16, need - 16).v : _mm512_setzero_ps();
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  return _mm512_permutex2var_ps(a, even, b);
}
static inline Vec<double> load_even(const double* p, int64_t n) {
  int64_t need = 2 * n - 1;
  __m512d a = Vec<double>::load(p, need).v;
  __m512d b = need > 8 ? Vec<double>::load(p + 8, need - 8).v : _mm512_setzero_pd();
  return _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), b);
}
#elif defined(__AVX2__)
static inline Vec<float> load_even(const float* p, int64_t n) {
  int64_t need = 2 * n - 1;
  __m256 a = Vec<float>::load(p, need).v;
  __m256 b = need > 8 ? Vec<float>::load(p + 8, need - 8).v : _mm256_setzero_ps();
  __m256 t = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // a0 a2 b0 b2 | a4 a6 b4 b6
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
}
static inline Vec<double> load_even(const double* p, int64_t n) {
  int64_t need = 2 * n - 1;
  __m256d a = Vec<double>::load(p, need).v;
  __m256d b = need > 4 ? Vec<double>::load(p + 4, need - 4).v : _mm256_setzero_pd();
  return _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), _MM_SHUFFLE(3, 1, 2, 0));  // a0 b0 a2 b2 -> a0 a2 b0 b2
}
#else
template <class T>
static inline Vec<T> load_even(const T* p, int64_t) {
  return *p;
}
#endif

}  // namespace dk::cpu::DK_ISA_NS
