// Forward convolution vectorised over output channels, for groups whose output
// channels fill whole vectors (kg a multiple of the vector width) on short
// output rows: LeNet's second layer, x (64, 6, 14, 14) * w (16, 6, 5, 5) -> y
// (64, 16, 10, 10), is one zmm of 16 output channels per position.
//
// As a GEMM (Y_g (kg x oh*ow) = W_g (kg x crs) col_g) that layer's im2col cuts
// each of col's 150 rows into ten 10-value segments per image: the copies cost
// as much as the multiply (half the time on one core, where PyTorch ran 2.4x
// faster). Here the GEMM's B operand is the input itself. Each input plane of
// the group is copied once into its plane buffer (conv_common.h: zero padding
// and stride phases, so the taps of a run of outputs along a row are
// contiguous); then, for a run of P outputs of one row and a vector of W output
// channels, acc[p] += w[(ci, a, b)][k .. k + W) * x(ci, tap (a, b) of output p),
// one broadcast-from-memory FMA each, P accumulators in registers. The weight
// is repacked once per call as (crs x kg) so each tap's W channels are one
// vector load. The runs of an image fill a (positions x W) block, written to
// y's W planes by W x W transposes in registers as soon as a row completes W
// positions (all at the end, the stores that miss the cache stalled instead of
// overlapping with the FMAs); unpadded layers with stride 1 along rows (LeNet
// c2) read the input planes in place, as their plane buffers would be copies
// of them. Those took LeNet c2 from 0.327 to 0.277 ms on one core with inputs
// in cache (80% -> 95% of the FMA peak; the scalar transposing stores took 13%
// of the time, the plane copies 8%), and with x from memory from 0.37 to 0.33
// ms on one core, 0.21 to 0.18 ms on two.
//
// The weight gradient on the same shapes (stride and dilation 1 along rows, at
// most kMaxWidth taps a row), vectorised the same way:
// dW[k .. k + W)[ci][a][b] = sum over images and outputs (i, j) of
// dy[k .. k + W)(i, j) * x(ci, tap (a, b) of (i, j)). dy is transposed once to
// (position, W channels); a block of A tap rows x the S taps of a row are A * S
// accumulators, each dy vector feeding them from one plane buffer row per tap
// row at compile-time offsets b. Threads take (group, channel vector, input
// channel) items, each summing over the batch in order: no partial copies of
// dW, and the same sums for any thread count.
// Every output is the same sum in the same order whatever the thread count.
#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "cpu/conv_common.h"
#include "cpu/parallel.h"

namespace dk::cpu::DK_ISA_NS {
namespace {

// Accumulators a run of outputs may use: the registers left after the weight
// vector and a broadcast (32 zmm, 16 ymm).
#if defined(__AVX512F__)
constexpr int kMaxRun = 24;
#else
constexpr int kMaxRun = 12;
#endif

// Outputs (i, j0 .. j0 + P) of channels [k0, k0 + W) from the cg plane buffers
// at bufs (`plane` elements apart), into out (P x W, position-major).
template <class T, int P>
void channel_run(const T* wp, int64_t kg, int64_t cg, int64_t rs, const int64_t* taps, const T* bufs,
                 int64_t plane, const T* bias, T* out) {
  using V = Vec<T>;
  V acc[P];
#pragma GCC unroll 24
  for (int q = 0; q < P; ++q) acc[q] = bias ? V::load(bias) : V(T(0));
  for (int64_t ci = 0; ci < cg; ++ci, bufs += plane, wp += rs * kg) {
    for (int64_t t = 0; t < rs; ++t) {
      const V wv = V::load(wp + t * kg);
      const T* src = bufs + taps[t];
#pragma GCC unroll 24
      for (int q = 0; q < P; ++q) acc[q] = fma(wv, V(src[q]), acc[q]);
    }
  }
#pragma GCC unroll 24
  for (int q = 0; q < P; ++q) acc[q].store(out + q * V::width);
}

template <class T>
using ChannelRun = void (*)(const T*, int64_t, int64_t, int64_t, const int64_t*, const T*, int64_t, const T*, T*);

template <class T, int... P>
constexpr std::array<ChannelRun<T>, kMaxRun> run_table(std::integer_sequence<int, P...>) {
  return {&channel_run<T, P + 1>...};
}

// channel_run<T, P> for a run-time P in [1, kMaxRun].
template <class T>
ChannelRun<T> channel_run_for(int64_t run) {
  static constexpr auto table = run_table<T>(std::make_integer_sequence<int, kMaxRun>{});
  return table[run - 1];
}

// Taps per row that channel_rows takes, and the accumulators it may use.
constexpr int kMaxWidth = 8;

// acc[a * S + b] (a vector of W channels each) += over one image, dy at dyt
// (position, W) x the inputs of taps (a0 + a, b), a < A, from the plane buffer
// at buf (stride and dilation 1 along rows: tap (a, b) is buffer row
// i * sh + a * dh, element j + b).
template <class T, int S, int A>
void channel_rows(const ConvParams& p, const PlaneBuffer& g, const T* dyt, const T* buf, int64_t a0, T* acc) {
  using V = Vec<T>;
  V s[A * S];
#pragma GCC unroll 24
  for (int u = 0; u < A * S; ++u) s[u] = V::load(acc + u * V::width);
  const int64_t step = p.dh * g.row_step();
  for (int64_t i = 0; i < p.oh; ++i) {
    const T* row = buf + (i * p.sh + a0 * p.dh) * g.row_step();
    const T* d = dyt + i * p.ow * V::width;
    for (int64_t j = 0; j < p.ow; ++j) {
      const V dv = V::load(d + j * V::width);
#pragma GCC unroll 8
      for (int a = 0; a < A; ++a)
#pragma GCC unroll 8
        for (int b = 0; b < S; ++b) s[a * S + b] = fma(dv, V(row[a * step + j + b]), s[a * S + b]);
    }
  }
#pragma GCC unroll 24
  for (int u = 0; u < A * S; ++u) s[u].store(acc + u * V::width);
}

template <class T>
using ChannelRows = void (*)(const ConvParams&, const PlaneBuffer&, const T*, const T*, int64_t, T*);

// Tap rows a block may take with S taps a row: kMaxRun accumulators at most.
constexpr int rows_for(int taps) { return std::max(1, std::min(kMaxWidth, kMaxRun / taps)); }

template <class T, int S, int... A>
constexpr std::array<ChannelRows<T>, kMaxWidth> rows_table(std::integer_sequence<int, A...>) {
  return {(A + 1 <= rows_for(S) ? &channel_rows<T, S, std::min(A + 1, rows_for(S))> : nullptr)...};
}

template <class T, int... S>
constexpr std::array<std::array<ChannelRows<T>, kMaxWidth>, kMaxWidth> rows_tables(std::integer_sequence<int, S...>) {
  return {rows_table<T, S + 1>(std::make_integer_sequence<int, kMaxWidth>{})...};
}

// channel_rows<T, taps, rows> for run-time taps in [1, kMaxWidth], rows in [1, rows_for(taps)].
template <class T>
ChannelRows<T> channel_rows_for(int64_t taps, int64_t rows) {
  static constexpr auto table = rows_tables<T>(std::make_integer_sequence<int, kMaxWidth>{});
  return table[taps - 1][rows - 1];
}

}  // namespace

template <class T>
bool channels_suit(const ConvParams& p) {
  constexpr int W = Vec<T>::width;
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups;
  // Rows of at most two vectors are where im2col's segments cost most (longer
  // rows copy well and feed the GEMM's wider tiles); the group's plane buffers
  // must stay in L2 next to the weight.
  return W >= 4 && kg % W == 0 && p.ow <= 2 * W && p.r * p.s > 1 &&
         double(cg) * plane_elems(p) * sizeof(T) <= double(256 << 10) &&
         double(cg * p.r * p.s * kg) * sizeof(T) <= double(256 << 10);
}

template <class T>
void channels_forward(const ConvParams& p, const T* x, const T* w, const T* b, T* y) {
  constexpr int W = Vec<T>::width;
  const PlaneBuffer g = plane_buffer(p);
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, rs = p.r * p.s, pos = p.oh * p.ow;
  const int64_t plane = g.size() + W;  // fill_plane writes up to a vector past a buffer
  const std::vector<Span> spans = phase_spans(p, g);
  const std::vector<int64_t> taps = tap_offsets(p, g);
  // The weight as (group, ci, a, b, k): a tap's kg channels contiguous.
  std::vector<T> wp(static_cast<size_t>(p.k * cg * rs));
  for (int64_t k = 0; k < p.k; ++k)
    for (int64_t e = 0; e < cg * rs; ++e) wp[(k / kg * cg * rs + e) * kg + k % kg] = w[k * cg * rs + e];
  // Runs of at most kMaxRun outputs per row, as even as possible.
  const int64_t runs = (p.ow + kMaxRun - 1) / kMaxRun, run = (p.ow + runs - 1) / runs;
  // Unpadded, stride 1 along rows: the plane buffer would be the input plane
  // itself, so the input is read in place (LeNet c2: the copies took 8% of the time).
  const bool in_place = p.sw == 1 && p.ph == 0 && p.pw == 0;
  parallel_items<T>(p.n * p.groups, threads_for(p.n * p.k * pos * rs * cg), (in_place ? 0 : cg * plane) + pos * W,
                    [&](int64_t item, T* buf) {
    const int64_t n = item / p.groups, gi = item % p.groups;
    const T* xg = x + (n * p.c + gi * cg) * p.h * p.w;
    if (item + 1 < p.n * p.groups) prefetch(x + (item + 1) * cg * p.h * p.w, cg * p.h * p.w);  // the next item's planes
    T* block = buf + (in_place ? 0 : cg * plane);  // the outputs of W channels, (position, W)
    if (!in_place)
      for (int64_t ci = 0; ci < cg; ++ci) fill_plane(p, g, spans.data(), xg + ci * p.h * p.w, buf + ci * plane);
    const T* planes = in_place ? xg : buf;
    for (int64_t k0 = 0; k0 < kg; k0 += W) {
      const T* wk = wp.data() + gi * cg * rs * kg + k0;
      const T* bias = b ? b + gi * kg + k0 : nullptr;
      // y's W planes from block, W positions at a time transposed in registers
      // (scalar, this copy took 13% of LeNet c2's time), as soon as a row completes
      // them: stores that miss the cache overlap with the next rows' FMAs.
      T* yk = y + (n * p.k + gi * kg + k0) * pos;
      int64_t done = 0;  // positions stored
      for (int64_t i = 0; i < p.oh; ++i) {
        for (int64_t j0 = 0; j0 < p.ow; j0 += run)
          channel_run_for<T>(std::min(run, p.ow - j0))(wk, kg, cg, rs, taps.data(),
                                                        planes + i * p.sh * g.row_step() + j0, in_place ? p.h * p.w : plane,
                                                        bias, block + (i * p.ow + j0) * W);
        const int64_t ready = (i + 1) * p.ow;  // positions computed
        for (; done < ready && (done + W <= ready || ready == pos); done += W) {
          Vec<T> r[W];
          for (int t = 0; t < W; ++t) r[t] = done + t < pos ? Vec<T>::load(block + (done + t) * W) : Vec<T>(T(0));
          transpose(r);
          for (int k = 0; k < W; ++k) r[k].store(yk + k * pos + done, pos - done);
        }
      }
    }
  });
}

template <class T>
bool channels_suit_weight(const ConvParams& p) {
  return channels_suit<T>(p) && p.sw == 1 && p.dw == 1 && p.s <= kMaxWidth;
}

template <class T>
void channels_backward_weight(const ConvParams& p, const T* dy, const T* x, T* dw) {
  constexpr int W = Vec<T>::width;
  const PlaneBuffer g = plane_buffer(p);
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, rs = p.r * p.s, pos = p.oh * p.ow, vecs = p.k / W;
  const std::vector<Span> spans = phase_spans(p, g);
  // dy as (image, channel vector, position, W): one vector per position.
  std::vector<T> dyt(static_cast<size_t>(p.n * p.k * pos));
#pragma omp parallel for num_threads(threads_for(p.n * p.k * pos)) schedule(static)
  for (int64_t nv = 0; nv < p.n * vecs; ++nv) {
    const T* src = dy + nv * W * pos;
    T* dst = dyt.data() + nv * W * pos;
    for (int64_t l = 0; l < W; ++l)
      for (int64_t q = 0; q < pos; ++q) dst[q * W + l] = src[l * pos + q];
  }
  const int64_t rows = rows_for(static_cast<int>(p.s));
  const int64_t plane = g.size() + W;  // fill_plane writes up to a vector past a buffer
  parallel_items<T>(vecs * cg, threads_for(p.n * p.k * pos * rs * cg), plane + rs * W, [&](int64_t item, T* buf) {
    const int64_t v = item / cg, ci = item % cg, gi = v * W / kg;
    T* acc = buf + plane;
    fill_zero(acc, rs * W);
    for (int64_t n = 0; n < p.n; ++n) {
      fill_plane(p, g, spans.data(), x + (n * p.c + gi * cg + ci) * p.h * p.w, buf);
      const T* d = dyt.data() + (n * vecs + v) * pos * W;
      for (int64_t a0 = 0; a0 < p.r; a0 += rows)
        channel_rows_for<T>(p.s, std::min(rows, p.r - a0))(p, g, d, buf, a0, acc + a0 * p.s * W);
    }
    for (int64_t l = 0; l < W; ++l)
      for (int64_t t = 0; t < rs; ++t) dw[((v * W + l) * cg + ci) * rs + t] = acc[t * W + l];
  });
}

template bool channels_suit<float>(const ConvParams&);
template bool channels_suit<double>(const ConvParams&);
template void channels_forward<float>(const ConvParams&, const float*, const float*, const float*, float*);
template bool channels_suit_weight<float>(const ConvParams&);
template bool channels_suit_weight<double>(const ConvParams&);
template void channels_backward_weight<float>(const ConvParams&, const float*, const float*, float*);
template void channels_backward_weight<double>(const ConvParams&, const double*, const double*, double*);
template void channels_forward<double>(const ConvParams&, const double*, const double*, const double*, double*);

}  // namespace dk::cpu::DK_ISA_NS
