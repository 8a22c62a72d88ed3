// Convolution (ConvParams): x (n, c, h, w), w (k, c / groups, r, s), y (n, k, oh, ow).
// Per image and group g: Y_g (kg x oh*ow) = W_g (kg x crs) * col_g (crs x oh*ow),
// col the im2col matrix (row (ci, a, b), column (i, j): x[ci][i*sh - ph + a*dh][j*sw - pw + b*dw]),
// kg = k / groups, cg = c / groups, crs = cg * r * s.
//
// The algorithm, by shape:
// - thin groups: one input channel (depthwise; also c == groups == 1, LeNet's
//   first layer) or few output channels: the direct kernels of conv_direct.cpp.
//   As a GEMM, a depthwise channel is a (k/c x r*s) by (r*s x positions)
//   product, far too thin for the micro-kernel's 14-row tiles, and with few
//   outputs im2col (r*s copies of the input) costs as much as the GEMM;
//   directly, each tap is one vector FMA over a row of outputs.
// - 3x3, stride 1, no dilation or groups, >= 32 channels in and out (ResNet's
//   and VGG's 3x3 layers): Winograd F(2x2, 3x3), conv_winograd.cpp, 2.25x
//   fewer multiplies; measured on one core 1.7x the im2col path's speed, which
//   already ran at 85% of the FMA peak (and about 0.85x PyTorch on VGG).
// - output channels in whole vectors on short output rows (LeNet's second
//   layer): vectors of output channels, conv_channels.cpp, where im2col's
//   10-value segments cost as much as the GEMM.
// - stride > 1 with output rows of whole vectors (ResNet's 3x3 stride-2 layer):
//   implicit GEMM, conv_implicit.cpp: the GEMM's micro-kernel reading its B rows
//   from padded, phase-split copies of the input planes instead of from col.
//   im2col's 16-value stride-2 segments took a seventh of that layer's forward;
//   one core, 12.7 -> 12.1 ms (82% -> 86% of the FMA peak).
// - 1x1, stride 1, no padding: col is the image itself, Y_g = W_g X_g is a
//   plain GEMM on the arrays, no copy.
// - everything else: im2col in tiles. A tile is col's columns for `cols`
//   consecutive output positions of one image, sized to stay in L2
//   (kTileBytes), multiplied by the weight (packed once per call with pack_a)
//   right after it is built, so it is read from cache; the im2col matrix of a
//   whole image, let alone of the batch (9x the input for 3x3), never exists.
//   Small planes instead put several whole images in a tile (images_per_tile).
// Backward data with stride 1 is the forward convolution of dy by the weight
// flipped and transposed within each group, padded by d * (r - 1) - pad (a
// crop where negative), so it takes the same paths, Winograd included: a
// gather, with no col2im scatter. With stride > 1: thin groups scatter
// directly; when dx's rows split into stride phases of whole vectors
// (ResNet stride 2) each phase is a stride-1 implicit GEMM over dy
// (conv_implicit.cpp), one core 14.9 -> 13.0 ms: the col2im scatter (scalar
// at stride 2) and zeroing of dx took a fifth of the time; the rest computes
// dcol = W_g^T dY_g per tile (GEMM) and col2im adds it into dx.
// Backward weight: Winograd's for its shapes, direct for thin groups; with
// stride > 1 and output channels that fill vectors, conv_implicit.cpp's, which
// broadcasts col's elements from the plane buffers against vectors of output
// channels of dy (one core 16.0 -> 14.7 ms on ResNet stride 2: im2col and the
// engine's transposes of col, a quarter of the time, are gone; register
// blocks of 12 x 2, 8 x 3 and 4 x 6 vectors and blocking the positions so a
// strip of dy stays in L1 measured the same as 6 x 4); else
// dW_g (kg x crs) = sum over images of dY_g col_g^T (GEMM, trans_b: the engine
// transposes col while packing it). When kChunks partial sums of dW fit in
// kPartialBytes, the batch is cut into kChunks chunks summed by the threads
// independently and the partials added in chunk order; a large weight (VGG's
// 256 x 2304) instead takes the images in turn, each one's im2col and GEMM
// spread over the threads: no per-thread copy of it.
//
// Threads: work items (image, group, tile) are independent. When there are
// enough (enough_items) each thread takes whole items, im2col and a GEMM that
// runs single-threaded inside the parallel region: parallelising outside
// needs no barrier between im2col and GEMM and keeps a tile in the L2 of the
// core that built it, where splitting one small GEMM (64 x 1024 x 576) costs
// a fork and a barrier per K block. With too few items (a batch of one) the
// items run in turn, im2col split over channel rows and the GEMM over its tiles.
// Tiles and chunks depend on the shape alone and every output element is
// computed by the same operations in the same order either way, so results
// are bit-identical for any number of threads.
#include "cpu/conv.h"

#include <algorithm>
#include <vector>

#include "cpu/conv_common.h"
#include "cpu/gemm.h"
#include "cpu/gemm_pack.h"
#include "cpu/parallel.h"

namespace dk::cpu::DK_ISA_NS {
namespace {

// A forward / backward-data tile: most of a 1 MiB L2. ResNet stride 2's whole
// image (576 x 256), when that layer ran through im2col, was 4% faster than
// halves of it (384 KiB).
constexpr int64_t kTileBytes = int64_t(768) << 10;
constexpr int64_t kWeightTileBytes = int64_t(4) << 20;  // backward weight: each tile is a pass over dW
constexpr int64_t kTileAlign = 32;                      // tile widths: whole B strips of the micro-kernel
constexpr int64_t kDirectOutputs = 8;  // at most this many outputs per group: direct kernels (use_direct)

struct Geometry {
  int64_t cg, kg, crs, hw, pos;  // channels per group in and out; col's rows; h * w; oh * ow
};

Geometry geometry(const ConvParams& p) {
  const int64_t cg = p.c / p.groups;
  return {cg, p.k / p.groups, cg * p.r * p.s, p.h * p.w, p.oh * p.ow};
}

bool pointwise(const ConvParams& p) {
  return p.r == 1 && p.s == 1 && p.sh == 1 && p.sw == 1 && p.ph == 0 && p.pw == 0 && p.oh == p.h && p.ow == p.w;
}

// Output positions per tile: a tile of `rows` rows within `budget` bytes, all tiles the same width.
int64_t tile_cols(int64_t rows, int64_t pos, int64_t budget, int64_t elem) {
  int64_t cols = budget / std::max<int64_t>(1, rows * elem);
  if (cols >= pos) return pos;
  cols = std::max(kTileAlign, cols / kTileAlign * kTileAlign);
  const int64_t tiles = (pos + cols - 1) / cols;
  return std::min(pos, round_up((pos + tiles - 1) / tiles, kTileAlign));
}

// With stride 1 and as many output columns as input columns ("same" padding),
// output position q reads plane element q + shift for every tap: a row of col
// is one contiguous copy, then the taps that wrapped around a row edge (at most
// the padding, per output row) and the rows outside the plane are zeroed. A
// third of the time of im2col by row segments for ResNet's 32x32 planes.
// Writes up to a vector past dst + cols (see copy_over).
template <class T>
void shifted_row(const ConvParams& p, const T* plane, int64_t a, int64_t off, int64_t p0, int64_t cols, T* dst) {
  const int64_t hw = p.h * p.w, shift = (a * p.dh - p.ph) * p.w + off, end = p0 + cols;
  const Span rows = inside(a * p.dh - p.ph, 1, p.h, p.oh), in = inside(off, 1, p.w, p.ow);
  const int64_t lo = std::clamp(rows.lo * p.ow, p0, end), hi = std::clamp(rows.hi * p.ow, lo, end);
  const int64_t c0 = std::clamp(-shift, lo, hi), c1 = std::clamp(hw - shift, c0, hi);
  fill_zero_over(dst, c0 - p0);
  copy_over(dst + c0 - p0, plane + c0 + shift, c1 - c0, int64_t(1));
  fill_zero_over(dst + c1 - p0, end - c1);
  for (int64_t i = lo / p.ow; i * p.ow < hi; ++i) {  // the wrapped taps of each output row
    const int64_t row = i * p.ow;
    for (int64_t q = std::max(lo, row); q < std::min(hi, row + in.lo); ++q) dst[q - p0] = T(0);
    for (int64_t q = std::max(lo, row + in.hi); q < std::min(hi, row + p.ow); ++q) dst[q - p0] = T(0);
  }
}

// im2col (gather) and col2im (scatter) for tiles of `cols` output positions.
// col's row (ci, a, b) of a tile is cut, per output row the tile touches, into a
// segment: zeros (taps in the left padding), inputs (sw apart) and zeros (the
// right padding), or all zeros for a tap row in the top or bottom padding. The
// segments of each tap and tile depend on neither the channel nor the image,
// so they are computed once per call; each (channel, tap) row is then a tight
// loop over them. (Computed per segment, for LeNet's 10x10 outputs, 1500
// segments of 10 values per image, the geometry cost more than the GEMM.)
class Im2col {
 public:
  Im2col(const ConvParams& p, int64_t cols) : p_(p), cols_(cols), tiles_((p.oh * p.ow + cols - 1) / cols) {
    for (int64_t a = 0; a < p.r; ++a)
      for (int64_t b = 0; b < p.s; ++b) {
        const int64_t off = b * p.dw - p.pw;
        const Span in = inside(off, p.sw, p.w, p.ow);
        for (int64_t t = 0; t < tiles_; ++t) {
          first_.push_back(static_cast<int64_t>(seg_.size()));
          const int64_t p0 = t * cols_, end = p0 + width(t);
          for (int64_t q = p0, i = p0 / p.ow, j = p0 % p.ow; q < end; ++i, j = 0) {
            const int64_t stop = std::min(p.ow, j + end - q), ih = i * p.sh - p.ph + a * p.dh;
            const bool row_in = ih >= 0 && ih < p.h;
            const int64_t lo = row_in ? std::clamp(in.lo, j, stop) : stop, hi = row_in ? std::clamp(in.hi, lo, stop) : stop;
            seg_.push_back({q - p0, lo < hi ? ih * p.w + lo * p.sw + off : 0, lo - j, hi - lo, stop - hi});
            q += stop - j;
          }
        }
      }
    first_.push_back(static_cast<int64_t>(seg_.size()));
  }

  int64_t tiles() const { return tiles_; }
  int64_t first(int64_t t) const { return t * cols_; }
  int64_t width(int64_t t) const { return std::min(cols_, p_.oh * p_.ow - t * cols_); }

  // col (crs x width(t), row stride ld) from the cg planes at x, rows of the
  // (ci, a) pairs [u0, u1). Each row is written in order and in whole vectors
  // (copy_over): up to a vector past its end, which is the start of what is
  // gathered next or, for the last, must be room (ld >= width(t) + kPad).
  template <class T>
  void gather(const T* x, int64_t t, T* col, int64_t ld, int64_t u0, int64_t u1) const {
    const ConvParams& p = p_;
    const bool shifted = p.sh == 1 && p.sw == 1 && p.ow == p.w;
    for (int64_t u = u0; u < u1; ++u) {
      const T* plane = x + u / p.r * p.h * p.w;
      const int64_t a = u % p.r;
      for (int64_t b = 0; b < p.s; ++b) {
        T* dst = col + (u * p.s + b) * ld;
        if (shifted) {
          shifted_row(p, plane, a, b * p.dw - p.pw, first(t), width(t), dst);
          continue;
        }
        for (const Segment *s = begin(a, b, t), *stop = end(a, b, t); s != stop; ++s) {
          T* d = dst + s->dst;
          fill_zero_over(d, s->zeros_before);
          copy_over(d + s->zeros_before, plane + s->src, s->len, p.sw);
          fill_zero_over(d + s->zeros_before + s->len, s->zeros_after);
        }
      }
    }
  }

  // gather of every (ci, a) pair, split over the threads when asked.
  template <class T>
  void gather_all(const T* x, int64_t t, T* col, int64_t ld, bool split) const {
    const int64_t units = p_.c / p_.groups * p_.r;
    if (!split) return gather(x, t, col, ld, 0, units);
#pragma omp parallel for num_threads(threads_for(units * p_.s * width(t))) schedule(static)
    for (int64_t u = 0; u < units; ++u) gather(x, t, col, ld, u, u + 1);
  }

  // The transpose of gather: the cg planes at dx += col scattered back, (ci, a) pairs [u0, u1).
  template <class T>
  void scatter(const T* col, int64_t t, T* dx, int64_t u0, int64_t u1) const {
    const ConvParams& p = p_;
    const int64_t ld = width(t);
    for (int64_t u = u0; u < u1; ++u) {
      T* plane = dx + u / p.r * p.h * p.w;
      const int64_t a = u % p.r;
      for (int64_t b = 0; b < p.s; ++b) {
        const T* src = col + (u * p.s + b) * ld;
        for (const Segment *s = begin(a, b, t), *stop = end(a, b, t); s != stop; ++s)
          add_strided(plane + s->src, src + s->dst + s->zeros_before, s->len, p.sw);
      }
    }
  }

 private:
  struct Segment {
    int64_t dst, src, zeros_before, len, zeros_after;
  };
  const Segment* begin(int64_t a, int64_t b, int64_t t) const { return seg_.data() + first_[(a * p_.s + b) * tiles_ + t]; }
  const Segment* end(int64_t a, int64_t b, int64_t t) const { return seg_.data() + first_[(a * p_.s + b) * tiles_ + t + 1]; }

  const ConvParams& p_;
  int64_t cols_, tiles_;
  std::vector<Segment> seg_;
  std::vector<int64_t> first_;  // tap-major: segments of (a, b, t) from first_[(a * s + b) * tiles + t]
};

template <class T>
std::vector<PackedMatrix<T>> pack_groups(const ConvParams& p, const Geometry& g, const T* w, bool transposed) {
  std::vector<PackedMatrix<T>> out;
  for (int64_t gi = 0; gi < p.groups; ++gi) {
    const T* wg = w + gi * g.kg * g.crs;
    out.push_back(transposed ? pack_a<T>(g.crs, g.kg, wg, g.crs, true) : pack_a<T>(g.kg, g.crs, wg, g.crs, false));
  }
  return out;
}

// Images per tile: with small planes (LeNet's 10x10 outputs) a tile holds the
// im2col matrices of several whole images side by side, so that one GEMM with
// n = images * positions replaces several with n = positions (a ragged last
// micro-kernel strip each, and a call each): (16, 800, 150) runs at 91 GFLOP/s
// on one core, (16, 100, 150) at 56. Shape-only (thread-count free), and at
// least about kChunks blocks of images are left for the threads.
int64_t images_per_tile(const Geometry& g, int64_t n, int64_t budget, int64_t elem) {
  const int64_t fit = budget / std::max<int64_t>(1, g.crs * elem) / std::max<int64_t>(1, g.pos);
  return fit < 2 ? 1 : std::max<int64_t>(1, std::min(fit, (n + kChunks - 1) / kChunks));
}

template <class T>
void forward_gemm(const ConvParams& p, const T* x, const T* w, const T* b, T* y) {
  const Geometry g = geometry(p);
  const bool direct = pointwise(p);
  const int64_t imgs = images_per_tile(g, p.n, kTileBytes, sizeof(T));
  const Im2col im(p, direct || imgs > 1 ? g.pos : tile_cols(g.crs, g.pos, kTileBytes, sizeof(T)));
  const auto wp = pack_groups(p, g, w, false);
  const GemmBias<T> none{};
  if (imgs > 1) {  // item: images [n0, n0 + imgs) of a group, into out (kg x imgs * pos), then copied to y
    const int64_t blocks = (p.n + imgs - 1) / imgs, ld = imgs * g.pos + Vec<T>::width;  // room: Im2col::gather
    run_items<T>(blocks * p.groups, (g.crs + g.kg) * ld, [&](int64_t it, T* col, bool split) {
      const int64_t gi = it % p.groups, n0 = it / p.groups * imgs, count = std::min(imgs, p.n - n0);
      T* out = col + g.crs * ld;
      for (int64_t i = 0; i < count; ++i) im.gather_all(x + ((n0 + i) * p.c + gi * g.cg) * g.hw, 0, col + i * g.pos, ld, split);
      GemmParams gp;
      gp.m = g.kg, gp.n = count * g.pos, gp.k = g.crs, gp.ldb = ld, gp.ldc = ld;
      gemm<T>(gp, wp[gi], col, out, b ? GemmBias<T>{nullptr, b + gi * g.kg} : none);
      for (int64_t i = 0; i < count; ++i)
        for (int64_t kk = 0; kk < g.kg; ++kk)
          copy_strided(y + ((n0 + i) * p.k + gi * g.kg + kk) * g.pos, out + kk * ld + i * g.pos, g.pos, int64_t(1));
    });
    return;
  }
  const int64_t tiles = im.tiles();
  const int64_t pad = Vec<T>::width;  // room past each col row: Im2col::gather
  run_items<T>(p.n * p.groups * tiles, direct ? 0 : g.crs * (im.width(0) + pad), [&](int64_t it, T* col, bool split) {
    const int64_t t = it % tiles, gi = it / tiles % p.groups, n = it / tiles / p.groups;
    const int64_t p0 = im.first(t), nc = im.width(t);
    const T* xg = x + (n * p.c + gi * g.cg) * g.hw;
    GemmParams gp;
    gp.m = g.kg, gp.n = nc, gp.k = g.crs, gp.ldb = direct ? g.hw : nc + pad, gp.ldc = g.pos;
    if (!direct) im.gather_all(xg, t, col, nc + pad, split);
    gemm<T>(gp, wp[gi], direct ? xg + p0 : col, y + (n * p.k + gi * g.kg) * g.pos + p0,
            b ? GemmBias<T>{nullptr, b + gi * g.kg} : none);
  });
}

// Whether the direct kernels (conv_direct.cpp) suit p: thin groups, one input
// channel (depthwise) or at most kDirectOutputs output channels, with output
// rows that fill at least half of their vectors; and a plane buffer not much
// larger than the planes (huge strides or dilations make it so).
template <class T>
bool use_direct(const ConvParams& p) {
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups;
  const bool thin = cg == 1 || (kg <= kDirectOutputs && 2 * p.ow >= round_up(p.ow, Vec<T>::width));
  return thin && plane_buffer_compact(p);
}

template <class T>
void forward(const ConvParams& p, const T* x, const T* w, const T* b, T* y) {
  if (p.n == 0) return;
  if (use_direct<T>(p)) return direct_forward(p, x, w, b, y);
  if (winograd_suits<T>(p)) return winograd_forward(p, x, w, b, y);
  if (channels_suit<T>(p)) return channels_forward(p, x, w, b, y);
  if (implicit_suits<T>(p)) return implicit_forward(p, x, w, b, y);
  forward_gemm(p, x, w, b, y);
}

template <class T>
void backward_data(const ConvParams& p, const T* dy, const T* w, T* dx) {
  if (p.n == 0) return;
  const Geometry g = geometry(p);
  const int64_t rs = p.r * p.s;
  if (p.sh == 1 && p.sw == 1) {  // the forward convolution of dy, see the top
    ConvParams q = p;
    q.c = p.k, q.h = p.oh, q.w = p.ow, q.k = p.c, q.oh = p.h, q.ow = p.w;
    q.ph = p.dh * (p.r - 1) - p.ph, q.pw = p.dw * (p.s - 1) - p.pw;
    std::vector<T> wt(static_cast<size_t>(p.k * g.crs));  // (c, kg, r, s), taps reversed
    for (int64_t gi = 0; gi < p.groups; ++gi)
      for (int64_t kk = 0; kk < g.kg; ++kk)
        for (int64_t ci = 0; ci < g.cg; ++ci) {
          const T* from = w + ((gi * g.kg + kk) * g.cg + ci) * rs;
          T* to = wt.data() + ((gi * g.cg + ci) * g.kg + kk) * rs;
          for (int64_t t = 0; t < rs; ++t) to[rs - 1 - t] = from[t];
        }
    return forward(q, dy, wt.data(), static_cast<const T*>(nullptr), dx);
  }
  if (use_direct<T>(p)) return direct_backward_data(p, dy, w, dx);
  if (implicit_suits_data<T>(p)) return implicit_backward_data(p, dy, w, dx);
  // Per (image, group): dx_g = 0, then per tile col = W_g^T dY_g (crs x cols) and col2im.
  // The tiles of an image overlap in dx, so an item is a whole image and group.
  const int64_t cols = tile_cols(g.crs, g.pos, kTileBytes, sizeof(T));
  const Im2col im(p, cols);
  const auto wt = pack_groups(p, g, w, true);
  run_items<T>(p.n * p.groups, g.crs * cols, [&](int64_t it, T* col, bool split) {
    const int64_t gi = it % p.groups, n = it / p.groups;
    T* dxg = dx + (n * p.c + gi * g.cg) * g.hw;
    const T* dyg = dy + (n * p.k + gi * g.kg) * g.pos;
    std::fill(dxg, dxg + g.cg * g.hw, T(0));
    for (int64_t t = 0; t < im.tiles(); ++t) {
      const int64_t nc = im.width(t);
      GemmParams gp;
      gp.m = g.crs, gp.n = nc, gp.k = g.kg, gp.ldb = g.pos, gp.ldc = nc;
      gemm<T>(gp, wt[gi], dyg + im.first(t), col);
      if (!split) {
        im.scatter(col, t, dxg, 0, g.cg * p.r);
        continue;
      }
#pragma omp parallel for num_threads(threads_for(g.crs * nc)) schedule(static)
      for (int64_t ci = 0; ci < g.cg; ++ci) im.scatter(col, t, dxg, ci * p.r, (ci + 1) * p.r);
    }
  });
}

// db[kk] = sum of dy[., kk, ., .]: threads over channels, each a fixed order.
template <class T>
void bias_grad(const ConvParams& p, const T* dy, T* db) {
  using V = Vec<T>;
  const int64_t pos = p.oh * p.ow;
#pragma omp parallel for num_threads(threads_for(p.n * p.k * pos)) schedule(static)
  for (int64_t kk = 0; kk < p.k; ++kk) {
    V acc[4] = {V(T(0)), V(T(0)), V(T(0)), V(T(0))};
    for (int64_t n = 0; n < p.n; ++n) {
      const T* d = dy + (n * p.k + kk) * pos;
      int64_t j = 0;
      for (; j + 4 * V::width <= pos; j += 4 * V::width)
        for (int u = 0; u < 4; ++u) acc[u] = acc[u] + V::load(d + j + u * V::width);
      for (; j < pos; j += V::width) acc[0] = acc[0] + V::load(d + j, pos - j);
    }
    db[kk] = reduce_add((acc[0] + acc[1]) + (acc[2] + acc[3]));
  }
}

template <class T>
void backward_weight_gemm(const ConvParams& p, const T* dy, const T* x, T* dw) {
  const Geometry g = geometry(p);
  const int64_t imgs = images_per_tile(g, p.n, kTileBytes, sizeof(T));
  const bool direct = pointwise(p) && imgs == 1;  // B is x itself
  const Im2col im(p, direct || imgs > 1 ? g.pos : tile_cols(g.crs, g.pos, kWeightTileBytes, sizeof(T)));
  const int64_t pad = Vec<T>::width, wsize = p.k * g.crs, ld = imgs * g.pos + pad;  // pad: Im2col::gather
  const int64_t col_size = imgs > 1 ? (g.crs + g.kg) * ld : direct ? 0 : g.crs * (im.width(0) + pad);
  // dW_g (kg x crs) += dY_g (kg x cols) * col^T (cols x crs) for images [n0, n1) of
  // every group, into out (written by the first product when `first`). Batched:
  // `imgs` images at a time, their dY_g gathered next to each other too.
  auto images = [&](int64_t n0, int64_t n1, T* out, bool first, T* col, bool split) {
    for (int64_t gi = 0; gi < p.groups; ++gi) {
      bool write = first;
      for (int64_t n = n0; n < n1; n += imgs > 1 ? imgs : 1)
        for (int64_t t = 0; t < im.tiles(); ++t) {
          const int64_t count = std::min(imgs, n1 - n), nc = imgs > 1 ? count * g.pos : im.width(t);
          const T* xg = x + (n * p.c + gi * g.cg) * g.hw;
          const T* a = dy + (n * p.k + gi * g.kg) * g.pos + im.first(t);
          GemmParams gp;
          gp.m = g.kg, gp.n = g.crs, gp.k = nc, gp.lda = g.pos, gp.ldb = direct ? g.hw : nc + pad, gp.ldc = g.crs;
          gp.trans_b = true;
          gp.beta = write ? 0.0 : 1.0;
          write = false;
          if (imgs > 1) {
            T* dyb = col + g.crs * ld;
            for (int64_t i = 0; i < count; ++i) {
              im.gather_all(xg + i * p.c * g.hw, 0, col + i * g.pos, nc + pad, split);
              for (int64_t kk = 0; kk < g.kg; ++kk) copy_strided(dyb + kk * nc + i * g.pos, a + (i * p.k + kk) * g.pos, g.pos, int64_t(1));
            }
            a = dyb, gp.lda = nc;
          } else if (!direct) {
            im.gather_all(xg, t, col, nc + pad, split);
          }
          gemm<T>(gp, a, direct ? xg + im.first(t) : col, out + gi * g.kg * g.crs);
        }
    }
  };
  const int64_t chunks = std::min(p.n, kChunks);
  if (chunks < 2 || double(chunks - 1) * double(wsize) * sizeof(T) > double(kPartialBytes))
    return images(0, p.n, dw, true, scratch<T>(2, col_size), true);
  // Chunk ch sums images [n0, n1) into dw (chunk 0) or its partial, then dw += partials in order.
  T* parts = scratch<T>(3, (chunks - 1) * wsize);
  run_items<T>(chunks, col_size, [&](int64_t ch, T* col, bool split) {
    images(p.n * ch / chunks, p.n * (ch + 1) / chunks, ch == 0 ? dw : parts + (ch - 1) * wsize, true, col, split);
  });
  using V = Vec<T>;
  const int64_t block = 1024;
#pragma omp parallel for num_threads(threads_for(chunks * wsize)) schedule(static)
  for (int64_t e0 = 0; e0 < wsize; e0 += block)
    for (int64_t e = e0; e < std::min(wsize, e0 + block); e += V::width) {
      const int64_t left = wsize - e;
      V sum = V::load(dw + e, left);
      for (int64_t ch = 1; ch < chunks; ++ch) sum = sum + V::load(parts + (ch - 1) * wsize + e, left);
      sum.store(dw + e, left);
    }
}

template <class T>
void backward_weight(const ConvParams& p, const T* dy, const T* x, T* dw, T* db) {
  if (db) bias_grad(p, dy, db);
  if (!dw) return;
  if (p.n == 0) return std::fill(dw, dw + p.k * (p.c / p.groups) * p.r * p.s, T(0));
  if (use_direct<T>(p)) return direct_backward_weight(p, dy, x, dw);
  if (winograd_suits<T>(p)) return winograd_backward_weight(p, dy, x, dw);
  if (channels_suit_weight<T>(p)) return channels_backward_weight(p, dy, x, dw);
  if (implicit_suits_weight<T>(p)) return implicit_backward_weight(p, dy, x, dw);
  backward_weight_gemm(p, dy, x, dw);
}

}  // namespace

DK_DEFINE_TABLE(ConvKernels, conv, forward<T>, backward_data<T>, backward_weight<T>)

}  // namespace dk::cpu::DK_ISA_NS
