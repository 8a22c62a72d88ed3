// Max and average pooling over NCHW planes, forward and backward; global average.
// x (planes, ih, iw), y (planes, oh, ow); see PoolParams for the window geometry.
//
// Forward: threads split the (plane, output row) pairs. In each output row the
// outputs whose window lies wholly inside the input horizontally (the interior:
// all but a padding-wide rim) are vectorised across output columns: each window
// tap (i, j) is one vector of inputs, contiguous for stride 1 and the even
// lanes of two loads (a permute) for stride 2; rows in the padding are clipped
// per output row, so they cost nothing. The rim, and strides above 2, run the
// scalar window loop. Pooling is memory-bound: each input is read from memory
// once (the rows of overlapping windows come again from L1), outputs are
// written once.
// Max keeps torch's answer exactly: taps are visited in row-major window order,
// a tap replaces the running maximum when greater or NaN, and the winner's
// offset from the window's first tap is carried in a vector of T (exact while
// below 2^24 for float; larger windows, and those of more than 4096 taps, take
// the scalar loop), then widened to the int64 flat index on store.
// Backward scatters into a zeroed dx plane, one plane per thread at a time (so
// overlapping windows never race); the plane stays in L1/L2 while it is built.
#include "cpu/pool.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/pool_math.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace dk::cpu::DK_ISA_NS {

// ---- window geometry ---------------------------------------------------------

// A window's taps along one axis: core/pool_math.h's pool_taps, shared with the CUDA kernels.
using Taps = PoolTaps;

// Outputs [lo, hi) along one axis whose every tap is inside the input.
struct Span {
  int64_t lo, hi;
};

static inline Span interior(int64_t out, int64_t s, int64_t pad, int64_t k, int64_t d, int64_t in) {
  int64_t lo = std::min(out, (pad + s - 1) / s);
  int64_t last = in - 1 + pad - (k - 1) * d;  // o * s <= last keeps the last tap inside
  int64_t hi = last < 0 ? 0 : last / s + 1;
  return {lo, std::max(lo, std::min(hi, out))};
}

// The column taps of every output column: the same for every row and plane, so
// computed once per call (the rim's windows then cost no integer division).
static std::vector<Taps> column_taps(const PoolParams& p, int64_t dw) {
  std::vector<Taps> cols(p.ow);
  for (int64_t ow = 0; ow < p.ow; ++ow) cols[ow] = pool_taps(ow, p.sw, p.pw, p.kw, dw, p.iw);
  return cols;
}

// ---- lane helpers (per instruction set) ------------------------------------------

// (load_even, the stride-2 load, is simd.h's.)
// replaces(c, m): the lanes where tap c replaces the running maximum m (c > m or c is NaN).
// store_index(dst, off, base, step, n): dst[l] = base + l * step + off[l] for l < n,
//   off holding exact integers (window offsets), widened to int64.
#if defined(__AVX512F__)
static inline __mmask16 replaces(Vec<float> c, Vec<float> m) {
  return _mm512_cmp_ps_mask(c.v, m.v, _CMP_GT_OQ) | _mm512_cmp_ps_mask(c.v, c.v, _CMP_UNORD_Q);
}
static inline __mmask8 replaces(Vec<double> c, Vec<double> m) {
  return _mm512_cmp_pd_mask(c.v, m.v, _CMP_GT_OQ) | _mm512_cmp_pd_mask(c.v, c.v, _CMP_UNORD_Q);
}
static inline void store_index8(int64_t* dst, __m512i v, int64_t n) {
  if (n >= 8) _mm512_storeu_si512(dst, v);
  else _mm512_mask_storeu_epi64(dst, static_cast<__mmask8>((1u << n) - 1u), v);
}
static inline __m512i index_lanes(int64_t base, int64_t step) {  // base + l * step
  return _mm512_add_epi64(_mm512_set1_epi64(base),
                          _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), _mm512_set1_epi64(step)));
}
static inline void store_index(int64_t* dst, Vec<float> off, int64_t base, int64_t step, int64_t n) {
  __m512i lanes = index_lanes(base, step);
  store_index8(dst, _mm512_add_epi64(_mm512_cvttps_epi64(_mm512_castps512_ps256(off.v)), lanes), n);
  if (n > 8)
    store_index8(dst + 8, _mm512_add_epi64(_mm512_cvttps_epi64(_mm512_extractf32x8_ps(off.v, 1)),
                                           _mm512_add_epi64(lanes, _mm512_set1_epi64(8 * step))), n - 8);
}
static inline void store_index(int64_t* dst, Vec<double> off, int64_t base, int64_t step, int64_t n) {
  store_index8(dst, _mm512_add_epi64(_mm512_cvttpd_epi64(off.v), index_lanes(base, step)), n);
}
#elif defined(__AVX2__)
static inline __m256 replaces(Vec<float> c, Vec<float> m) {
  return _mm256_or_ps(_mm256_cmp_ps(c.v, m.v, _CMP_GT_OQ), _mm256_cmp_ps(c.v, c.v, _CMP_UNORD_Q));
}
static inline __m256d replaces(Vec<double> c, Vec<double> m) {
  return _mm256_or_pd(_mm256_cmp_pd(c.v, m.v, _CMP_GT_OQ), _mm256_cmp_pd(c.v, c.v, _CMP_UNORD_Q));
}
static inline void store_index4(int64_t* dst, __m256i v, int64_t n) {
  auto* d = reinterpret_cast<long long*>(dst);
  if (n >= 4) _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), v);
  else _mm256_maskstore_epi64(d, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)), v);
}
static inline __m256i index_lanes(int64_t base, int64_t step) {  // base + l * step
  return _mm256_setr_epi64x(base, base + step, base + 2 * step, base + 3 * step);
}
static inline void store_index(int64_t* dst, Vec<float> off, int64_t base, int64_t step, int64_t n) {
  __m256i o = _mm256_cvttps_epi32(off.v);
  store_index4(dst, _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(o)), index_lanes(base, step)), n);
  if (n > 4)
    store_index4(dst + 4, _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(o, 1)),
                                           index_lanes(base + 4 * step, step)), n - 4);
}
static inline void store_index(int64_t* dst, Vec<double> off, int64_t base, int64_t step, int64_t n) {
  store_index4(dst, _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvttpd_epi32(off.v)), index_lanes(base, step)), n);
}
#else
template <class T>
static inline bool replaces(Vec<T> c, Vec<T> m) {
  return c.v > m.v || c.v != c.v;
}
template <class T>
static inline void store_index(int64_t* dst, Vec<T> off, int64_t base, int64_t, int64_t n) {
  if (n > 0) *dst = base + static_cast<int64_t>(off.v);
}
#endif

// Tap j of the outputs starting at src: stride 1 contiguous, stride 2 the even lanes.
template <int S, class T>
static inline Vec<T> load_taps(const T* src, int64_t n) {
  if constexpr (S == 1) return Vec<T>::load(src, n);
  else return load_even(src, n);
}

// ---- max pooling --------------------------------------------------------------------

// take ? a : b without a branch: on random data the rim's compares mispredict half
// the time, which cost a fifth of a 3x3/2 pooling's time as branches.
template <class T>
static inline T pick(bool take, T a, T b) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  U ua, ub;
  std::memcpy(&ua, &a, sizeof(T));
  std::memcpy(&ub, &b, sizeof(T));
  const U mask = U(0) - U(take);
  U r = (ua & mask) | (ub & ~mask);
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
}

template <class T>
static void max_window(const T* xp, int64_t iw, Taps r, Taps c, int64_t dh, int64_t dw, T* y, int64_t* idx) {
  if (r.count == 0 || c.count == 0) {
    *y = -std::numeric_limits<T>::infinity();
    *idx = -1;
    return;
  }
  int64_t best = r.first * iw + c.first;
  T m = xp[best];
  for (int64_t i = 0; i < r.count; ++i)
    for (int64_t j = 0; j < c.count; ++j) {
      int64_t at = (r.first + i * dh) * iw + c.first + j * dw;
      T v = xp[at];
      bool take = pool_replaces(v, m);
      m = pick(take, v, m);
      best = pick(take, at, best);
    }
  *y = m;
  *idx = best;
}

// The taps of a full window in row-major order: offsets from its first tap, as
// int64 (to load) and as T (to carry in a vector). A window whose first rows are
// clipped starts at a later row, so its taps are a prefix of these.
template <class T>
struct WindowTaps {
  std::vector<int64_t> at;
  std::vector<T> at_t;
  explicit WindowTaps(const PoolParams& p) {
    for (int64_t i = 0; i < p.kh; ++i)
      for (int64_t j = 0; j < p.kw; ++j) {
        at.push_back(i * p.dh * p.iw + j * p.dw);
        at_t.push_back(T(at.back()));
      }
  }
};

// Outputs [lo, hi) of one output row, all horizontally inside the input, rows r.
template <int S, class T>
static void max_interior(const PoolParams& p, const WindowTaps<T>& w, const T* xp, Taps r, int64_t lo, int64_t hi,
                         T* y, int64_t* idx) {
  using V = Vec<T>;
  // The rule "a later tap replaces when greater or NaN" is associative (the result is
  // the last NaN, else the first maximum), so the taps' two halves are reduced as two
  // independent chains, interleaved, then combined: half the compare-select latency.
  const int64_t taps = r.count * p.kw, half = (taps + 1) / 2;
  for (int64_t o = lo; o < hi; o += V::width) {
    int64_t n = std::min<int64_t>(V::width, hi - o);
    int64_t origin = r.first * p.iw + o * S - p.pw;  // the window's first tap, flat
    const T* base = xp + origin;
    V m = load_taps<S>(base, n), off(T(0));
    V m2 = m, off2 = off;  // the second half's chain; tap 0 stands in when taps == 1
    if (half < taps) {
      m2 = load_taps<S>(base + w.at[half], n);
      off2 = V(w.at_t[half]);
    }
    for (int64_t t = 1; t < half; ++t) {
      V c = load_taps<S>(base + w.at[t], n);
      auto take = replaces(c, m);
      m = select(take, c, m);
      off = select(take, V(w.at_t[t]), off);
      if (half + t < taps) {
        V c2 = load_taps<S>(base + w.at[half + t], n);
        auto take2 = replaces(c2, m2);
        m2 = select(take2, c2, m2);
        off2 = select(take2, V(w.at_t[half + t]), off2);
      }
    }
    auto take = replaces(m2, m);
    select(take, m2, m).store(y + o, n);
    store_index(idx + o, select(take, off2, off), origin, S, n);
  }
}

template <class T>
static void max_pool2d(const PoolParams& p, const T* x, T* y, int64_t* indices) {
  const Span in = interior(p.ow, p.sw, p.pw, p.kw, p.dw, p.iw);
  const std::vector<Taps> cols = column_taps(p, p.dw);
  // Offsets within a window must be exact in T for the vector path.
  const bool exact = double(p.kh - 1) * double(p.dh) * double(p.iw) + double(p.kw - 1) * double(p.dw) < 16777216.0;
  const bool vec = exact && (p.sw == 1 || p.sw == 2) && p.kh * p.kw <= 4096;  // exact bounds kh, kw by 2^24
  const WindowTaps<T> w(vec ? p : PoolParams{});
  const int64_t rows = p.planes * p.oh;
#pragma omp parallel for num_threads(threads_for(p.planes * p.ih * p.iw)) schedule(static)
  for (int64_t t = 0; t < rows; ++t) {
    const int64_t plane = t / p.oh, oh = t % p.oh;
    const T* xp = x + plane * p.ih * p.iw;
    T* yr = y + t * p.ow;
    int64_t* ir = indices + t * p.ow;
    const Taps r = pool_taps(oh, p.sh, p.ph, p.kh, p.dh, p.ih);
    int64_t lo = 0, hi = 0;  // the vectorised outputs
    if (vec && r.count > 0) {
      lo = in.lo;
      hi = in.hi;
      if (p.sw == 1) max_interior<1>(p, w, xp, r, lo, hi, yr, ir);
      else max_interior<2>(p, w, xp, r, lo, hi, yr, ir);
    }
    for (int64_t ow = 0; ow < p.ow; ++ow) {
      if (ow == lo) ow = hi;
      if (ow >= p.ow) break;
      max_window(xp, p.iw, r, cols[ow], p.dh, p.dw, yr + ow, ir + ow);
    }
  }
}

template <class T>
static int64_t max_pool2d_backward(const PoolParams& p, const T* dy, const int64_t* indices, T* dx) {
  const int64_t plane_in = p.ih * p.iw, plane_out = p.oh * p.ow;
  int64_t bad = 0;
#pragma omp parallel for num_threads(threads_for(p.planes * plane_in)) schedule(static) reduction(+ : bad)
  for (int64_t plane = 0; plane < p.planes; ++plane) {
    T* d = dx + plane * plane_in;
    const T* g = dy + plane * plane_out;
    const int64_t* ix = indices + plane * plane_out;
    std::fill(d, d + plane_in, T(0));
    for (int64_t o = 0; o < plane_out; ++o) {
      int64_t at = ix[o];
      if (static_cast<uint64_t>(at) < static_cast<uint64_t>(plane_in)) d[at] += g[o];
      else if (at != -1) ++bad;
    }
  }
  return bad;
}

// ---- average pooling -------------------------------------------------------------------

// torch's divisor of output o along one axis (the other axis' factor multiplies it).
static inline int64_t divisor(const PoolParams& p, int64_t o, int64_t s, int64_t pad, int64_t k, int64_t in,
                              Taps t) {
  return pool_divisor(p.count_include_pad, o, s, pad, k, in, t);
}

template <int S, class T>
static void avg_interior(const PoolParams& p, const T* xp, Taps r, T div, int64_t lo, int64_t hi, T* y) {
  using V = Vec<T>;
  const V vdiv(div);
  for (int64_t o = lo; o < hi; o += V::width) {
    int64_t n = std::min<int64_t>(V::width, hi - o);
    const T* base = xp + r.first * p.iw + o * S - p.pw;
    V a(T(0)), b(T(0));
    for (int64_t i = 0; i < r.count; ++i) {
      const T* row = base + i * p.iw;
      int64_t j = 0;
      for (; j + 1 < p.kw; j += 2) {
        a = a + load_taps<S>(row + j, n);
        b = b + load_taps<S>(row + j + 1, n);
      }
      if (j < p.kw) a = a + load_taps<S>(row + j, n);
    }
    ((a + b) / vdiv).store(y + o, n);
  }
}

template <class T>
static void avg_pool2d(const PoolParams& p, const T* x, T* y) {
  const Span in = interior(p.ow, p.sw, p.pw, p.kw, 1, p.iw);
  const std::vector<Taps> cols = column_taps(p, 1);
  std::vector<int64_t> wdiv(p.ow);
  for (int64_t ow = 0; ow < p.ow; ++ow) wdiv[ow] = divisor(p, ow, p.sw, p.pw, p.kw, p.iw, cols[ow]);
  const bool vec = p.sw == 1 || p.sw == 2;
  const int64_t rows = p.planes * p.oh;
#pragma omp parallel for num_threads(threads_for(p.planes * p.ih * p.iw)) schedule(static)
  for (int64_t t = 0; t < rows; ++t) {
    const int64_t plane = t / p.oh, oh = t % p.oh;
    const T* xp = x + plane * p.ih * p.iw;
    T* yr = y + t * p.ow;
    const Taps r = pool_taps(oh, p.sh, p.ph, p.kh, 1, p.ih);
    if (r.count == 0) {
      std::fill(yr, yr + p.ow, T(0));
      continue;
    }
    const int64_t hdiv = divisor(p, oh, p.sh, p.ph, p.kh, p.ih, r);
    int64_t lo = 0, hi = 0;
    if (vec) {
      lo = in.lo;
      hi = in.hi;
      T div = T(hdiv * p.kw);  // interior windows have all kw columns inside
      if (p.sw == 1) avg_interior<1>(p, xp, r, div, lo, hi, yr);
      else avg_interior<2>(p, xp, r, div, lo, hi, yr);
    }
    for (int64_t ow = 0; ow < p.ow; ++ow) {
      if (ow == lo) ow = hi;
      if (ow >= p.ow) break;
      const Taps c = cols[ow];
      if (c.count == 0) {
        yr[ow] = T(0);
        continue;
      }
      T sum(0);
      for (int64_t i = 0; i < r.count; ++i)
        for (int64_t j = 0; j < c.count; ++j) sum += xp[(r.first + i) * p.iw + c.first + j];
      yr[ow] = sum / T(hdiv * wdiv[ow]);
    }
  }
}

template <class T>
static void avg_pool2d_backward(const PoolParams& p, const T* dy, T* dx) {
  using V = Vec<T>;
  const int64_t plane_in = p.ih * p.iw;
  // Every plane has the same windows: their column taps and divisors once per call,
  // so the per-output work has no integer division.
  const std::vector<Taps> cols = column_taps(p, 1);
  std::vector<T> wdiv(p.ow);
  for (int64_t ow = 0; ow < p.ow; ++ow) wdiv[ow] = T(divisor(p, ow, p.sw, p.pw, p.kw, p.iw, cols[ow]));
#pragma omp parallel num_threads(threads_for(p.planes * plane_in))
  {
    std::vector<T> spread(p.iw), share(p.ow);  // one output row's gradient per input column, per output
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < p.planes; ++plane) {
      T* d = dx + plane * plane_in;
      std::fill(d, d + plane_in, T(0));
      for (int64_t oh = 0; oh < p.oh; ++oh) {
        const Taps r = pool_taps(oh, p.sh, p.ph, p.kh, 1, p.ih);
        if (r.count == 0) continue;
        const V hdiv(T(divisor(p, oh, p.sh, p.ph, p.kh, p.ih, r)));
        const T* g = dy + (plane * p.oh + oh) * p.ow;
        for (int64_t ow = 0; ow < p.ow; ow += V::width)  // an empty column window has divisor 0 and no taps
          (V::load(g + ow, p.ow - ow) / (hdiv * V::load(wdiv.data() + ow, p.ow - ow))).store(share.data() + ow, p.ow - ow);
        std::fill(spread.begin(), spread.end(), T(0));
        for (int64_t ow = 0; ow < p.ow; ++ow)
          for (int64_t j = 0; j < cols[ow].count; ++j) spread[cols[ow].first + j] += share[ow];
        for (int64_t i = 0; i < r.count; ++i) {
          T* row = d + (r.first + i) * p.iw;
          for (int64_t w = 0; w < p.iw; w += V::width)
            (V::load(row + w, p.iw - w) + V::load(spread.data() + w, p.iw - w)).store(row + w, p.iw - w);
        }
      }
    }
  }
}

// ---- global average pooling -------------------------------------------------------------

template <class T>
static void global_avg_pool2d(int64_t planes, int64_t hw, const T* x, T* y) {
  using V = Vec<T>;
  constexpr int W = V::width;
#pragma omp parallel for num_threads(threads_for(planes * hw)) schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* xp = x + plane * hw;
    V a(T(0)), b(T(0)), c(T(0)), d(T(0));
    int64_t i = 0;
    for (; i + 4 * W <= hw; i += 4 * W) {
      a = a + V::load(xp + i);
      b = b + V::load(xp + i + W);
      c = c + V::load(xp + i + 2 * W);
      d = d + V::load(xp + i + 3 * W);
    }
    for (; i < hw; i += W) a = a + V::load(xp + i, hw - i);
    y[plane] = reduce_add((a + b) + (c + d)) / T(hw);
  }
}

template <class T>
static void global_avg_pool2d_backward(int64_t planes, int64_t hw, const T* dy, T* dx) {
  using V = Vec<T>;
#pragma omp parallel for num_threads(threads_for(planes * hw)) schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const V g(dy[plane] / T(hw));
    T* d = dx + plane * hw;
    for (int64_t i = 0; i < hw; i += V::width) g.store(d + i, hw - i);
  }
}

DK_DEFINE_TABLE(PoolKernels, pool, max_pool2d<T>, max_pool2d_backward<T>, avg_pool2d<T>,
                avg_pool2d_backward<T>, global_avg_pool2d<T>, global_avg_pool2d_backward<T>)

}  // namespace dk::cpu::DK_ISA_NS
