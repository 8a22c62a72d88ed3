// Winograd F(2x2, 3x3) forward convolution (conv.cpp picks it for 3x3, stride 1,
// no dilation, no groups, at least kMinChannels channels in and out: ResNet's
// and VGG's 3x3 layers, and through conv.cpp their backward data).
//
// Each 2x2 block of outputs ("tile") of output channel k is
//   Y = A^T [ sum over c of (G g_kc G^T) . (B^T d_c B) ] A
// with d_c the 4x4 input patch under the tile and `.` the elementwise product:
// 16 multiplies per tile and channel pair where the direct sum takes 36, so the
// GEMMs do 2.25x fewer FLOPs than im2col's. With U_e = (G g G^T)[e] (k x c,
// transformed and packed once per call) and V_e the transformed patches (c x
// tiles), the sum is 16 GEMMs M_e = U_e V_e; the input (B^T d B) and output
// (A^T M A) transforms are adds only. F(4x4, 3x3) would save 4x, but its
// transforms carry factors up to 8 that cost float32 about two digits.
// Work items: blocks of whole tile rows of one image (about kTilesPerBlock
// tiles: V and M of a block, 16 x (c + k) x tiles, stay within L2/L3 and each
// GEMM has n = tiles), run as conv.cpp's run_items (threads over items, or
// within one); blocks depend on the shape alone, so results do not depend on
// the thread count. Transforms run over a row of tiles at once: the patches of
// consecutive tiles overlap by two columns, so column j of every tile's patch
// is one stride-2 load (load_even) from a zero-padded copy of the input row.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "cpu/conv_common.h"
#include "cpu/gemm.h"
#include "cpu/parallel.h"

namespace dk::cpu::DK_ISA_NS {
namespace {

constexpr int64_t kTilesPerBlock = 128;
constexpr int64_t kMinChannels = 32;

// Tiles th x tw of the output; blocks of `rows` tile rows (tiles <= rows * tw), `blocks` per image.
struct Blocking {
  int64_t th, tw, rows, blocks;
  int64_t tiles() const { return rows * tw; }
};

Blocking blocking(const ConvParams& p) {
  Blocking bk{(p.oh + 1) / 2, (p.ow + 1) / 2, 1, 1};
  const int64_t want = std::max<int64_t>(1, (kTilesPerBlock + bk.tw - 1) / bk.tw);
  bk.blocks = (bk.th + want - 1) / want;
  bk.rows = (bk.th + bk.blocks - 1) / bk.blocks;
  return bk;
}

// Elements of a padded input row (2 * tw + 2 columns) with room for the loads.
int64_t row_len(const Blocking& bk, int64_t width) { return 2 * bk.tw + 2 + 2 * width; }

// v[e * estride + t] = (B^T d B)[e] for the patches d of tile rows [ty0, ty1) of
// plane x (h, w); t = (ty - ty0) * tw + tx. rows: 4 padded rows of scratch.
template <class T>
void input_tiles(const ConvParams& p, const Blocking& bk, const T* x, int64_t ty0, int64_t ty1, T* v,
                 int64_t estride, T* rows) {
  using V = Vec<T>;
  const int64_t len = 2 * bk.tw + 2, step = row_len(bk, V::width);
  const Span in = inside(-p.pw, 1, p.w, len);  // padded column q holds input column q - pw
  for (int64_t ty = ty0; ty < ty1; ++ty) {
    for (int64_t i = 0; i < 4; ++i) {
      T* d = rows + i * step;
      const int64_t r = 2 * ty - p.ph + i;
      if (r < 0 || r >= p.h || in.lo >= in.hi) {
        fill_zero(d, len);
        continue;
      }
      fill_zero(d, in.lo);
      copy_strided(d + in.lo, x + r * p.w + in.lo - p.pw, in.hi - in.lo, int64_t(1));
      fill_zero(d + in.hi, len - in.hi);
    }
    for (int64_t tx = 0; tx < bk.tw; tx += V::width) {
      const int64_t n = std::min<int64_t>(V::width, bk.tw - tx);
      V d[4][4], t[4][4];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) d[i][j] = load_even(rows + i * step + 2 * tx + j, n);
      for (int j = 0; j < 4; ++j) {  // B^T d
        t[0][j] = d[0][j] - d[2][j];
        t[1][j] = d[1][j] + d[2][j];
        t[2][j] = d[2][j] - d[1][j];
        t[3][j] = d[1][j] - d[3][j];
      }
      T* out = v + (ty - ty0) * bk.tw + tx;
      for (int i = 0; i < 4; ++i) {  // (B^T d) B
        (t[i][0] - t[i][2]).store(out + (4 * i + 0) * estride, n);
        (t[i][1] + t[i][2]).store(out + (4 * i + 1) * estride, n);
        (t[i][2] - t[i][1]).store(out + (4 * i + 2) * estride, n);
        (t[i][1] - t[i][3]).store(out + (4 * i + 3) * estride, n);
      }
    }
  }
}

// Output plane y (oh, ow), tile rows [ty0, ty1): A^T M A + bias, M[e] at m[e * estride + t].
template <class T>
void output_tiles(const ConvParams& p, const Blocking& bk, const T* m, int64_t estride, int64_t ty0, int64_t ty1,
                  T bias, T* y) {
  using V = Vec<T>;
  const V vb(bias);
  for (int64_t ty = ty0; ty < ty1; ++ty)
    for (int64_t tx = 0; tx < bk.tw; tx += V::width) {
      const int64_t n = std::min<int64_t>(V::width, bk.tw - tx), cols = std::min(2 * n, p.ow - 2 * tx);
      const T* in = m + (ty - ty0) * bk.tw + tx;
      V s[2][4];
      for (int j = 0; j < 4; ++j) {  // A^T M
        const V m0 = V::load(in + j * estride, n), m1 = V::load(in + (4 + j) * estride, n);
        const V m2 = V::load(in + (8 + j) * estride, n), m3 = V::load(in + (12 + j) * estride, n);
        s[0][j] = m0 + m1 + m2;
        s[1][j] = m1 - m2 - m3;
      }
      for (int u = 0; u < 2 && 2 * ty + u < p.oh; ++u) {  // (A^T M) A, the two columns interleaved
        V lo, hi;
        interleave(s[u][0] + s[u][1] + s[u][2] + vb, s[u][1] - s[u][2] - s[u][3] + vb, lo, hi);
        T* out = y + (2 * ty + u) * p.ow + 2 * tx;
        lo.store(out, cols);
        if (cols > V::width) hi.store(out + V::width, cols - V::width);
      }
    }
}

// d[e * estride + t] = (A dY A^T)[e] for the 2x2 blocks dY of tile rows
// [ty0, ty1) of the gradient plane dy (oh, ow), outputs past oh and ow reading
// as 0; A = (A^T)^T is 4 x 2. rows: 2 zero-padded rows of scratch.
template <class T>
void gradient_tiles(const ConvParams& p, const Blocking& bk, const T* dy, int64_t ty0, int64_t ty1, T* d,
                    int64_t estride, T* rows) {
  using V = Vec<T>;
  const int64_t len = 2 * bk.tw, step = row_len(bk, V::width);
  for (int64_t ty = ty0; ty < ty1; ++ty) {
    for (int64_t u = 0; u < 2; ++u) {
      T* r = rows + u * step;
      if (2 * ty + u >= p.oh) {
        fill_zero(r, len);
        continue;
      }
      copy_strided(r, dy + (2 * ty + u) * p.ow, p.ow, int64_t(1));
      fill_zero(r + p.ow, len - p.ow);
    }
    for (int64_t tx = 0; tx < bk.tw; tx += V::width) {
      const int64_t n = std::min<int64_t>(V::width, bk.tw - tx);
      V z[4][2];  // A dY
      for (int v = 0; v < 2; ++v) {
        const V g0 = load_even(rows + 2 * tx + v, n), g1 = load_even(rows + step + 2 * tx + v, n);
        z[0][v] = g0;
        z[1][v] = g0 + g1;
        z[2][v] = g0 - g1;
        z[3][v] = -g1;
      }
      T* out = d + (ty - ty0) * bk.tw + tx;
      for (int i = 0; i < 4; ++i) {  // (A dY) A^T
        z[i][0].store(out + (4 * i + 0) * estride, n);
        (z[i][0] + z[i][1]).store(out + (4 * i + 1) * estride, n);
        (z[i][0] - z[i][1]).store(out + (4 * i + 2) * estride, n);
        (-z[i][1]).store(out + (4 * i + 3) * estride, n);
      }
    }
  }
}

// U_e = (G g G^T)[e] for every (k, c), packed for the GEMM: 16 (k x c) matrices.
template <class T>
std::vector<PackedMatrix<T>> transformed_weights(const ConvParams& p, const T* w) {
  const int64_t kc = p.k * p.c;
  std::vector<T> u(static_cast<size_t>(16 * kc));
#pragma omp parallel for num_threads(threads_for(16 * kc)) schedule(static)
  for (int64_t e = 0; e < kc; ++e) {
    const T* g = w + e * 9;
    T gg[4][3];  // G g
    for (int j = 0; j < 3; ++j) {
      gg[0][j] = g[j];
      gg[1][j] = T(0.5) * (g[j] + g[3 + j] + g[6 + j]);
      gg[2][j] = T(0.5) * (g[j] - g[3 + j] + g[6 + j]);
      gg[3][j] = g[6 + j];
    }
    for (int i = 0; i < 4; ++i) {  // (G g) G^T
      const T a = gg[i][0], b = gg[i][1], c = gg[i][2];
      const T row[4] = {a, T(0.5) * (a + b + c), T(0.5) * (a - b + c), c};
      for (int j = 0; j < 4; ++j) u[(4 * i + j) * kc + e] = row[j];
    }
  }
  std::vector<PackedMatrix<T>> out;
  for (int64_t e = 0; e < 16; ++e) out.push_back(pack_a<T>(p.k, p.c, u.data() + e * kc, p.c, false));
  return out;
}

}  // namespace

template <class T>
bool winograd_suits(const ConvParams& p) {
  return p.r == 3 && p.s == 3 && p.sh == 1 && p.sw == 1 && p.dh == 1 && p.dw == 1 && p.groups == 1 &&
         p.c >= kMinChannels && p.k >= kMinChannels;
}

template <class T>
void winograd_forward(const ConvParams& p, const T* x, const T* w, const T* b, T* y) {
  using V = Vec<T>;
  const Blocking bk = blocking(p);
  const auto u = transformed_weights(p, w);
  const int64_t ld = bk.tiles(), rows = 4 * row_len(bk, V::width);
  const int threads = get_num_threads();  // row buffers for a split item's threads, read once
  // An item's scratch: V (16 x c x ld), M (16 x k x ld), then 4 padded rows per thread.
  const int64_t vsize = 16 * p.c * ld, msize = 16 * p.k * ld;
  run_items<T>(p.n * bk.blocks, vsize + msize + rows * threads, [&](int64_t it, T* buf, bool split) {
    const int64_t n = it / bk.blocks, ty0 = it % bk.blocks * bk.rows, ty1 = std::min(bk.th, ty0 + bk.rows);
    const int64_t tiles = (ty1 - ty0) * bk.tw;
    T *v = buf, *m = buf + vsize, *rb = buf + vsize + msize;
    const T* xn = x + n * p.c * p.h * p.w;
    T* yn = y + n * p.k * p.oh * p.ow;
#pragma omp parallel for num_threads(split ? threads : 1) schedule(static)
    for (int64_t c = 0; c < p.c; ++c)
      input_tiles(p, bk, xn + c * p.h * p.w, ty0, ty1, v + c * ld, p.c * ld, rb + rows * omp_get_thread_num());
    for (int64_t e = 0; e < 16; ++e) {  // M_e (k x tiles) = U_e (k x c) V_e (c x tiles)
      GemmParams gp;
      gp.m = p.k, gp.n = tiles, gp.k = p.c, gp.ldb = ld, gp.ldc = ld;
      gemm<T>(gp, u[e], v + e * p.c * ld, m + e * p.k * ld);
    }
#pragma omp parallel for num_threads(split ? threads : 1) schedule(static)
    for (int64_t k = 0; k < p.k; ++k)
      output_tiles(p, bk, m + k * ld, p.k * ld, ty0, ty1, b ? b[k] : T(0), yn + k * p.oh * p.ow);
  });
}

// dW = G^T [sum over tiles of (A dY A^T) . (B^T d B)] G per (k, c): the
// forward's U = G g G^T is linear in g and Y = A^T (U . V) A in U. As 16 GEMMs,
// Mw_e (k x c) += D_e (k x tiles) V_e^T, D the transformed gradient blocks;
// the batch is summed in chunks (kChunks, or fewer when their partial Mw would
// pass kPartialBytes: ResNet's 64 x 64 takes 8, VGG's 256 x 256 2), else (one
// chunk) in turn with each block split over the threads.
template <class T>
void winograd_backward_weight(const ConvParams& p, const T* dy, const T* x, T* dw) {
  using V = Vec<T>;
  const Blocking bk = blocking(p);
  const int64_t ld = bk.tiles(), rows = 4 * row_len(bk, V::width), kc = p.k * p.c;
  const int threads = get_num_threads();
  const int64_t vsize = 16 * p.c * ld, dsize = 16 * p.k * ld;
  // Blocks of images [n0, n1) added into mw (16 x k x c; written first when `first`).
  auto images = [&](int64_t n0, int64_t n1, T* mw, bool first, T* buf, bool split) {
    T *v = buf, *d = buf + vsize, *rb = buf + vsize + dsize;
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t blk = 0; blk < bk.blocks; ++blk) {
        const int64_t ty0 = blk * bk.rows, ty1 = std::min(bk.th, ty0 + bk.rows), tiles = (ty1 - ty0) * bk.tw;
#pragma omp parallel for num_threads(split ? threads : 1) schedule(static)
        for (int64_t c = 0; c < p.c + p.k; ++c) {
          T* own = rb + rows * omp_get_thread_num();
          if (c < p.c)
            input_tiles(p, bk, x + (n * p.c + c) * p.h * p.w, ty0, ty1, v + c * ld, p.c * ld, own);
          else
            gradient_tiles(p, bk, dy + (n * p.k + c - p.c) * p.oh * p.ow, ty0, ty1, d + (c - p.c) * ld, p.k * ld,
                           own);
        }
        for (int64_t e = 0; e < 16; ++e) {
          GemmParams gp;  // Mw_e (k x c) += D_e (k x tiles) V_e^T (tiles x c)
          gp.m = p.k, gp.n = p.c, gp.k = tiles, gp.lda = ld, gp.ldb = ld, gp.ldc = p.c;
          gp.trans_b = true;
          gp.beta = first && n == n0 && blk == 0 ? 0.0 : 1.0;
          gemm<T>(gp, d + e * p.k * ld, v + e * p.c * ld, mw + e * kc);
        }
      }
  };
  // kChunks chunks, halved while their partials pass kPartialBytes: VGG's 4 MiB
  // Mw takes 2, which two threads sum independently. Splitting each block's
  // GEMMs over the threads instead (one chunk) costs a fork and a barrier per
  // GEMM: VGG's weight gradient on two cores took 31 to 58 ms from run to run
  // (another process running), with two chunks 33 to 35 ms.
  int64_t chunks = std::min(p.n, kChunks);
  while (chunks > 1 && double(chunks - 1) * 16 * double(kc) * sizeof(T) > double(kPartialBytes)) chunks /= 2;
  const int64_t buf_size = vsize + dsize + rows * threads;
  T* mw = scratch<T>(3, std::max<int64_t>(1, chunks) * 16 * kc);
  if (chunks < 2) {
    images(0, p.n, mw, true, scratch<T>(2, buf_size), true);
  } else {
    run_items<T>(chunks, buf_size, [&](int64_t ch, T* buf, bool split) {
      images(p.n * ch / chunks, p.n * (ch + 1) / chunks, mw + ch * 16 * kc, true, buf, split);
    });
#pragma omp parallel for num_threads(threads_for(chunks * 16 * kc)) schedule(static)
    for (int64_t e = 0; e < 16 * kc; e += V::width) {
      V sum = V::load(mw + e, 16 * kc - e);
      for (int64_t ch = 1; ch < chunks; ++ch) sum = sum + V::load(mw + ch * 16 * kc + e, 16 * kc - e);
      sum.store(mw + e, 16 * kc - e);
    }
  }
#pragma omp parallel for num_threads(threads_for(16 * kc)) schedule(static)
  for (int64_t e = 0; e < kc; ++e) {  // dW = G^T Mw G
    T m[4][4], r[3][4];
    for (int i = 0; i < 16; ++i) m[i / 4][i % 4] = mw[i * kc + e];
    for (int j = 0; j < 4; ++j) {
      r[0][j] = m[0][j] + T(0.5) * (m[1][j] + m[2][j]);
      r[1][j] = T(0.5) * (m[1][j] - m[2][j]);
      r[2][j] = T(0.5) * (m[1][j] + m[2][j]) + m[3][j];
    }
    T* out = dw + e * 9;
    for (int i = 0; i < 3; ++i) {
      out[3 * i + 0] = r[i][0] + T(0.5) * (r[i][1] + r[i][2]);
      out[3 * i + 1] = T(0.5) * (r[i][1] - r[i][2]);
      out[3 * i + 2] = T(0.5) * (r[i][1] + r[i][2]) + r[i][3];
    }
  }
}

template bool winograd_suits<float>(const ConvParams&);
template bool winograd_suits<double>(const ConvParams&);
template void winograd_forward<float>(const ConvParams&, const float*, const float*, const float*, float*);
template void winograd_forward<double>(const ConvParams&, const double*, const double*, const double*, double*);
template void winograd_backward_weight<float>(const ConvParams&, const float*, const float*, float*);
template void winograd_backward_weight<double>(const ConvParams&, const double*, const double*, double*);

}  // namespace dk::cpu::DK_ISA_NS
