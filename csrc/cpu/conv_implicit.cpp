// Implicit-GEMM convolution for strided layers (conv.cpp picks it for stride > 1
// when output rows fill whole vectors: ResNet's 3x3 stride-2 layer, x (32, 64,
// 32, 32) * w (128, 64, 3, 3) -> y (32, 128, 16, 16)).
//
// Per image and group, Y_g (kg x oh*ow) = W_g (kg x crs) col_g as in conv.cpp,
// but col is never built: each input plane is copied once into its plane buffer
// (conv_common.h: zero padding and stride phases), where the W outputs of a
// vector along an output row read, for tap (a, b), W contiguous buffer values
// at a fixed offset (tap_offsets). The micro-kernel is the GEMM's (MR x NV
// vectors of accumulators, one broadcast of the packed weight per row, NV
// vector loads per k step) with its B rows read from the plane buffers at
// those offsets instead of from col. With stride 2, im2col wrote col (crs x
// positions, 2.25x the input) in 16-value segments, about a seventh of the
// forward time on one core; the buffers hold 1.1x the input, copied in rows.
// The buffers of all cg channels (287 KiB for ResNet's layer) and the packed
// weight stay in L2; the channels are taken a chunk at a time (kChunkSteps
// k steps: 32 channels of 3x3 taps) so the B rows of one tile stay in L1
// while the MR-row strips of the weight sweep over them, C (kg x NV vectors)
// reloaded once per chunk. From 16 to 64 channels of 3x3 measured the same;
// the backward data's phases of 1 and 2 taps take more channels per chunk,
// as their C reloads would otherwise cost 3-6%.
// Threads: (image, group) items as conv.cpp's run_items; with too few items,
// the tiles of one item are spread over the threads. Either way each output is
// the same sum in the same order, so results do not depend on the thread count.
#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "cpu/conv_common.h"
#include "cpu/gemm_kernel.h"
#include "cpu/parallel.h"

namespace dk::cpu::DK_ISA_NS {
namespace {

// k steps (input channels x taps) per pass over a tile (see the top).
constexpr int64_t kChunkSteps = 288;
// The plane buffers of a group's channels must fit in L2 next to the weight.
constexpr double kPlaneBytes = double(512 << 10);

template <class T>
constexpr int kMR = GemmBlocking<T>::mr;
template <class T>
constexpr int kNV = GemmBlocking<T>::nv;

// The two kernels' register block: ROWS x NV vectors of accumulators, each step
// acc[r][v] += a(r) * b[v], then stored to C (row stride ldc) + C when add,
// + bias[r] when bias.
template <class T, int ROWS, int NV>
struct Block {
  Vec<T> acc[ROWS][NV];

  __attribute__((always_inline)) Block() {
#pragma GCC unroll 64
    for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = Vec<T>(T(0));
  }

  template <class A>
  __attribute__((always_inline)) void step(const Vec<T> (&b)[NV], A&& a) {
#pragma GCC unroll 64
    for (int r = 0; r < ROWS; ++r) {
      const Vec<T> ar(a(r));
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = fma(ar, b[v], acc[r][v]);
    }
  }

  __attribute__((always_inline)) void store(T* c, int64_t ldc, bool add, const T* bias) const {
    constexpr int W = Vec<T>::width;
#pragma GCC unroll 64
    for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        Vec<T> s = acc[r][v];
        if (add) s = s + Vec<T>::load(c + r * ldc + v * W);
        if (bias) s = s + Vec<T>(bias[r]);
        s.store(c + r * ldc + v * W);
      }
  }
};

// C rows [0, ROWS) x vectors [0, NV) (row stride ldc, vectors W apart) = sum over
// ci < chans, t < ntaps of a[(ci * ntaps + t) * MR + row] * b[ci * plane +
// taps[t] + boff[v]] (+ C when add, + bias[row] when bias).
template <class T, int ROWS, int NV>
__attribute__((noinline)) void tap_kernel(int64_t chans, int64_t plane, const int64_t* taps, int64_t ntaps,
                                          const T* __restrict a, const T* b, const int64_t* boff, T* __restrict c,
                                          int64_t ldc, const T* bias, bool add) {
  using V = Vec<T>;
  constexpr int W = V::width, MR = kMR<T>;
  Block<T, ROWS, NV> acc;
  const T* bp[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) bp[v] = b + boff[v];
  for (int64_t ci = 0; ci < chans; ++ci) {
#pragma GCC unroll 2
    for (int64_t t = 0; t < ntaps; ++t) {
      const int64_t o = taps[t];
      V bv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) bv[v] = V::load(bp[v] + o);
      acc.step(bv, [&](int r) { return a[r]; });
      a += MR;
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bp[v] += plane;
  }
  acc.store(c, ldc, add, bias);
}

template <class T>
using TapKernel = void (*)(int64_t, int64_t, const int64_t*, int64_t, const T*, const T*, const int64_t*, T*, int64_t,
                           const T*, bool);

// Kernel tables: K::at<rows, nv>() for rows in [1, ROWS], nv in [1, NV], built at
// compile time and indexed [rows - 1][nv - 1].
template <class K, int ROWS, int... NVs>
constexpr auto kernel_row(std::integer_sequence<int, NVs...>) {
  return std::array{K::template at<ROWS, NVs + 1>()...};
}

template <class K, int NV, int... Rs>
constexpr auto kernel_table(std::integer_sequence<int, Rs...>) {
  return std::array{kernel_row<K, Rs + 1>(std::make_integer_sequence<int, NV>{})...};
}

// K::at<rows, nv>() for run-time rows in [1, ROWS], nv in [1, NV].
template <class K, int ROWS, int NV>
auto kernel_for(int64_t rows, int64_t nv) {
  static constexpr auto table = kernel_table<K, NV>(std::make_integer_sequence<int, ROWS>{});
  return table[rows - 1][nv - 1];
}

template <class T>
struct TapKernels {
  template <int ROWS, int NV>
  static constexpr TapKernel<T> at() { return &tap_kernel<T, ROWS, NV>; }
};

// The weight gradient's register block: kWRows rows of dW^T (input channel and
// tap pairs, one pointer each) x kWVecs vectors of output channels.
#if defined(__AVX512F__)
constexpr int kWRows = 6, kWVecs = 4;  // 24 accumulators + 4 dy vectors + a broadcast
#elif defined(__AVX2__)
constexpr int kWRows = 6, kWVecs = 2;  // 12 + 2 + 1 of 16 ymm
#else
constexpr int kWRows = 4, kWVecs = 4;
#endif

// C rows [0, ROWS) x vectors [0, NV) (row stride ldc, + C when add) = sum over
// outputs (i, j) of a[r][i * row + j] * dyt[(i * ow + j) * ld + v * W]: row r's
// input at the tap of (i, j), broadcast, times the gradients of NV * W output
// channels at (i, j).
template <class T, int ROWS, int NV>
__attribute__((noinline)) void weight_kernel(const T* const* a, int64_t oh, int64_t ow, int64_t row,
                                             const T* __restrict dyt, int64_t ld, T* __restrict c, int64_t ldc,
                                             bool add) {
  using V = Vec<T>;
  constexpr int W = V::width;
  Block<T, ROWS, NV> acc;
  const T* ap[ROWS];
#pragma GCC unroll 64
  for (int r = 0; r < ROWS; ++r) ap[r] = a[r];
  for (int64_t i = 0; i < oh; ++i) {
#pragma GCC unroll 2
    for (int64_t j = 0; j < ow; ++j) {
      V bv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) bv[v] = V::load(dyt + v * W);
      acc.step(bv, [&](int r) { return ap[r][j]; });
      dyt += ld;
    }
#pragma GCC unroll 64
    for (int r = 0; r < ROWS; ++r) ap[r] += row;
  }
  acc.store(c, ldc, add, nullptr);
}

template <class T>
using WeightKernel = void (*)(const T* const*, int64_t, int64_t, int64_t, const T*, int64_t, T*, int64_t, bool);

template <class T>
struct WeightKernels {
  template <int ROWS, int NV>
  static constexpr WeightKernel<T> at() { return &weight_kernel<T, ROWS, NV>; }
};

// A product out (m x ow * oh positions) = A (m x chans * taps) B, B's row (ci, t)
// for the W positions from q (a multiple of W; (i, j) = (q / ow, q % ow)) at
// buf + ci * plane + taps[t] + i * row + j. A packed as tap_kernel reads it:
// strips of MR rows (zero past m), each k-major.
template <class T>
struct TapGemm {
  int64_t m, chans, plane, oh, ow, row;
  std::vector<int64_t> taps;
  std::vector<T> a;

  template <class F>  // at(r, k): A's element, r < m, k < chans * taps
  void pack(F&& at) {
    constexpr int MR = kMR<T>;
    const int64_t depth = chans * static_cast<int64_t>(taps.size());
    a.assign(static_cast<size_t>(round_up(m, MR) * depth), T(0));
    for (int64_t r = 0; r < m; ++r)
      for (int64_t k = 0; k < depth; ++k) a[(r / MR * depth + k) * MR + r % MR] = at(r, k);
  }

  // out (row stride ldc) from the buffers at buf; bias (m) or nullptr. split:
  // spread the tiles over the threads.
  void run(const T* buf, const T* bias, T* out, int64_t ldc, bool split) const {
    constexpr int W = Vec<T>::width, MR = kMR<T>, NV = kNV<T>;
    const int64_t ntaps = static_cast<int64_t>(taps.size()), depth = chans * ntaps;
    const int64_t vecs = oh * ow / W, tiles = (vecs + NV - 1) / NV;
    const int64_t chunk = std::max<int64_t>(1, kChunkSteps / ntaps);  // channels per pass over a tile
    auto tile = [&](int64_t tt) {
      const int64_t v0 = tt * NV, nv = std::min<int64_t>(NV, vecs - v0);
      int64_t boff[NV];
      for (int64_t v = 0; v < nv; ++v) boff[v] = (v0 + v) * W / ow * row + (v0 + v) * W % ow;
      for (int64_t c0 = 0; c0 < chans; c0 += chunk)
        for (int64_t m0 = 0; m0 < m; m0 += MR)
          kernel_for<TapKernels<T>, kMR<T>, kNV<T>>(std::min<int64_t>(MR, m - m0), nv)(
              std::min(chunk, chans - c0), plane, taps.data(), ntaps, a.data() + m0 * depth + c0 * ntaps * MR,
              buf + c0 * plane, boff, out + m0 * ldc + v0 * W, ldc, c0 == 0 && bias ? bias + m0 : nullptr, c0 > 0);
    };
    if (!split) {
      for (int64_t tt = 0; tt < tiles; ++tt) tile(tt);
      return;
    }
#pragma omp parallel for num_threads(threads_for(m * oh * ow * depth / 64)) schedule(static)
    for (int64_t tt = 0; tt < tiles; ++tt) tile(tt);
  }
};

// The layers the implicit GEMM is for: strided, with more than one tap (a
// strided 1x1's im2col is one strided copy per channel, and measured no slower).
bool strided_taps(const ConvParams& p) { return (p.sh > 1 || p.sw > 1) && p.r * p.s > 1; }

}  // namespace

template <class T>
bool implicit_suits(const ConvParams& p) {
  return strided_taps(p) && p.ow % Vec<T>::width == 0 && plane_buffer_compact(p) &&
         double(p.c / p.groups) * plane_elems(p) * sizeof(T) <= kPlaneBytes;
}

template <class T>
void implicit_forward(const ConvParams& p, const T* x, const T* w, const T* b, T* y) {
  const PlaneBuffer g = plane_buffer(p);
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, crs = cg * p.r * p.s, pos = p.oh * p.ow;
  const int64_t plane = g.size() + Vec<T>::width;  // fill_plane writes up to a vector past a buffer
  const std::vector<Span> spans = phase_spans(p, g);
  std::vector<TapGemm<T>> groups(p.groups, TapGemm<T>{kg, cg, plane, p.oh, p.ow, p.sh * g.row_step(), tap_offsets(p, g), {}});
  for (int64_t gi = 0; gi < p.groups; ++gi) groups[gi].pack([&](int64_t r, int64_t k) { return w[(gi * kg + r) * crs + k]; });
  run_items<T>(p.n * p.groups, cg * plane, [&](int64_t it, T* buf, bool split) {
    const int64_t n = it / p.groups, gi = it % p.groups;
    const T* xg = x + (n * p.c + gi * cg) * p.h * p.w;
#pragma omp parallel for if (split) num_threads(threads_for(cg * plane)) schedule(static)
    for (int64_t ci = 0; ci < cg; ++ci) fill_plane(p, g, spans.data(), xg + ci * p.h * p.w, buf + ci * plane);
    groups[gi].run(buf, b ? b + gi * kg : nullptr, y + (n * p.k + gi * kg) * pos, pos, split);
  });
}

// Backward data by stride phases: dx's phase (pa, pb), the inputs (pa + sh * u,
// pb + sw * v), is a stride-1 correlation of dy with the taps (a, b) that reach it,
// those with pa + ph - a * dh = sh * ea (and likewise b): dx_phase[ci][u][v] =
// sum over k, (a, b) of w[k][ci][a][b] * dy[k][u + ea][v + eb]. Every tap
// belongs to one phase, so this does the forward's multiplies, no more, and
// writes each dx element once: no col2im, whose scatter (scalar, stride 2) and
// zeroing took a fifth of ResNet stride 2's backward data. Each phase is a
// TapGemm over zero-padded copies of the dy planes, into a buffer that is then
// spread over dx's strided positions.
template <class T>
bool implicit_suits_data(const ConvParams& p) {
  const double plane = double(p.oh + p.r * p.dh + 2) * double(p.ow + p.s * p.dw + 2);  // at least the buffer
  return strided_taps(p) && p.w % (p.sw * Vec<T>::width) == 0 &&
         double(p.k / p.groups) * plane * sizeof(T) <= kPlaneBytes;
}

template <class T>
void implicit_backward_data(const ConvParams& p, const T* dy, const T* w, T* dx) {
  constexpr int W = Vec<T>::width;
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, rs = p.r * p.s;
  struct Phase {
    int64_t pa, pb, hp, wp;
    std::vector<std::array<int64_t, 4>> taps;  // a, b, ea, eb
  };
  // The phases and their taps; the dy rows [-top, bottom) and columns [-left, right) they read.
  std::vector<Phase> phases;
  int64_t top = 0, left = 0, bottom = p.oh, right = p.ow;
  for (int64_t pa = 0; pa < std::min(p.sh, p.h); ++pa)
    for (int64_t pb = 0; pb < p.sw; ++pb) {
      Phase f{pa, pb, (p.h - pa + p.sh - 1) / p.sh, p.w / p.sw, {}};
      for (int64_t a = 0; a < p.r; ++a)
        for (int64_t b = 0; b < p.s; ++b) {
          const int64_t ra = pa + p.ph - a * p.dh, rb = pb + p.pw - b * p.dw;
          if (ra % p.sh != 0 || rb % p.sw != 0) continue;
          const int64_t ea = ra / p.sh, eb = rb / p.sw;
          f.taps.push_back({a, b, ea, eb});
          top = std::max(top, -ea), bottom = std::max(bottom, f.hp + ea);
          left = std::max(left, -eb), right = std::max(right, f.wp + eb);
        }
      phases.push_back(std::move(f));
    }
  // dy's planes zero-padded as fill_plane pads an input plane.
  ConvParams q = p;
  q.h = p.oh, q.w = p.ow, q.ph = top, q.pw = left, q.sh = q.sw = 1;
  const PlaneBuffer g{top + bottom, 1, left + right};
  const std::vector<Span> spans = phase_spans(q, g);
  const int64_t plane = g.size() + W;  // fill_plane writes up to a vector past a buffer
  std::vector<TapGemm<T>> gemms;  // (group, phase)
  for (int64_t gi = 0; gi < p.groups; ++gi)
    for (const Phase& f : phases) {
      TapGemm<T> t{cg, kg, plane, f.hp, f.wp, g.len, {}, {}};
      for (const auto& e : f.taps) t.taps.push_back((e[2] + top) * g.len + e[3] + left);
      const int64_t nt = static_cast<int64_t>(f.taps.size());
      t.pack([&](int64_t ci, int64_t kt) {
        const auto& e = f.taps[kt % nt];
        return w[((gi * kg + kt / nt) * cg + ci) * rs + e[0] * p.s + e[1]];
      });
      gemms.push_back(std::move(t));
    }
  // The phases' results, (phase, ci, u, v), fill a buffer of dx's size; with sw == 2,
  // dx's rows are then pairs of phase rows interleaved, whole vectors at a time.
  std::vector<int64_t> at(phases.size() + 1, 0);
  for (size_t f = 0; f < phases.size(); ++f) at[f + 1] = at[f] + cg * phases[f].hp * phases[f].wp;
  run_items<T>(p.n * p.groups, kg * plane + at.back(), [&](int64_t it, T* buf, bool split) {
    const int64_t n = it / p.groups, gi = it % p.groups;
    const T* dyg = dy + (n * p.k + gi * kg) * p.oh * p.ow;
    T* dxg = dx + (n * p.c + gi * cg) * p.h * p.w;
    T* tmp = buf + kg * plane;
#pragma omp parallel for if (split) num_threads(threads_for(kg * plane)) schedule(static)
    for (int64_t k = 0; k < kg; ++k) fill_plane(q, g, spans.data(), dyg + k * p.oh * p.ow, buf + k * plane);
    for (size_t f = 0; f < phases.size(); ++f) {
      const TapGemm<T>& t = gemms[gi * phases.size() + f];
      if (t.taps.empty()) {
        fill_zero(tmp + at[f], at[f + 1] - at[f]);
      } else {
        t.run(buf, nullptr, tmp + at[f], phases[f].hp * phases[f].wp, split);
      }
    }
#pragma omp parallel for if (split) num_threads(threads_for(cg * p.h * p.w)) schedule(static)
    for (int64_t ci = 0; ci < cg; ++ci)
      for (int64_t ih = 0; ih < p.h; ++ih) {
        const int64_t f = ih % p.sh * p.sw, u = ih / p.sh, wp = p.w / p.sw;
        const int64_t row = (ci * phases[f].hp + u) * wp;  // within each of the sw phases of this row
        T* d = dxg + (ci * p.h + ih) * p.w;
        if (p.sw == 2) {
          const T *s0 = tmp + at[f] + row, *s1 = tmp + at[f + 1] + row;
          for (int64_t v = 0; v < wp; v += W) {
            Vec<T> lo, hi;
            interleave(Vec<T>::load(s0 + v), Vec<T>::load(s1 + v), lo, hi);
            lo.store(d + 2 * v);
            hi.store(d + 2 * v + W);
          }
          continue;
        }
        for (int64_t pb = 0; pb < p.sw; ++pb)
          for (int64_t v = 0; v < wp; ++v) d[v * p.sw + pb] = tmp[at[f + pb] + row + v];
      }
  });
}

// The weight gradient, vectorised over output channels: dW_g^T (crs x kg) = sum
// over images of col_g dY_g^T, col's row (ci, a, b) read (broadcast) from the
// plane buffers as the forward reads it, dY_g transposed once per image to
// (positions x kg, padded to whole vectors). im2col and the GEMM engine's
// transposing of col (trans_b) took a quarter of ResNet stride 2's weight
// gradient. The batch is summed in kChunks chunks, each into its own dW^T,
// added in chunk order and transposed into dw at the end.
template <class T>
bool implicit_suits_weight(const ConvParams& p) {
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, kgp = round_up(kg, Vec<T>::width);
  return strided_taps(p) && 4 * kgp <= 5 * kg && plane_buffer_compact(p) &&
         double(cg) * plane_elems(p) * sizeof(T) <= kPlaneBytes &&
         double(kChunks) * double(p.groups * cg * p.r * p.s * kgp) * sizeof(T) <= double(kPartialBytes);
}

template <class T>
void implicit_backward_weight(const ConvParams& p, const T* dy, const T* x, T* dw) {
  using V = Vec<T>;
  constexpr int W = V::width;
  const PlaneBuffer g = plane_buffer(p);
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, kgp = round_up(kg, W), rs = p.r * p.s, crs = cg * rs;
  const int64_t pos = p.oh * p.ow, plane = g.size() + W;  // fill_plane writes up to a vector past a buffer
  const std::vector<Span> spans = phase_spans(p, g);
  const std::vector<int64_t> taps = tap_offsets(p, g);
  const int64_t chunks = std::min(p.n, kChunks), part = p.groups * crs * kgp;
  T* parts = scratch<T>(3, chunks * part);
  run_items<T>(chunks, cg * plane + pos * kgp, [&](int64_t ch, T* buf, bool split) {
    T* dyt = buf + cg * plane;
    const int64_t n0 = p.n * ch / chunks, n1 = p.n * (ch + 1) / chunks;
    for (int64_t gi = 0; gi < p.groups; ++gi)
      for (int64_t n = n0; n < n1; ++n) {
        const T* xg = x + (n * p.c + gi * cg) * p.h * p.w;
#pragma omp parallel for if (split) num_threads(threads_for(cg * plane)) schedule(static)
        for (int64_t ci = 0; ci < cg; ++ci) fill_plane(p, g, spans.data(), xg + ci * p.h * p.w, buf + ci * plane);
        // dy_g^T in blocks of kWVecs vectors of channels, (block, position, channel):
        // each kernel call streams one contiguous block.
        for (int64_t k0 = 0; k0 < kg; k0 += kWVecs * W)
          pack_strip_transpose(dy + (n * p.k + gi * kg + k0) * pos, pos, std::min<int64_t>(kWVecs * W, kg - k0), pos,
                               dyt + k0 * pos, std::min<int64_t>(kWVecs * W, kgp - k0));
        T* out = parts + ch * part + gi * crs * kgp;
#pragma omp parallel for if (split) num_threads(threads_for(crs * kgp * pos / 64)) schedule(static)
        for (int64_t e0 = 0; e0 < crs; e0 += kWRows) {
          const int64_t rows = std::min<int64_t>(kWRows, crs - e0);
          const T* a[kWRows];
          for (int64_t r = 0; r < rows; ++r) a[r] = buf + (e0 + r) / rs * plane + taps[(e0 + r) % rs];
          for (int64_t k0 = 0; k0 < kgp; k0 += kWVecs * W)
            kernel_for<WeightKernels<T>, kWRows, kWVecs>(rows, std::min<int64_t>(kWVecs, (kgp - k0) / W))(
                a, p.oh, p.ow, p.sh * g.row_step(), dyt + k0 * pos, std::min<int64_t>(kWVecs * W, kgp - k0),
                out + e0 * kgp + k0, kgp, n > n0);
        }
      }
  });
  // parts[0] += the other chunks in order, then dw_g = its transpose.
  const int64_t block = 1024;
#pragma omp parallel for num_threads(threads_for(chunks * part)) schedule(static)
  for (int64_t e0 = 0; e0 < part; e0 += block)
    for (int64_t e = e0; e < std::min(part, e0 + block); e += W) {
      V sum = V::load(parts + e, part - e);
      for (int64_t ch = 1; ch < chunks; ++ch) sum = sum + V::load(parts + ch * part + e, part - e);
      sum.store(parts + e, part - e);
    }
  for (int64_t gi = 0; gi < p.groups; ++gi)
    pack_strip_transpose(parts + gi * crs * kgp, kgp, crs, kg, dw + gi * kg * crs, crs);
}

template bool implicit_suits_weight<float>(const ConvParams&);
template bool implicit_suits_weight<double>(const ConvParams&);
template void implicit_backward_weight<float>(const ConvParams&, const float*, const float*, float*);
template void implicit_backward_weight<double>(const ConvParams&, const double*, const double*, double*);
template bool implicit_suits_data<float>(const ConvParams&);
template bool implicit_suits_data<double>(const ConvParams&);
template void implicit_backward_data<float>(const ConvParams&, const float*, const float*, float*);
template void implicit_backward_data<double>(const ConvParams&, const double*, const double*, double*);
template bool implicit_suits<float>(const ConvParams&);
template bool implicit_suits<double>(const ConvParams&);
template void implicit_forward<float>(const ConvParams&, const float*, const float*, const float*, float*);
template void implicit_forward<double>(const ConvParams&, const double*, const double*, const double*, double*);

}  // namespace dk::cpu::DK_ISA_NS
