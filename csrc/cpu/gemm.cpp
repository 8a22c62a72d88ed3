// The GEMM driver: C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C + bias.
//
// Loops around the micro-kernel of gemm_kernel.h, BLIS-style:
//   for k0 over k by KC:                  K blocks of equal size (no thin last one)
//     pack the A block (all m x KC)       shared by the threads
//     for each C tile (th x tw), dynamic: threads take the next tile when done
//       for ic over the tile by MC:       A block (MC x KC): L2
//         for jr over the tile by NR:     B strip (KC x NR): L1/L2, reused by every ir
//           for ir by MR:                 micro-kernel, C tile in registers
// B stored k-major (not trans_b) is read in place when a tile's rows are one
// A block or B's rows lie close together (b_in_place()): its strips are
// already NR contiguous values per k row, and the kernel prefetches the rows
// of the strips ahead (rows ldb apart defeat the TLB and the prefetchers).
// Measured on Zen 4, one core: as fast as packing for square sizes, faster for
// small m, where packing B costs as much as the multiply ((64, 1024, 384): 107
// against 92 GFLOP/s; (6, 50176, 25) is a pure stream through B). A taller
// tile sweeps each strip once per A block, and when B's rows are 2 KiB or
// more apart (a page every row or two) packing the block once pays on Zen 5
// (full-width AVX-512: twice Zen 4's FMA throughput per core, so the strided
// reads show). 2 Zen 5 cores, old and new alternating in one process, medians
// of 31: 2048^3 269 -> 435 GFLOP/s, 1024^3 1.04x, (256, 1024, 1024) 1.17x, an
// LSTM's dx (800, 512, 2048) 1.13x and dw (1024, 512, 1600, A transposed)
// 1.06x per thread; LSTM T=50 forward + backward at (32, 512, 512)
// 1.005-1.026x; conv's (64, 32768, 576) unchanged (one A block). Rows closer
// together stay read in place: packing them made (5000, 64, 256) 1-2% and a
// 1x1 conv's forward + backward ((32, 256, 14, 14), 64 filters) 1-5% slower.
// With AVX2 (GemmBlocking::b_in_place) B is always packed: a 16-float strip
// row is one cache line, and on Zen 3 reading it in place ran at half the
// packed speed (2048^3, one core: 30 against 66 GFLOP/s).
// B stored n-major (trans_b, linear's weight) is packed by in-register
// transposes, per tile and K block, or per strip right before use when the
// tile has one A block.
// KC = 768, above the usual 256-384, because each K block is a pass over C and
// the A block and B strip still share the 1 MiB L2: 3-5% at 1024^3 and 2048^3.
// Threads: tiles are handed out dynamically (about four per thread), so a
// thread that the OS preempts holds up one tile, not half of C; the A block is
// packed once for all of them, and all tiles finish a K block before the next
// starts. Each tile running through all its K blocks instead (no barrier
// between blocks) measured 1-2% slower at (2048, 512, 1600) and (1600, 512,
// 2048) on 2 Zen 3 cores: two threads sweeping the same A block out of L3 at
// once is worth more than the barriers. Each C element is computed by the same
// operations in the same order whatever the tile and thread counts, so results
// are bit-identical for any number of threads. m == 1 or n == 1 streams the
// matrix instead (gemm_gemv.h).
#include "cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>

#include "cpu/gemm_gemv.h"
#include "cpu/gemm_kernel.h"
#include "cpu/gemm_pack.h"
#include "cpu/gemm_sum.h"

namespace dk::cpu::DK_ISA_NS {
namespace {

template <class T>
struct Blk : GemmBlocking<T> {
  static constexpr int64_t nr = GemmBlocking<T>::nv * Vec<T>::width;
};

// B read in place is prefetched two strips ahead of use (see micro_kernel).
constexpr int64_t kPrefetchStrips = 2;
// Below this many multiply-adds per thread, a second thread costs more than it saves.
constexpr double kMinFmasPerThread = double(1 << 19);
// Tiles per thread: enough that a late or preempted thread leaves little tail.
constexpr int64_t kTilesPerThread = 4;
// Strips packed per work item (gemm's A blocks, and pack()). A transposed A
// is read in runs of kPackGroup * MR values, rows ldA apart: 16 against 8, 2
// Zen 3 cores, medians of 15 interleaved: the weight gradient dA^T x of an
// LSTM (2048, 512, 1600) 4.6% faster, (1600, 2048, 512) trans_b 2% faster,
// eight other shapes (squares, conv shapes) within 1%.
constexpr int64_t kPackGroup = 16;
// Bytes of the shared packed A buffer: bounds the band of rows packed at once.
constexpr int64_t kSharedABytes = int64_t(16) << 20;

// op(X) seen as (strip dimension x k): (r, kk) at raw[kk * ld + r] when
// strip_contiguous, else raw[r * ld + kk]; or a PackedMatrix.
template <class T>
struct Source {
  const T* raw = nullptr;
  int64_t ld = 0;
  bool strip_contiguous = false;
  const PackedMatrix<T>* packed = nullptr;

  // The panels of strips [r0, r0 + rows) x k [k0, k0 + kc): strip s at
  // result + s * kc * panel. Packs into buf unless already packed.
  const T* block(int64_t r0, int64_t rows, int64_t k0, int64_t kc, int64_t panel, T* buf) const {
    if (packed) return packed->data.get() + k0 * round_up(packed->rows, panel) + r0 * kc;
    if (strip_contiguous) {
      pack_strips_copy(raw + k0 * ld + r0, ld, rows, kc, buf, panel);
      return buf;
    }
    for (int64_t s = 0; s * panel < rows; ++s)
      pack_strip_transpose(raw + (r0 + s * panel) * ld + k0, ld, std::min(panel, rows - s * panel), kc,
                           buf + s * kc * panel, panel);
    return buf;
  }
};

// B rows at least this far apart put a strip's k rows on a page every row or
// two: read in place by several A blocks, a TLB miss each time, so packed.
constexpr int64_t kPackBStrideBytes = 2048;

// Whether B, stored k-major and not pre-packed, is read in place by tiles of
// th rows (see the top of the file).
template <class T>
bool b_in_place(const Source<T>& b, int64_t th) {
  return !b.packed && b.strip_contiguous && Blk<T>::b_in_place &&
         (th <= Blk<T>::mc || b.ld * int64_t(sizeof(T)) < kPackBStrideBytes);
}

// One gemm call: operands, the K blocking and the tiling of C.
template <class T>
struct Job {
  const GemmParams& p;
  Source<T> a, b;
  T* c;
  GemmBias<T> bias;
  int64_t kc_full, band;  // K block; rows of A packed at a time (a multiple of MR)
  int64_t th, tw, tiles_m, tiles;  // tiles of a band: th x tw, tiles_m down, tiles in all
};

// Tile t of the band of rows [m0, m0 + band), K block [k0, k0 + kc); ablk: the
// band's A block packed, the strip of row r at ablk + (r - m0) * kc.
template <class T>
void gemm_tile(const Job<T>& j, int64_t m0, int64_t t, int64_t k0, int64_t kc, const T* ablk) {
  using B = Blk<T>;
  constexpr int64_t MR = B::mr, NR = B::nr;
  const GemmParams& p = j.p;
  const Source<T>& b = j.b;
  const int64_t r0 = m0 + t % j.tiles_m * j.th, r1 = std::min({p.m, m0 + j.band, r0 + j.th});
  if (r0 >= r1) return;
  const int64_t c0 = t / j.tiles_m * j.tw, c1 = std::min(p.n, c0 + j.tw), tw = c1 - c0;
  const bool direct_b = b_in_place(b, j.th);
  // With a single A block, a B strip packed right before use is still in L1/L2
  // (a linear layer at batch 64, one core: 80 -> 88 GFLOP/s against packing the block).
  // Not for plain B (packed with AVX2, or for taller tiles): its strip is kc
  // runs ldb apart, a TLB miss each, where the block is read row by row ((32,
  // 2048, 1024), 2 Zen 3 cores: 43 -> 64 GFLOP/s, medians).
  const bool strip_b = !b.packed && !b.strip_contiguous && r1 - r0 <= B::mc;
  // strip_b packs into a ring of kEdgeRing strips, so that edge rows can take
  // several at once (edge_strips) as they do from a packed block: the 2 rows
  // left of 32 ran one strip at half speed. LSTM / GRU cell forward at (32,
  // 512, 512), 2 Zen 3 cores, medians: 1.004 -> 0.970 ms, 0.769 -> 0.741 ms.
  constexpr int64_t kEdgeRing = edge_strips<T>(1);
  T* bbuf = scratch<T>(1, (direct_b ? NR : strip_b ? kEdgeRing * NR : round_up(tw, NR)) * kc);
  const T* bblk = nullptr;
  if (b.packed || (!direct_b && !strip_b)) bblk = b.block(c0, tw, k0, kc, NR, bbuf);
  const int64_t full = tw / NR * NR;  // direct_b: strips at or past this are ragged, packed
  const T* ragged = direct_b && full < tw ? b.block(c0 + full, tw - full, k0, kc, NR, bbuf) : nullptr;

  Epilogue<T> e{T(p.alpha), k0 == 0 ? T(p.beta) : T(1)};
  for (int64_t ic = r0; ic < r1; ic += B::mc) {
    const int64_t mc = std::min(B::mc, r1 - ic);
    for (int64_t jr = 0; jr < tw; jr += NR) {
      const int64_t nn = std::min(NR, tw - jr);
      const T* bs;
      int64_t b_step = NR, b_prefetch = 0;
      if (bblk) {
        bs = bblk + jr * kc;
      } else if (!direct_b) {
        bs = b.block(c0 + jr, nn, k0, kc, NR, bbuf + jr / NR % kEdgeRing * NR * kc);
      } else if (jr < full) {
        bs = b.raw + k0 * b.ld + c0 + jr;
        b_step = b.ld;
        b_prefetch = kPrefetchStrips * NR;
      } else {
        bs = ragged;
      }
      for (int64_t ir = ic; ir < ic + mc; ir += MR) {
        const int64_t rows = std::min(MR, ic + mc - ir);
        // A few edge rows take several strips of a packed B block (or of the
        // ring) at once (edge_strips): the columns [j0, jr + nn), when the
        // group's last strip comes.
        int64_t j0 = jr;
        if (const int64_t group = bblk || strip_b ? edge_strips<T>(rows) : 1; group > 1) {
          if (jr / NR % group != group - 1 && jr + NR < tw) continue;
          j0 -= jr / NR % group * NR;
        }
        const int64_t cols = jr + nn - j0;
        if (k0 == 0) {
          e.col = j.bias.col ? j.bias.col + c0 + j0 : nullptr;
          e.row = j.bias.row ? j.bias.row + ir : nullptr;
        }
        pick_kernel<T>(rows, cols)(kc, ablk + (ir - m0) * kc, bs - (jr - j0) * kc, b_step, kc * NR, b_prefetch,
                                   j.c + ir * p.ldc + c0 + j0, p.ldc, cols, e);
      }
    }
  }
}

// k == 0 or alpha == 0: C = beta * C + bias, A and B unread.
template <class T>
void scale_c(const GemmParams& p, T* c, const GemmBias<T>& bias) {
  using V = Vec<T>;
  const V beta(T(p.beta));
  for (int64_t i = 0; i < p.m; ++i) {
    T* cr = c + i * p.ldc;
    const V row(bias.row ? bias.row[i] : T(0));
    for (int64_t j = 0; j < p.n; j += V::width) {
      int64_t n = p.n - j;
      V r = p.beta != 0.0 ? V::load(cr + j, n) * beta : V(T(0));
      if (bias.col) r = r + V::load(bias.col + j, n);
      (r + row).store(cr + j, n);
    }
  }
}

// Whether x (if packed) was packed by this ISA for this side and shape.
template <class T>
bool fits(const PackedMatrix<T>* x, bool is_b, int64_t rows, int64_t depth) {
  using B = Blk<T>;
  return !x || (x->is_b == is_b && x->rows == rows && x->depth == depth && x->panel == (is_b ? B::nr : B::mr) &&
                x->kc == k_block(depth, B::kc));
}

template <class T>
void gemm(const GemmParams& p, GemmOperand<T> a, GemmOperand<T> b, T* c, const GemmBias<T>& bias) {
  using B = Blk<T>;
  if (p.m <= 0 || p.n <= 0) return;
  if (p.k <= 0 || p.alpha == 0.0) return scale_c(p, c, bias);
  if (!fits(a.packed, false, p.m, p.k) || !fits(b.packed, true, p.n, p.k))
    throw std::invalid_argument("[gemm] a packed operand does not match this gemm's shape or this ISA's panels");
  if ((p.m == 1 || p.n == 1) && a.raw && b.raw) return gemv(p, a.raw, b.raw, c, bias);

  const double fmas = double(p.m) * double(p.n) * double(p.k);  // may exceed int64
  // Called from inside a parallel region (conv's loop over images), the caller
  // has already spread the work over the threads: this call runs on one.
  const int nt = omp_in_parallel() ? 1
                                   : static_cast<int>(std::max(1.0, std::min<double>(get_num_threads(),
                                                                                     fmas / kMinFmasPerThread)));
  const int64_t kc_full = k_block(p.k, B::kc);
  // A is packed a band of rows at a time, so the shared buffer stays bounded
  // (kSharedABytes) whatever m is; a pre-packed A is one band.
  const int64_t band = a.packed ? round_up(p.m, B::mr)
                                : std::min(round_up(p.m, B::mr), std::max<int64_t>(1, kSharedABytes / int64_t(sizeof(T)) / kc_full / B::mr) * B::mr);
  // Tiles of a band: columns first (splitting n repeats no packing when B is
  // read in place), rows as well only when n has too few strips; at most NC
  // columns, which bounds a packed B block (KC x tw).
  const int64_t mu = band / B::mr, nu = (p.n + B::nr - 1) / B::nr;
  const int64_t want = nt == 1 ? 1 : kTilesPerThread * nt;
  const int64_t tn = std::min(nu, want), tm = std::min(mu, (want + tn - 1) / tn);
  const int64_t th = (mu + tm - 1) / tm * B::mr, tw = std::min(B::nc, (nu + tn - 1) / tn * B::nr);
  const int64_t tiles_m = (band + th - 1) / th;
  const Job<T> j{p, Source<T>{a.raw, p.lda, p.trans_a, a.packed}, Source<T>{b.raw, p.ldb, !p.trans_b, b.packed},
                 c, bias, kc_full, band, th, tw, tiles_m, tiles_m * ((p.n + tw - 1) / tw)};
  T* abuf = a.packed ? nullptr : scratch<T>(0, band * kc_full);
  const int64_t bsize = (b_in_place(j.b, th) ? B::nr
                            : std::max(round_up(tw, B::nr), edge_strips<T>(1) * B::nr)) * kc_full;

  std::atomic<bool> no_memory{false};
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    // Every thread's B buffer, before any work: an exception must not leave
    // the parallel region, and all threads must meet the same barriers.
    try {
      scratch<T>(1, bsize);
    } catch (const std::bad_alloc&) {
      no_memory = true;
    }
#pragma omp barrier
    for (int64_t m0 = 0; m0 < p.m && !no_memory; m0 += band) {
      const int64_t rows = std::min(band, p.m - m0), groups = (rows + kPackGroup * B::mr - 1) / (kPackGroup * B::mr);
      for (int64_t k0 = 0; k0 < p.k; k0 += kc_full) {
        const int64_t kc = std::min(kc_full, p.k - k0);
        if (!a.packed) {
#pragma omp for schedule(dynamic, 1)
          for (int64_t g = 0; g < groups; ++g) {
            const int64_t r0 = g * kPackGroup * B::mr;
            j.a.block(m0 + r0, std::min(kPackGroup * B::mr, rows - r0), k0, kc, B::mr, abuf + r0 * kc);
          }
        }
        const T* ablk = a.packed ? j.a.block(0, p.m, k0, kc, B::mr, nullptr) : abuf;
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t t = 0; t < j.tiles; ++t) gemm_tile(j, m0, t, k0, kc, ablk);
        if (k0 + kc < p.k || m0 + band < p.m) {  // the next pass adds to these tiles or repacks A
#pragma omp barrier
        }
      }
    }
  }
  if (no_memory) throw std::bad_alloc();
}

template <class T>
void pack(PackedMatrix<T>& out, bool is_b, int64_t rows, int64_t depth, const T* src, int64_t ld, bool trans) {
  using B = Blk<T>;
  out.is_b = is_b;
  out.rows = rows;
  out.depth = depth;
  out.panel = is_b ? B::nr : B::mr;
  out.kc = depth > 0 ? k_block(depth, B::kc) : 0;
  const int64_t padded = round_up(rows, out.panel);
  if (depth > 0 && padded > INT64_MAX / int64_t(sizeof(T)) / depth) throw std::bad_alloc();
  const int64_t total = std::max<int64_t>(1, padded * depth);
  // (!out.data: a moved-from matrix keeps its capacity, not its storage)
  if (!out.data || out.capacity < total) {
    out.data.reset();  // not both at once
    out.capacity = 0;
    out.data.reset(static_cast<T*>(aligned_bytes(static_cast<size_t>(total) * sizeof(T))));
    if (!out.data) throw std::bad_alloc();
    out.capacity = total;
  }
  const Source<T> s{src, ld, is_b ? !trans : trans, nullptr};
  // kPackGroup strips per work item: a k-major source is then read in runs of
  // kPackGroup panels, not one (an LSTM's w_hh (2048, 512) for dh = dA w_hh,
  // 2 Zen 3 cores, medians of 41 interleaved: 0.97 -> 0.70 ms with 8).
  const int64_t width = kPackGroup * out.panel, groups = (padded + width - 1) / width;
  const int64_t blocks = depth > 0 ? (depth + out.kc - 1) / out.kc : 0;
  // Called inside a parallel region (an RNN's weight gradients, each thread packing its rows): one thread, as gemm.
  const int nt = omp_in_parallel() ? 1
                                   : static_cast<int>(std::min<int64_t>(get_num_threads(),
                                                                        std::max<int64_t>(1, padded * depth >> 16)));
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int64_t t = 0; t < groups * blocks; ++t) {
    int64_t k0 = t / groups * out.kc, kc = std::min(out.kc, depth - k0), r0 = t % groups * width;
    s.block(r0, std::min(width, rows - r0), k0, kc, out.panel, out.data.get() + k0 * padded + r0 * kc);
  }
}

}  // namespace

DK_DEFINE_TABLE(GemmKernels, gemm, gemm<T>, pack<T>, sum_rows<T>, fma_peak_gflops<T>)

}  // namespace dk::cpu::DK_ISA_NS
