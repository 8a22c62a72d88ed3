// Direct convolution for thin groups, picked by conv.cpp: depthwise (one input
// channel per group, any multiplier) and groups with few output channels
// (k / groups <= 8), such as LeNet's first layer and the backward data of both
// LeNet layers (convolutions with 1 and 6 outputs). There im2col feeds too few
// output channels to pay for itself (it copies each input r * s times for kg
// outputs) and the GEMM's 14-row tiles are mostly empty.
//
// Each input plane is first copied into the plane buffer (conv_common.h): zero
// padding all round and rows split into stride phases, so every tap of a row of
// outputs is one contiguous vector load, with no edge cases and no gathers. A
// 28x28 plane's buffer (3.6 KB) stays in L1 while its kg output planes use it.
// Forward: threads over (image, group); per input channel and output vector,
// r * s FMAs (broadcast weight x buffer vector) added into the group's output
// planes, which stay in L1/L2 over its input channels.
// Backward data (stride > 1 only: with stride 1 conv.cpp runs the forward with
// the flipped kernel): threads over input planes; the forward's transpose, r * s
// FMAs per dy vector added into a zeroed buffer, then un-phased and cropped into dx.
// Backward weight: threads over output channels, each summing over the batch in
// order, so there are no partial copies and the sum does not depend on the
// thread count: one accumulator vector per (input channel, tap), up to 8 in
// registers at a time, fed by dy vector x buffer vector; lanes added at the end.
#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "cpu/conv_common.h"
#include "cpu/parallel.h"

namespace dk::cpu::DK_ISA_NS {
namespace {


// acc[u] (a vector each) += over the plane, dy (d) x tap u's inputs, u < U.
template <class T, int U>
void tap_sums(const ConvParams& p, const PlaneBuffer& g, const int64_t* taps, const T* d, const T* buf, T* acc) {
  using V = Vec<T>;
  V s[U];
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u) s[u] = V::load(acc + u * V::width);
  for (int64_t i = 0; i < p.oh; ++i) {
    const T* row = buf + i * p.sh * g.row_step();
    const T* dr = d + i * p.ow;
    for (int64_t j = 0; j < p.ow; j += V::width) {
      const int64_t left = p.ow - j;
      const V dv = V::load(dr + j, left);
#pragma GCC unroll 8
      for (int u = 0; u < U; ++u) s[u] = fma(dv, V::load(row + taps[u] + j, left), s[u]);
    }
  }
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u) s[u].store(acc + u * V::width);
}

// Output rows [i0, i0 + ROWS) of the OUTS output planes at y0 (ystep apart),
// from `chans` input channels' plane buffers at buf (`plane` apart): += the taps
// of their weights (at w0, wstep apart per output, rs per channel), or, when
// `first`, the taps plus the bias (or 0). OUTS x ROWS independent accumulators:
// each buffer vector loaded feeds OUTS FMAs and each weight broadcast ROWS, so
// the loop is bound by the FMAs, not by loads or by the FMA latency (one
// accumulator per output row ran at a third of it). The channels are summed in
// registers: storing the partial sums per channel (masked stores on rows that
// are not whole vectors, slow on Zen 4) took two thirds of LeNet c2's
// backward data. For the same reason, when this call writes the final values
// and reads none (`first` and `last`), a row's partial last vector is stored whole, spilling into the next
// rows of its plane, which are written later (vectors go right to left, rows
// and blocks top to bottom); only a vector whose spill would pass the plane's
// end is stored masked.
template <class T, int ROWS, int OUTS>
void direct_block(const ConvParams& p, const PlaneBuffer& g, const int64_t* taps, const T* w0, int64_t wstep,
                  const T* bias, bool first, bool last, const T* buf, int64_t chans, int64_t plane, int64_t i0, T* y0,
                  int64_t ystep) {
  using V = Vec<T>;
  const int64_t step = p.sh * g.row_step(), rs = p.r * p.s;
  T* out = y0 + i0 * p.ow;
  const int64_t end = (p.oh - i0) * p.ow;  // the plane's end, from out
  for (int64_t j = (p.ow - 1) / V::width * V::width; j >= 0; j -= V::width) {
    const int64_t left = p.ow - j;
    V acc[OUTS][ROWS];
#pragma GCC unroll 4
    for (int o = 0; o < OUTS; ++o)
#pragma GCC unroll 8
      for (int u = 0; u < ROWS; ++u)
        acc[o][u] = first ? V(bias ? bias[o] : T(0)) : V::load(out + o * ystep + u * p.ow + j, left);
    for (int64_t ci = 0; ci < chans; ++ci) {
      const T* row0 = buf + ci * plane + i0 * step + j;
      const T* wc = w0 + ci * rs;
      for (int64_t t = 0; t < rs; ++t) {
        const T* src = row0 + taps[t];
        V in[ROWS];
#pragma GCC unroll 8
        for (int u = 0; u < ROWS; ++u) in[u] = V::load(src + u * step, left);
#pragma GCC unroll 4
        for (int o = 0; o < OUTS; ++o) {
          const V wv(wc[o * wstep + t]);
#pragma GCC unroll 8
          for (int u = 0; u < ROWS; ++u) acc[o][u] = fma(wv, in[u], acc[o][u]);
        }
      }
    }
#pragma GCC unroll 4
    for (int o = 0; o < OUTS; ++o)
#pragma GCC unroll 8
      for (int u = 0; u < ROWS; ++u) {
        T* to = out + o * ystep + u * p.ow + j;
        if (first && last && u * p.ow + j + V::width <= end) acc[o][u].store(to);
        else acc[o][u].store(to, left);
      }
  }
}

// Up to kBlockOuts outputs and kBlockRows rows per block, and about a dozen
// accumulators: 8 rows of one output (depthwise), 6 of two, 4 of three, 3 of four.
constexpr int kBlockRows = 8, kBlockOuts = 4;
constexpr int64_t block_rows(int64_t outs) { return outs == 1 ? 8 : 12 / outs; }

template <class T>
using DirectBlock = void (*)(const ConvParams&, const PlaneBuffer&, const int64_t*, const T*, int64_t, const T*, bool,
                             bool, const T*, int64_t, int64_t, int64_t, T*, int64_t);

template <class T, int... R>
constexpr std::array<DirectBlock<T>, kBlockRows * kBlockOuts> block_table(std::integer_sequence<int, R...>) {
  return {&direct_block<T, R / kBlockOuts + 1, R % kBlockOuts + 1>...};
}

// direct_block<T, rows, outs> for run-time rows <= kBlockRows, outs <= kBlockOuts.
template <class T>
DirectBlock<T> direct_block_for(int64_t rows, int64_t outs) {
  static constexpr auto table = block_table<T>(std::make_integer_sequence<int, kBlockRows * kBlockOuts>{});
  return table[(rows - 1) * kBlockOuts + outs - 1];
}

template <class T>
using TapSums = void (*)(const ConvParams&, const PlaneBuffer&, const int64_t*, const T*, const T*, T*);

template <class T>
TapSums<T> tap_sums_for(int64_t taps) {
  static constexpr TapSums<T> table[8] = {&tap_sums<T, 1>, &tap_sums<T, 2>, &tap_sums<T, 3>, &tap_sums<T, 4>,
                                          &tap_sums<T, 5>, &tap_sums<T, 6>, &tap_sums<T, 7>, &tap_sums<T, 8>};
  return table[taps - 1];
}

}  // namespace

// Input channels whose plane buffers a forward item holds at once: about an
// L2's worth, at least one.
constexpr int64_t kChannelBytes = int64_t(256) << 10;

template <class T>
void direct_forward(const ConvParams& p, const T* x, const T* w, const T* b, T* y) {
  const PlaneBuffer g = plane_buffer(p);
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, rs = p.r * p.s, pos = p.oh * p.ow;
  const int64_t plane = g.size() + Vec<T>::width;  // fill_plane writes up to a vector past a buffer
  const int64_t chunk = std::clamp<int64_t>(kChannelBytes / int64_t(sizeof(T)) / plane, 1, cg);
  const std::vector<Span> spans = phase_spans(p, g);
  const std::vector<int64_t> taps = tap_offsets(p, g);
  parallel_items<T>(p.n * p.groups, threads_for(p.n * p.k * pos * rs * cg), chunk * plane,
                    [&](int64_t item, T* buf) {
    const int64_t n = item / p.groups, gi = item % p.groups;
    for (int64_t c0 = 0; c0 < cg; c0 += chunk) {
      const int64_t chans = std::min(chunk, cg - c0);
      for (int64_t ci = 0; ci < chans; ++ci)
        fill_plane(p, g, spans.data(), x + (n * p.c + gi * cg + c0 + ci) * p.h * p.w, buf + ci * plane);
      for (int64_t m = 0; m < kg; m += kBlockOuts) {
        const int64_t kk = gi * kg + m, outs = std::min<int64_t>(kBlockOuts, kg - m), rows = block_rows(outs);
        for (int64_t i = 0; i < p.oh; i += rows)
          direct_block_for<T>(std::min(rows, p.oh - i), outs)(
              p, g, taps.data(), w + (kk * cg + c0) * rs, cg * rs, b ? b + kk : nullptr, c0 == 0, c0 + chans == cg, buf, chans, plane, i,
              y + (n * p.k + kk) * pos, pos);
      }
    }
  });
}

template <class T>
void direct_backward_data(const ConvParams& p, const T* dy, const T* w, T* dx) {
  using V = Vec<T>;
  const PlaneBuffer g = plane_buffer(p);
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, rs = p.r * p.s, pos = p.oh * p.ow;
  const std::vector<int64_t> taps = tap_offsets(p, g);
  std::vector<int64_t> column(p.w);  // buffer element of dx column iw within its row; -1: no tap reaches it
  for (int64_t iw = 0; iw < p.w; ++iw) {
    const int64_t j = iw + p.pw, q = j % p.sw, m = j / p.sw;
    column[iw] = j >= 0 && q < g.phases && m < g.len ? q * g.len + m : -1;
  }
  parallel_items<T>(p.n * p.c, threads_for(p.n * p.k * pos * rs), g.size(), [&](int64_t plane, T* buf) {
    fill_zero(buf, g.size());
    const int64_t n = plane / p.c, gi = plane % p.c / cg, ci = plane % cg;
    for (int64_t m = 0; m < kg; ++m) {
      const int64_t kk = gi * kg + m;
      const T* wk = w + (kk * cg + ci) * rs;
      const T* d = dy + (n * p.k + kk) * pos;
      for (int64_t i = 0; i < p.oh; ++i) {
        T* row = buf + i * p.sh * g.row_step();
        for (int64_t j = 0; j < p.ow; j += V::width) {
          const int64_t left = p.ow - j;
          const V dv = V::load(d + i * p.ow + j, left);
          for (int64_t t = 0; t < rs; ++t) {
            T* to = row + taps[t] + j;
            fma(dv, V(wk[t]), V::load(to, left)).store(to, left);
          }
        }
      }
    }
    T* out = dx + plane * p.h * p.w;
    for (int64_t ih = 0; ih < p.h; ++ih) {
      const int64_t bi = ih + p.ph;
      T* o = out + ih * p.w;
      if (bi < 0 || bi >= g.rows) {
        fill_zero(o, p.w);
        continue;
      }
      const T* src = buf + bi * g.row_step();
      for (int64_t iw = 0; iw < p.w; ++iw) o[iw] = column[iw] < 0 ? T(0) : src[column[iw]];
    }
  });
}

template <class T>
void direct_backward_weight(const ConvParams& p, const T* dy, const T* x, T* dw) {
  using V = Vec<T>;
  const PlaneBuffer g = plane_buffer(p);
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, rs = p.r * p.s, pos = p.oh * p.ow;
  const std::vector<Span> spans = phase_spans(p, g);
  const std::vector<int64_t> taps = tap_offsets(p, g);
  const int64_t groups = (rs + 7) / 8, per = (rs + groups - 1) / groups;  // taps in registers at a time
  const int64_t sums = cg * rs * V::width;  // one output channel's accumulators: a vector per (ci, tap)
  parallel_items<T>(p.k, threads_for(p.n * p.k * pos * rs * cg), g.size() + V::width + sums, [&](int64_t kk, T* buf) {
    T* acc = buf + g.size() + V::width;  // past fill_plane's room
    fill_zero(acc, sums);
    const int64_t gi = kk / kg;
    for (int64_t n = 0; n < p.n; ++n)
      for (int64_t ci = 0; ci < cg; ++ci) {
        if (n + 1 < p.n) {  // the next image's planes, a batch apart: out of the prefetchers' sight
          prefetch(x + ((n + 1) * p.c + gi * cg + ci) * p.h * p.w, p.h * p.w);
          if (ci == 0) prefetch(dy + ((n + 1) * p.k + kk) * pos, pos);
        }
        fill_plane(p, g, spans.data(), x + (n * p.c + gi * cg + ci) * p.h * p.w, buf);
        const T* d = dy + (n * p.k + kk) * pos;
        for (int64_t t0 = 0; t0 < rs; t0 += per)
          tap_sums_for<T>(std::min(per, rs - t0))(p, g, taps.data() + t0, d, buf, acc + (ci * rs + t0) * V::width);
      }
    for (int64_t e = 0; e < cg * rs; ++e) dw[kk * cg * rs + e] = reduce_add(V::load(acc + e * V::width));
  });
}

template void direct_forward<float>(const ConvParams&, const float*, const float*, const float*, float*);
template void direct_forward<double>(const ConvParams&, const double*, const double*, const double*, double*);
template void direct_backward_data<float>(const ConvParams&, const float*, const float*, float*);
template void direct_backward_data<double>(const ConvParams&, const double*, const double*, double*);
template void direct_backward_weight<float>(const ConvParams&, const float*, const float*, float*);
template void direct_backward_weight<double>(const ConvParams&, const double*, const double*, double*);

}  // namespace dk::cpu::DK_ISA_NS
