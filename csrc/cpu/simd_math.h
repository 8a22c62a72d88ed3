// Vectorised exp, expm1, log, log1p and tanh over Vec<T>, one code for every
// instruction set and both dtypes. Four small per-ISA primitives (round to an
// integer, multiply by 2^k, split off the exponent, a partial load with a fill
// value) carry the bit tricks; the rest is range reduction plus a polynomial,
// written once over Vec.
//
//   exp/expm1: x = k ln2 + r, |r| <= ln2/2 (Cody-Waite: ln2 in two parts, so
//              r is exact); expm1(r) by its Taylor polynomial (degree 13 for
//              double, 7 for float: truncation below 0.02 / 0.3 ulp);
//              exp = 2^k (1 + p), expm1 = 2^k p + (2^k - 1) (no cancellation).
//   log:       x = m 2^e, m in [sqrt(1/2), sqrt(2)); log(m) = 2 atanh(s),
//              s = (m-1)/(m+1), with fdlibm's minimax polynomial (e_log.c).
//   log1p:     log(w) + (u - (w - 1)) / w with w = 1 + u, the rounding of w
//              corrected to first order.
//   tanh:      sign(x) e / (e + 2) with e = expm1(2|x|): relative accuracy near
//              0, and |x| clamped to 20, where tanh is 1 in both dtypes.
// Worst error measured against long double libm over 400k random points per
// range (the whole finite domain, and [-1, 1] / tiny arguments), every ISA,
// both dtypes: exp 1.0 ulp, expm1 1.8, log 0.82, log1p 1.2, tanh 2.5.
// NaN propagates; exp(>= 89 in float, >= 710 in double) is inf, exp(very
// negative) is 0 (subnormal results are rounded once); log(0) = -inf,
// log(< 0) = NaN; tanh(-0) = -0.
#pragma once
#include <cfloat>
#include <cmath>
#include <limits>

#include "cpu/simd.h"

namespace dk::cpu::DK_ISA_NS {

// -- per-ISA primitives ---------------------------------------------------------
// round_int(x): x rounded to the nearest integer (ties to even), as T.
// pow2(k):      2^k for integral k whose power is a normal number (|k| <= 126
//               float, 1022 double).
// scale2(x, k): x * 2^k for integral k with |k| <= 250 (float), 2000 (double),
//               rounded once, so subnormal and overflowing results are right.
// split_exponent(x, &e): m with x = m * 2^e, m in [1, 2), for finite x > 0
//               (subnormals included); other x give unspecified m and e.
// load_fill(p, n, fill): the first min(n, width) elements of p, `fill` in the
//               other lanes (-inf makes a row's tail neutral for max and exp).

#if defined(__AVX512F__)

static inline Vec<float> round_int(Vec<float> x) {
  return _mm512_roundscale_ps(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static inline Vec<double> round_int(Vec<double> x) {
  return _mm512_roundscale_pd(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static inline Vec<float> scale2(Vec<float> x, Vec<float> k) { return _mm512_scalef_ps(x.v, k.v); }
static inline Vec<double> scale2(Vec<double> x, Vec<double> k) { return _mm512_scalef_pd(x.v, k.v); }
static inline Vec<float> pow2(Vec<float> k) { return _mm512_scalef_ps(_mm512_set1_ps(1.0f), k.v); }
static inline Vec<double> pow2(Vec<double> k) { return _mm512_scalef_pd(_mm512_set1_pd(1.0), k.v); }
static inline Vec<float> split_exponent(Vec<float> x, Vec<float>* e) {
  *e = Vec<float>(_mm512_getexp_ps(x.v));
  return _mm512_getmant_ps(x.v, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
}
static inline Vec<double> split_exponent(Vec<double> x, Vec<double>* e) {
  *e = Vec<double>(_mm512_getexp_pd(x.v));
  return _mm512_getmant_pd(x.v, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
}
static inline Vec<float> load_fill(const float* p, int64_t n, float fill) {
  if (n >= 16) return Vec<float>::load(p);
  return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), Vec<float>::tail(n), p);
}
static inline Vec<double> load_fill(const double* p, int64_t n, double fill) {
  if (n >= 8) return Vec<double>::load(p);
  return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), Vec<double>::tail(n), p);
}

#elif defined(__AVX2__)

static inline Vec<float> round_int(Vec<float> x) {
  return _mm256_round_ps(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static inline Vec<double> round_int(Vec<double> x) {
  return _mm256_round_pd(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
// 2^k built in the exponent field is only valid for normal powers, so k is
// applied in two halves: x * 2^(k/2) is exact, the second product rounds once.
static inline __m256 pow2_ps(__m256i k) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}
static inline __m256d pow2_pd(__m128i k) {
  __m256i k64 = _mm256_cvtepi32_epi64(k);
  return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(k64, _mm256_set1_epi64x(1023)), 52));
}
static inline Vec<float> pow2(Vec<float> k) { return pow2_ps(_mm256_cvtps_epi32(k.v)); }
static inline Vec<double> pow2(Vec<double> k) { return pow2_pd(_mm256_cvtpd_epi32(k.v)); }
static inline Vec<float> scale2(Vec<float> x, Vec<float> kf) {
  __m256i k = _mm256_cvtps_epi32(kf.v);
  __m256i k1 = _mm256_srai_epi32(k, 1), k2 = _mm256_sub_epi32(k, k1);
  return _mm256_mul_ps(_mm256_mul_ps(x.v, pow2_ps(k1)), pow2_ps(k2));
}
static inline Vec<double> scale2(Vec<double> x, Vec<double> kf) {
  __m128i k = _mm256_cvtpd_epi32(kf.v);
  __m128i k1 = _mm_srai_epi32(k, 1), k2 = _mm_sub_epi32(k, k1);
  return _mm256_mul_pd(_mm256_mul_pd(x.v, pow2_pd(k1)), pow2_pd(k2));
}
// Subnormals are first scaled into the normal range (by 2^25 / 2^54).
static inline Vec<float> split_exponent(Vec<float> x, Vec<float>* e) {
  __m256 tiny = _mm256_cmp_ps(x.v, _mm256_set1_ps(FLT_MIN), _CMP_LT_OQ);
  __m256 xs = _mm256_blendv_ps(x.v, _mm256_mul_ps(x.v, _mm256_set1_ps(0x1p25f)), tiny);
  __m256i bits = _mm256_castps_si256(xs);
  __m256 biased = _mm256_cvtepi32_ps(_mm256_srli_epi32(bits, 23));
  __m256 bias = _mm256_blendv_ps(_mm256_set1_ps(127.0f), _mm256_set1_ps(127.0f + 25.0f), tiny);
  *e = Vec<float>(_mm256_sub_ps(biased, bias));
  __m256i m = _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)),
                              _mm256_set1_epi32(0x3f800000));
  return _mm256_castsi256_ps(m);
}
static inline Vec<double> split_exponent(Vec<double> x, Vec<double>* e) {
  __m256d tiny = _mm256_cmp_pd(x.v, _mm256_set1_pd(DBL_MIN), _CMP_LT_OQ);
  __m256d xs = _mm256_blendv_pd(x.v, _mm256_mul_pd(x.v, _mm256_set1_pd(0x1p54)), tiny);
  __m256i bits = _mm256_castpd_si256(xs);
  // AVX2 cannot convert int64 to double: OR the biased exponent into the
  // mantissa of 2^52 and subtract 2^52.
  __m256d two52 = _mm256_set1_pd(0x1p52);
  __m256i biased_bits = _mm256_or_si256(_mm256_srli_epi64(bits, 52), _mm256_castpd_si256(two52));
  __m256d biased = _mm256_sub_pd(_mm256_castsi256_pd(biased_bits), two52);
  __m256d bias = _mm256_blendv_pd(_mm256_set1_pd(1023.0), _mm256_set1_pd(1023.0 + 54.0), tiny);
  *e = Vec<double>(_mm256_sub_pd(biased, bias));
  __m256i m = _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi64x(0x000fffffffffffffLL)),
                              _mm256_set1_epi64x(0x3ff0000000000000LL));
  return _mm256_castsi256_pd(m);
}
static inline Vec<float> load_fill(const float* p, int64_t n, float fill) {
  if (n >= 8) return Vec<float>::load(p);
  __m256i m = Vec<float>::tail(n);
  return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
static inline Vec<double> load_fill(const double* p, int64_t n, double fill) {
  if (n >= 4) return Vec<double>::load(p);
  __m256i m = Vec<double>::tail(n);
  return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
}

#else

template <class T>
static inline Vec<T> round_int(Vec<T> x) { return std::nearbyint(x.v); }
template <class T>
static inline Vec<T> pow2(Vec<T> k) {
  return std::ldexp(T(1), k.v == k.v ? static_cast<int>(k.v) : 0);
}
template <class T>
static inline Vec<T> scale2(Vec<T> x, Vec<T> k) {
  return std::ldexp(x.v, k.v == k.v ? static_cast<int>(k.v) : 0);  // NaN k: x is NaN too
}
template <class T>
static inline Vec<T> split_exponent(Vec<T> x, Vec<T>* e) {
  int ei = 0;
  T m = std::frexp(x.v, &ei);  // m in [0.5, 1)
  *e = Vec<T>(T(ei - 1));
  return m * T(2);
}
template <class T>
static inline Vec<T> load_fill(const T* p, int64_t n, T fill) { return n > 0 ? *p : fill; }

#endif

// -- constants --------------------------------------------------------------------

template <class T>
struct MathConst;

template <>
struct MathConst<float> {
  static constexpr float exp_lo = -104.0f, exp_hi = 89.0f;  // exp is 0 / inf beyond
  static constexpr float log2e = 1.44269502f;
  static constexpr float ln2_hi = 0x1.62e430p-1f, ln2_lo = -0x1.05c610p-29f;  // ln2 = hi + lo
  static constexpr float log_ln2_hi = 6.9313812256e-01f, log_ln2_lo = 9.0580006145e-06f;
  // 1/n! for n = 2..7
  static constexpr int exp_terms = 6;
  static constexpr float exp_poly[exp_terms] = {1.0f / 2, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720,
                                                1.0f / 5040};
};

template <>
struct MathConst<double> {
  static constexpr double exp_lo = -746.0, exp_hi = 710.0;
  static constexpr double log2e = 1.4426950408889634;
  static constexpr double ln2_hi = 0x1.62e42fefa39efp-1, ln2_lo = 0x1.abc9e3b39803fp-56;
  // fdlibm's split: ln2_hi has 32 trailing zero bits, so e * ln2_hi is exact.
  static constexpr double log_ln2_hi = 6.93147180369123816490e-01, log_ln2_lo = 1.90821492927058770002e-10;
  // 1/n! for n = 2..13
  static constexpr int exp_terms = 12;
  static constexpr double exp_poly[exp_terms] = {
      1.0 / 2,         1.0 / 6,          1.0 / 24,          1.0 / 120,          1.0 / 720,
      1.0 / 5040,      1.0 / 40320,      1.0 / 362880,      1.0 / 3628800,      1.0 / 39916800,
      1.0 / 479001600, 1.0 / 6227020800.0};
};

// fdlibm e_log.c: log(1+f) = f - f^2/2 + s (f^2/2 + R(s^2)), s = f / (2 + f).
constexpr double kLg[7] = {6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
                           2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
                           1.479819860511658591e-01};

// -- the functions --------------------------------------------------------------

// r = x - k ln2 and p = expm1(r), with k returned, for x in [exp_lo, exp_hi] ...
template <class T>
static inline Vec<T> exp_reduce_in_range(Vec<T> x, Vec<T>* k) {
  using V = Vec<T>;
  using C = MathConst<T>;
  *k = round_int(x * V(C::log2e));
  V r = fma(*k, V(-C::ln2_hi), x);
  r = fma(*k, V(-C::ln2_lo), r);
  V t(C::exp_poly[C::exp_terms - 1]);
  for (int i = C::exp_terms - 2; i >= 0; --i) t = fma(t, r, V(C::exp_poly[i]));
  return fma(t, r * r, r);  // r + r^2 (1/2 + r/6 + ...)
}

// ... and for any x, clamped where exp saturates.
template <class T>
static inline Vec<T> exp_reduce(Vec<T> x, Vec<T>* k) {
  using C = MathConst<T>;
  x = min(max(x, Vec<T>(C::exp_lo)), Vec<T>(C::exp_hi));  // NaN stays NaN (simd.h max/min)
  return exp_reduce_in_range(x, k);
}

template <class T>
static inline Vec<T> exp(Vec<T> x) {
  Vec<T> k;
  Vec<T> p = exp_reduce(x, &k);
  return scale2(p + Vec<T>(T(1)), k);
}

template <class T>
static inline Vec<T> expm1(Vec<T> x) {
  using V = Vec<T>;
  V k;
  V p = exp_reduce(x, &k);
  // 2^k p + (2^k - 1) is exact in its last step; past k = 100 the -1 is
  // negligible and 2^k itself may overflow where e^x - 1 does not.
  V two_k = scale2(V(T(1)), min(k, V(T(100))));
  V near = fma(two_k, p, two_k - V(T(1)));
  return select(k > V(T(100)), scale2(p + V(T(1)), k) - V(T(1)), near);
}

template <class T>
static inline Vec<T> log(Vec<T> x) {
  using V = Vec<T>;
  using C = MathConst<T>;
  V e;
  V m = split_exponent(x, &e);
  auto high = m > V(T(1.4142135623730951));
  m = select(high, m * V(T(0.5)), m);
  e = select(high, e + V(T(1)), e);
  V f = m - V(T(1));
  V s = f / (V(T(2)) + f);
  V z = s * s, w = z * z;
  V t1 = w * fma(w, fma(w, V(T(kLg[5])), V(T(kLg[3]))), V(T(kLg[1])));
  V t2 = z * fma(w, fma(w, fma(w, V(T(kLg[6])), V(T(kLg[4]))), V(T(kLg[2]))), V(T(kLg[0])));
  V hfsq = V(T(0.5)) * f * f;
  V r = e * V(C::log_ln2_hi) - ((hfsq - fma(s, hfsq + (t1 + t2), e * V(C::log_ln2_lo))) - f);
  const T inf = std::numeric_limits<T>::infinity();
  r = select(x < V(inf), r, x);  // +inf; NaN falls through to the next line
  // log(+-0) = -inf; log(negative) and log(NaN) = NaN
  return select(x > V(T(0)), r, select(x >= V(T(0)), V(-inf), V(std::numeric_limits<T>::quiet_NaN())));
}

template <class T>
static inline Vec<T> log1p(Vec<T> u) {
  using V = Vec<T>;
  V w = u + V(T(1));
  V c = (u - (w - V(T(1)))) / w;
  // The correction is NaN only where log(w) is already the answer: w = 0
  // (-inf), w = inf (inf), w < 0 or NaN (NaN).
  c = select(abs(c) <= V(std::numeric_limits<T>::max()), c, V(T(0)));
  return log(w) + c;
}

template <class T>
static inline Vec<T> tanh(Vec<T> x) {
  using V = Vec<T>;
  V a = min(abs(x), V(T(20)));  // NaN stays NaN
  // e = expm1(2a) as expm1() computes it, but 2a <= 40 keeps 2^k normal (k <=
  // 58): no clamp, no split scaling, no large-k case. Bit-identical, and the
  // LSTM gate math 132 -> 104 cycles a vector (AVX2, Zen 3, data in L1).
  V k, p = exp_reduce_in_range(a + a, &k), two_k = pow2(k);
  V e = fma(two_k, p, two_k - V(T(1)));
  V t = e / (e + V(T(2)));
  t = select(x < V(T(0)), -t, t);  // odd by construction
  // zeros and subnormals: tanh(x) = x, keeping the sign of -0
  return select(a < V(std::numeric_limits<T>::min()), x, t);
}

}  // namespace dk::cpu::DK_ISA_NS
