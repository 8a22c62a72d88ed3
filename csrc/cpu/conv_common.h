// What the conv files share (included by conv*.cpp only): window geometry,
// vector copies, the plane buffer of the direct kernels, and their declarations.
#pragma once
#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <vector>

#include "core/params.h"
#include "core/cpu_features.h"
#include "cpu/gemm_pack.h"
#include "cpu/simd.h"

namespace dk::cpu::DK_ISA_NS {

// Outputs o in [0, out) whose tap at o * stride + off lies in [0, in): [lo, hi), maybe empty.
struct Span {
  int64_t lo, hi;
};

inline Span inside(int64_t off, int64_t stride, int64_t in, int64_t out) {
  int64_t lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  int64_t hi = in - 1 - off < 0 ? 0 : (in - 1 - off) / stride + 1;
  lo = std::min(lo, out);
  return {lo, std::max(lo, std::min(hi, out))};
}

template <class T>
inline void fill_zero(T* d, int64_t n) {
  using V = Vec<T>;
  for (int64_t i = 0; i < n; i += V::width) V(T(0)).store(d + i, n - i);
}

// d[i] = s[i * stride], i < n.
template <class T>
inline void copy_strided(T* d, const T* s, int64_t n, int64_t stride) {
  using V = Vec<T>;
  if (stride == 1) {
    for (int64_t i = 0; i < n; i += V::width) V::load(s + i, n - i).store(d + i, n - i);
  } else if (stride == 2) {
    for (int64_t i = 0; i < n; i += V::width) load_even(s + 2 * i, std::min<int64_t>(V::width, n - i)).store(d + i, n - i);
  } else {
    for (int64_t i = 0; i < n; ++i) d[i] = s[i * stride];
  }
}

// fill_zero and copy_strided in whole vectors: they may write up to width - 1
// elements past d + n, garbage the caller leaves room for and overwrites later.
// Masked stores are slow (on Zen 4 the masked copy of im2col's 10-value rows
// took a fifth of LeNet's forward); masked loads are not, and stay: the source
// may end at the end of an array.
template <class T>
inline void fill_zero_over(T* d, int64_t n) {
  using V = Vec<T>;
  for (int64_t i = 0; i < n; i += V::width) V(T(0)).store(d + i);
}

template <class T>
inline void copy_over(T* d, const T* s, int64_t n, int64_t stride) {
  using V = Vec<T>;
  if (stride == 1) {
    for (int64_t i = 0; i < n; i += V::width) V::load(s + i, n - i).store(d + i);
  } else if (stride == 2) {
    for (int64_t i = 0; i < n; i += V::width) load_even(s + 2 * i, std::min<int64_t>(V::width, n - i)).store(d + i);
  } else {
    for (int64_t i = 0; i < n; ++i) d[i] = s[i * stride];
  }
}

// lo, hi = a and b interleaved: a0 b0 a1 b1 ... (lo: the first width values).
#if defined(__AVX512F__)
inline void interleave(Vec<float> a, Vec<float> b, Vec<float>& lo, Vec<float>& hi) {
  lo = _mm512_permutex2var_ps(a.v, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b.v);
  hi = _mm512_permutex2var_ps(a.v, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), b.v);
}
inline void interleave(Vec<double> a, Vec<double> b, Vec<double>& lo, Vec<double>& hi) {
  lo = _mm512_permutex2var_pd(a.v, _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), b.v);
  hi = _mm512_permutex2var_pd(a.v, _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15), b.v);
}
#elif defined(__AVX2__)
inline void interleave(Vec<float> a, Vec<float> b, Vec<float>& lo, Vec<float>& hi) {
  __m256 t0 = _mm256_unpacklo_ps(a.v, b.v), t1 = _mm256_unpackhi_ps(a.v, b.v);  // a0 b0 a1 b1 | a4 b4 a5 b5
  lo = _mm256_permute2f128_ps(t0, t1, 0x20);
  hi = _mm256_permute2f128_ps(t0, t1, 0x31);
}
inline void interleave(Vec<double> a, Vec<double> b, Vec<double>& lo, Vec<double>& hi) {
  __m256d t0 = _mm256_unpacklo_pd(a.v, b.v), t1 = _mm256_unpackhi_pd(a.v, b.v);  // a0 b0 | a2 b2
  lo = _mm256_permute2f128_pd(t0, t1, 0x20);
  hi = _mm256_permute2f128_pd(t0, t1, 0x31);
}
#else
template <class T>
inline void interleave(Vec<T> a, Vec<T> b, Vec<T>& lo, Vec<T>& hi) {
  lo = a;
  hi = b;
}
#endif

// Asks for the cache lines of a[0 .. n) (a plane to be read next).
template <class T>
inline void prefetch(const T* a, int64_t n) {
  for (int64_t i = 0; i < n; i += 64 / int64_t(sizeof(T))) __builtin_prefetch(a + i);
}

// d[i * stride] += s[i], i < n.
template <class T>
inline void add_strided(T* d, const T* s, int64_t n, int64_t stride) {
  using V = Vec<T>;
  if (stride == 1) {
    for (int64_t i = 0; i < n; i += V::width) (V::load(d + i, n - i) + V::load(s + i, n - i)).store(d + i, n - i);
  } else {
    for (int64_t i = 0; i < n; ++i) d[i * stride] += s[i];
  }
}

// f(i, buf) for every i < items, on `threads` threads (dynamic: items may
// differ), buf the calling thread's scratch slot 2 of buf_size elements. An
// exception thrown in any thread is rethrown here, after the region.
template <class T, class F>
void parallel_items(int64_t items, int threads, int64_t buf_size, F&& f) {
  std::exception_ptr error;
  std::mutex lock;
  auto keep = [&] {
    std::lock_guard<std::mutex> g(lock);
    if (!error) error = std::current_exception();
  };
#pragma omp parallel num_threads(threads)
  {
    T* buf = nullptr;
    bool ok = true;
    try {
      buf = scratch<T>(2, buf_size);
    } catch (...) {
      ok = false;
      keep();
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < items; ++i) {
      if (!ok) continue;
      try {
        f(i, buf);
      } catch (...) {
        keep();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

// Weight gradients sum the batch in kChunks chunks (a constant: the sums do not
// depend on the thread count) when the chunks' partial sums fit in kPartialBytes.
constexpr int64_t kChunks = 8;
constexpr int64_t kPartialBytes = int64_t(8) << 20;

// Whether `items` whole items keep `threads` threads about equally busy.
inline bool enough_items(int64_t items, int threads) {
  return items >= threads && (items >= 4 * int64_t(threads) || items % threads == 0);
}

// Runs item(i, col, split) for i < items, col a scratch of col_size elements: in
// parallel over the items when there are enough, each thread with its own col
// (split = false); otherwise in turn, split = true asking the item to spread its
// own work over the threads.
template <class T, class F>
void run_items(int64_t items, int64_t col_size, F&& item) {
  const int nt = get_num_threads();
  if (enough_items(items, nt)) return parallel_items<T>(items, nt, col_size, [&](int64_t i, T* col) { item(i, col, false); });
  T* col = scratch<T>(2, col_size);
  for (int64_t i = 0; i < items; ++i) item(i, col, true);
}

// The direct kernels read a padded copy of each input plane, the "plane
// buffer", with every row split into stride phases so that a tap's inputs along
// an output row are contiguous: buffer row i is input row i - ph, and within it
// phase q holds input columns q + sw * m - pw (m < len). Output (i, j)'s tap
// (a, b) is then buffer row i * sh + a * dh, phase (b * dw) % sw, element
// j + (b * dw) / sw. Only phases that some tap reads are kept.
struct PlaneBuffer {
  int64_t rows, phases, len;
  int64_t row_step() const { return phases * len; }
  int64_t size() const { return rows * phases * len; }
  int64_t tap(const ConvParams& p, int64_t a, int64_t b) const {
    return a * p.dh * row_step() + (b * p.dw) % p.sw * len + b * p.dw / p.sw;
  }
};

inline PlaneBuffer plane_buffer(const ConvParams& p) {
  return {(p.oh - 1) * p.sh + (p.r - 1) * p.dh + 1, std::min(p.sw, (p.s - 1) * p.dw + 1),
          p.ow + (p.s - 1) * p.dw / p.sw};
}

// Where each phase's valid inputs lie: phase q, elements [lo, hi).
inline std::vector<Span> phase_spans(const ConvParams& p, const PlaneBuffer& g) {
  std::vector<Span> spans(g.phases);
  for (int64_t q = 0; q < g.phases; ++q) spans[q] = inside(q - p.pw, p.sw, p.w, g.len);
  return spans;
}

// Buffer offset of each tap (a, b) from output (0, 0).
inline std::vector<int64_t> tap_offsets(const ConvParams& p, const PlaneBuffer& g) {
  std::vector<int64_t> taps(p.r * p.s);
  for (int64_t a = 0; a < p.r; ++a)
    for (int64_t b = 0; b < p.s; ++b) taps[a * p.s + b] = g.tap(p, a, b);
  return taps;
}

// The plane buffer of input plane x (h, w), in whole vectors (copy_over): buf
// needs room for a vector past g.size().
template <class T>
void fill_plane(const ConvParams& p, const PlaneBuffer& g, const Span* spans, const T* x, T* buf) {
  for (int64_t i = 0; i < g.rows; ++i) {
    const int64_t ih = i - p.ph;
    for (int64_t q = 0; q < g.phases; ++q) {
      T* d = buf + i * g.row_step() + q * g.len;
      if (ih < 0 || ih >= p.h) {
        fill_zero_over(d, g.len);
        continue;
      }
      const Span& s = spans[q];
      fill_zero_over(d, s.lo);
      if (s.lo < s.hi) copy_over(d + s.lo, x + ih * p.w + (q - p.pw) + s.lo * p.sw, s.hi - s.lo, p.sw);
      fill_zero_over(d + s.hi, g.len - s.hi);
    }
  }
}

// The plane buffer's size in elements, as a double (it may overflow int64 for
// huge strides or dilations, where the direct kernels are not used).
inline double plane_elems(const ConvParams& p) {
  return double((p.oh - 1) * p.sh + (p.r - 1) * p.dh + 1) * double(std::min(p.sw, (p.s - 1) * p.dw + 1)) *
         double(p.ow + (p.s - 1) * p.dw / p.sw);
}

// Whether p's plane buffer is not much larger than the planes themselves (huge
// strides or dilations make it so): the kernels that use it require this.
inline bool plane_buffer_compact(const ConvParams& p) {
  return plane_elems(p) <= 4.0 * double(p.h * p.w + p.oh * p.ow) + 65536.0;
}

// Direct kernels for thin groups (conv_direct.cpp): correct for any ConvParams,
// picked by conv.cpp for depthwise and few-output groups; direct_backward_data
// serves any stride, conv.cpp uses it for stride > 1.
template <class T>
void direct_forward(const ConvParams& p, const T* x, const T* w, const T* b, T* y);
template <class T>
void direct_backward_data(const ConvParams& p, const T* dy, const T* w, T* dx);
template <class T>
void direct_backward_weight(const ConvParams& p, const T* dy, const T* x, T* dw);

// Forward vectorised over output channels (conv_channels.cpp), and the shapes it takes.
template <class T>
bool channels_suit(const ConvParams& p);
template <class T>
void channels_forward(const ConvParams& p, const T* x, const T* w, const T* b, T* y);
// Its weight gradient, for the shapes that also have stride and dilation 1 along rows.
template <class T>
bool channels_suit_weight(const ConvParams& p);
template <class T>
void channels_backward_weight(const ConvParams& p, const T* dy, const T* x, T* dw);

// Winograd F(2x2, 3x3) forward and weight gradient (conv_winograd.cpp), and the shapes they take.
template <class T>
bool winograd_suits(const ConvParams& p);
template <class T>
void winograd_forward(const ConvParams& p, const T* x, const T* w, const T* b, T* y);
template <class T>
void winograd_backward_weight(const ConvParams& p, const T* dy, const T* x, T* dw);

// Implicit-GEMM forward for strided layers (conv_implicit.cpp), and the shapes it takes.
template <class T>
bool implicit_suits(const ConvParams& p);
template <class T>
void implicit_forward(const ConvParams& p, const T* x, const T* w, const T* b, T* y);
// Its backward data for strides > 1, by stride phases, and the shapes it takes.
template <class T>
bool implicit_suits_data(const ConvParams& p);
template <class T>
void implicit_backward_data(const ConvParams& p, const T* dy, const T* w, T* dx);
// Its weight gradient, vectorised over output channels, and the shapes it takes.
template <class T>
bool implicit_suits_weight(const ConvParams& p);
template <class T>
void implicit_backward_weight(const ConvParams& p, const T* dy, const T* x, T* dw);

}  // namespace dk::cpu::DK_ISA_NS
