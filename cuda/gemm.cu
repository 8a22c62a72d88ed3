// CUDA GEMM: C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C, all
// row-major with row strides lda / ldb / ldc (GemmParams, as the CPU engine).
//
// One kernel template, three tile shapes:
//   float  128 x 128 x 8, 256 threads, an 8 x 8 micro-tile per thread (FMA);
//   float   64 x 64 x 8 for grids with fewer than kSmallGrid 128-tiles (small
//           m * n, as conv's per-group products): 4x the blocks, so the GPU fills;
//   double  64 x 64 x 8, a 4 x 4 micro-tile (doubles take twice the registers);
//   tf32   128 x 128 x 8 (opt-in, float): the tiles go through the tensor cores,
//           mma.sync m16n8k8 tf32, 8 warps of 64 x 32 each.
// Each k step of 8, op(A)'s (bm x 8) and op(B)'s (8 x bn) tiles are staged in
// shared memory k-major (S[kk][i]), so a thread's micro-tile operands are
// contiguous vectors. Double-buffered: the next k tile is loaded into registers
// while the current one is multiplied, then stored to the other buffer; one
// barrier per k tile. Global loads walk along the stored contiguous dimension
// (k for A, n for B, or the other way round when transposed), one 16-byte (8 for
// the small float tile) vector per thread, when the operand's base is aligned
// and its ld a multiple of the vector; otherwise, and for vectors crossing the
// matrix edge, element by element with zeros past the edge, so any m, n, k and
// ld work. The micro-tile's rows (and columns) are two halves bm / 2 apart, so
// the threads of a warp read consecutive shared vectors: no bank conflicts.
// Every C element is a k-ordered sum in one thread: results do not depend on
// the grid. beta == 0 never reads C; k == 0 or alpha == 0 scale C only.
#include "cuda/gemm.h"

#include <cuda_runtime.h>

#include <type_traits>

#include "cuda/launch.h"

namespace dk::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kBk = 8;
constexpr int64_t kSmallGrid = 128;  // 128-tiles under which the float 64-tile kernel is used
constexpr int kMaxGridY = 65535;     // gridDim.y's limit: the kernel loops over further row tiles

// BM = BN: the block tile; TM = TN: the micro-tile; VEC: elements per global
// vector load, BM * 8 / 256 (each thread loads one vector per operand and k
// tile); PAD: shared row padding (tf32: 8, so fragment reads hit 32 banks).
template <class T, int BM_, int TM_, int PAD_, bool TF32_>
struct Tile {
  static constexpr int BM = BM_, TM = TM_, HM = TM_ / 2, PAD = PAD_, VEC = BM_ * kBk / kThreads;
  static constexpr bool TF32 = TF32_;
  static_assert(TF32_ || (BM_ / TM_) * (BM_ / TM_) == kThreads, "one micro-tile per thread");
  static_assert(VEC >= 1 && kBk % VEC == 0 && BM_ % VEC == 0, "whole vectors per tile row");
};
using FloatTile = Tile<float, 128, 8, 4, false>;
using FloatSmallTile = Tile<float, 64, 4, 2, false>;
using DoubleTile = Tile<double, 64, 4, 2, false>;
using Tf32Tile = Tile<float, 128, 8, 8, true>;

// N contiguous T as one memory access (N * sizeof(T) bytes, aligned to it).
template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// op(X) of one operand: element (mn, kk) (mn a row of op(A) or a column of
// op(B)) is at p[kk * ld + mn] when mn_contiguous, else p[mn * ld + kk].
template <class T>
struct Operand {
  const T* p;
  int64_t ld, extent;  // extent: m or n
  bool mn_contiguous, aligned;
};

// Rounds a float to TF32 (10 mantissa bits, to nearest, ties away), the
// tensor-core input, kept as a float bit pattern.
__device__ __forceinline__ float to_tf32(float x) {
  uint32_t u;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(u) : "f"(x));
  return __uint_as_float(u);
}

// The thread's vector of op's (BM x 8) tile at (mn0, k0), into r.
template <class T, class Cfg>
__device__ __forceinline__ void load_tile(const Operand<T>& op, int64_t mn0, int64_t k0, int64_t k, T (&r)[Cfg::VEC]) {
  constexpr int V = Cfg::VEC;
  const int t = threadIdx.x;
  // The vector runs along the contiguous dimension; limit_c: its elements left in the matrix.
  int64_t mn, kk, limit_c;
  if (op.mn_contiguous) {
    mn = mn0 + (t % (Cfg::BM / V)) * V, kk = k0 + t / (Cfg::BM / V), limit_c = op.extent - mn;
  } else {
    mn = mn0 + t / (kBk / V), kk = k0 + (t % (kBk / V)) * V, limit_c = k - kk;
  }
  const bool row_in = op.mn_contiguous ? kk < k : mn < op.extent;
  const T* src = op.mn_contiguous ? op.p + kk * op.ld + mn : op.p + mn * op.ld + kk;
  if (op.aligned && row_in && limit_c >= V) {
    const Pack<T, V> v = *reinterpret_cast<const Pack<T, V>*>(src);
#pragma unroll
    for (int i = 0; i < V; ++i) r[i] = v.v[i];
    return;
  }
#pragma unroll
  for (int i = 0; i < V; ++i) {
    r[i] = row_in && i < limit_c ? src[i] : T(0);
  }
}

// r (from load_tile) into the shared tile s[kk][mn].
template <class T, class Cfg>
__device__ __forceinline__ void store_tile(const Operand<T>& op, const T (&r)[Cfg::VEC], T (*s)[Cfg::BM + Cfg::PAD]) {
  constexpr int V = Cfg::VEC;
  const int t = threadIdx.x;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    T v = r[i];
    if constexpr (Cfg::TF32) v = to_tf32(v);
    if (op.mn_contiguous)
      s[t / (Cfg::BM / V)][(t % (Cfg::BM / V)) * V + i] = v;
    else
      s[(t % (kBk / V)) * V + i][t / (kBk / V)] = v;
  }
}

template <class T>
__device__ __forceinline__ void write_c(T* c, int64_t ldc, int64_t m, int64_t n, int64_t i, int64_t j, T acc, T alpha,
                                        T beta) {
  if (i < m && j < n) {
    T* dst = c + i * ldc + j;
    *dst = beta == T(0) ? alpha * acc : alpha * acc + beta * *dst;  // beta == 0: C is write-only
  }
}

// The FMA micro-tile: thread (ty, tx) owns rows h * BM / 2 + ty * HM + v and
// the same pattern of columns (h < 2, v < HM).
template <class T, class Cfg>
struct FmaTile {
  T acc[Cfg::TM][Cfg::TM];
  __device__ void zero() {
#pragma unroll
    for (int i = 0; i < Cfg::TM; ++i)
#pragma unroll
      for (int j = 0; j < Cfg::TM; ++j) acc[i][j] = T(0);
  }
  __device__ void multiply(const T (*as)[Cfg::BM + Cfg::PAD], const T (*bs)[Cfg::BM + Cfg::PAD]) {
    constexpr int HM = Cfg::HM, TM = Cfg::TM, HALF = Cfg::BM / 2, LANES = Cfg::BM / Cfg::TM;
    const int ty = threadIdx.x / LANES, tx = threadIdx.x % LANES;
#pragma unroll
    for (int kk = 0; kk < kBk; ++kk) {
      T a[TM], b[TM];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const Pack<T, HM> va = *reinterpret_cast<const Pack<T, HM>*>(&as[kk][h * HALF + ty * HM]);
        const Pack<T, HM> vb = *reinterpret_cast<const Pack<T, HM>*>(&bs[kk][h * HALF + tx * HM]);
#pragma unroll
        for (int v = 0; v < HM; ++v) a[h * HM + v] = va.v[v], b[h * HM + v] = vb.v[v];
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TM; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
  }
  __device__ void store(T* c, int64_t ldc, int64_t m, int64_t n, int64_t m0, int64_t n0, T alpha, T beta) const {
    constexpr int HM = Cfg::HM, TM = Cfg::TM, HALF = Cfg::BM / 2, LANES = Cfg::BM / Cfg::TM;
    const int ty = threadIdx.x / LANES, tx = threadIdx.x % LANES;
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TM; ++j)
        write_c(c, ldc, m, n, m0 + (i / HM) * HALF + ty * HM + i % HM, n0 + (j / HM) * HALF + tx * HM + j % HM,
                acc[i][j], alpha, beta);
  }
};

// The tensor-core tile (float only): warp w computes rows (w / 4) * 64 + [0, 64)
// and columns (w % 4) * 32 + [0, 32) as 4 x 4 m16n8k8 products. Fragment
// layouts (PTX ISA, mma.m16n8k8 .tf32), g = lane / 4, q = lane % 4:
//   A a0 (g, q) a1 (g + 8, q) a2 (g, q + 4) a3 (g + 8, q + 4);
//   B b0 (k q, col g) b1 (k q + 4, col g);  C c0 (g, 2q) c1 (g, 2q + 1) c2 (g + 8, 2q) c3 (g + 8, 2q + 1).
template <class Cfg>
struct MmaTile {
  static_assert(Cfg::BM == 128 && Cfg::TM == 8 && Cfg::HM == 4, "8 warps of 64 x 32: 8 x 8 accumulators a thread");
  float acc[4][4][4];
  __device__ void zero() {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;
  }
  __device__ void multiply(const float (*as)[Cfg::BM + Cfg::PAD], const float (*bs)[Cfg::BM + Cfg::PAD]) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
    const int wm = (warp / 4) * 64, wn = (warp % 4) * 32;
#pragma unroll
    for (int k8 = 0; k8 < kBk; k8 += 8) {
      uint32_t a[4][4], b[4][2];
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
        const int row = wm + mt * 16 + g;
        a[mt][0] = __float_as_uint(as[k8 + q][row]);
        a[mt][1] = __float_as_uint(as[k8 + q][row + 8]);
        a[mt][2] = __float_as_uint(as[k8 + q + 4][row]);
        a[mt][3] = __float_as_uint(as[k8 + q + 4][row + 8]);
      }
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int col = wn + nt * 8 + g;
        b[nt][0] = __float_as_uint(bs[k8 + q][col]);
        b[nt][1] = __float_as_uint(bs[k8 + q + 4][col]);
      }
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
          float* d = acc[mt][nt];
          asm volatile(
              "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
              "{%0, %1, %2, %3};\n"
              : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
              : "r"(a[mt][0]), "r"(a[mt][1]), "r"(a[mt][2]), "r"(a[mt][3]), "r"(b[nt][0]), "r"(b[nt][1]));
        }
    }
  }
  __device__ void store(float* c, int64_t ldc, int64_t m, int64_t n, int64_t m0, int64_t n0, float alpha,
                        float beta) const {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
    const int64_t wm = m0 + (warp / 4) * 64, wn = n0 + (warp % 4) * 32;
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r)
          write_c(c, ldc, m, n, wm + mt * 16 + g + (r / 2) * 8, wn + nt * 8 + 2 * q + (r % 2), acc[mt][nt][r], alpha,
                  beta);
  }
};

template <class T, class Cfg>
using Accumulator = std::conditional_t<Cfg::TF32, MmaTile<Cfg>, FmaTile<T, Cfg>>;

// Block (x, y) computes C's tile (y, x), and then tiles y + gridDim.y, ...
template <class T, class Cfg>
__global__ void __launch_bounds__(kThreads) gemm_kernel(Operand<T> a, Operand<T> b, T* c, int64_t ldc, int64_t k,
                                                        T alpha, T beta) {
  __shared__ __align__(16) T as[2][kBk][Cfg::BM + Cfg::PAD];
  __shared__ __align__(16) T bs[2][kBk][Cfg::BM + Cfg::PAD];
  const int64_t m = a.extent, n = b.extent, n0 = static_cast<int64_t>(blockIdx.x) * Cfg::BM;
  const int64_t tiles_m = (m + Cfg::BM - 1) / Cfg::BM, tiles_k = (k + kBk - 1) / kBk;
  Accumulator<T, Cfg> acc;
  T ra[Cfg::VEC], rb[Cfg::VEC];
  for (int64_t tm = blockIdx.y; tm < tiles_m; tm += gridDim.y) {
    const int64_t m0 = tm * Cfg::BM;
    acc.zero();
    load_tile<T, Cfg>(a, m0, 0, k, ra);
    load_tile<T, Cfg>(b, n0, 0, k, rb);
    store_tile<T, Cfg>(a, ra, as[0]);
    store_tile<T, Cfg>(b, rb, bs[0]);
    __syncthreads();
    for (int64_t kt = 0; kt < tiles_k; ++kt) {
      const int buf = static_cast<int>(kt & 1);
      const bool more = kt + 1 < tiles_k;
      if (more) {  // in flight while the current tile is multiplied
        load_tile<T, Cfg>(a, m0, (kt + 1) * kBk, k, ra);
        load_tile<T, Cfg>(b, n0, (kt + 1) * kBk, k, rb);
      }
      acc.multiply(as[buf], bs[buf]);
      if (more) {  // the other buffer was last read before the previous barrier
        store_tile<T, Cfg>(a, ra, as[buf ^ 1]);
        store_tile<T, Cfg>(b, rb, bs[buf ^ 1]);
      }
      __syncthreads();
    }
    acc.store(c, ldc, m, n, m0, n0, alpha, beta);
  }
}

// C = beta * C (beta == 0: zeros, C not read): the k == 0 and alpha == 0 cases.
template <class T>
__global__ void scale_kernel(int64_t m, int64_t n, T* c, int64_t ldc, T beta) {
  for (int64_t e = first_index(); e < m * n; e += grid_stride()) {
    T* dst = c + (e / n) * ldc + e % n;
    *dst = beta == T(0) ? T(0) : beta * *dst;
  }
}

template <class T>
Operand<T> operand(const T* p, int64_t ld, int64_t extent, bool mn_contiguous, int vec) {
  const bool aligned = reinterpret_cast<std::uintptr_t>(p) % (sizeof(T) * vec) == 0 && ld % vec == 0;
  return {p, ld, extent, mn_contiguous, aligned};
}

template <class T, class Cfg>
void launch(const GemmParams& p, const T* a, const T* b, T* c, cudaStream_t stream) {
  // A (m x k) stored row-major is contiguous along k; transposed, along m. B (k x n) the other way round.
  const Operand<T> oa = operand(a, p.lda, p.m, p.trans_a, Cfg::VEC);
  const Operand<T> ob = operand(b, p.ldb, p.n, !p.trans_b, Cfg::VEC);
  const int64_t tiles_n = (p.n + Cfg::BM - 1) / Cfg::BM, tiles_m = (p.m + Cfg::BM - 1) / Cfg::BM;
  const dim3 grid(static_cast<unsigned>(tiles_n), static_cast<unsigned>(std::min<int64_t>(tiles_m, kMaxGridY)));
  gemm_kernel<T, Cfg><<<grid, kThreads, 0, stream>>>(oa, ob, c, p.ldc, p.k, T(p.alpha), T(p.beta));
}

}  // namespace

template <class T>
void gemm(const GemmParams& p, const T* a, const T* b, T* c, std::uintptr_t stream, bool tf32) {
  const char* op = "gemm";
  if (p.m == 0 || p.n == 0) return;
  if (p.k == 0 || p.alpha == 0.0) {  // A and B are not read, as BLAS
    DeviceGuard guard(op, device_of(op, {c}));
    scale_kernel<T><<<grid_for(p.m * p.n, kThreads), kThreads, 0, as_stream(stream)>>>(p.m, p.n, c, p.ldc, T(p.beta));
    check_launch(op);
    return;
  }
  DeviceGuard guard(op, device_of(op, {a, b, c}));
  const int64_t big_tiles = ((p.m + 127) / 128) * ((p.n + 127) / 128);
  if constexpr (std::is_same_v<T, float>) {
    if (tf32)
      launch<T, Tf32Tile>(p, a, b, c, as_stream(stream));
    else if (big_tiles < kSmallGrid)
      launch<T, FloatSmallTile>(p, a, b, c, as_stream(stream));
    else
      launch<T, FloatTile>(p, a, b, c, as_stream(stream));
  } else {
    (void)tf32, (void)big_tiles;  // double: always the exact FMA path
    launch<T, DoubleTile>(p, a, b, c, as_stream(stream));
  }
  check_launch(op);
}

// c[i][j] = v[j]: a bias broadcast over the rows, before a gemm with beta = 1.
template <class T>
__global__ void broadcast_rows_kernel(int64_t m, int64_t n, const T* v, T* c, int64_t ldc) {
  for (int64_t e = first_index(); e < m * n; e += grid_stride()) c[(e / n) * ldc + e % n] = v[e % n];
}

template <class T>
void broadcast_rows(int64_t m, int64_t n, const T* v, T* c, int64_t ldc, std::uintptr_t stream) {
  const char* op = "gemm";
  if (m == 0 || n == 0) return;
  DeviceGuard guard(op, device_of(op, {v, c}));
  broadcast_rows_kernel<T><<<grid_for(m * n, kThreads), kThreads, 0, as_stream(stream)>>>(m, n, v, c, ldc);
  check_launch(op);
}

// out[j] = sum_i x[i][j]: a block of 32 columns x 8 row phases; phase y sums
// rows y, y + 8, ... in order, then the 8 partials are added in order: a fixed
// order, no atomics. Adjacent threads read adjacent columns (coalesced).
template <class T>
__global__ void sum_rows_kernel(int64_t m, int64_t n, const T* x, T* out) {
  __shared__ T part[8][32];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  T s = T(0);
  if (j < n)
    for (int64_t i = threadIdx.y; i < m; i += 8) s += x[i * n + j];
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < n) {
    T total = part[0][threadIdx.x];
    for (int y = 1; y < 8; ++y) total += part[y][threadIdx.x];
    out[j] = total;
  }
}

template <class T>
void sum_rows(int64_t m, int64_t n, const T* x, T* out, std::uintptr_t stream) {
  const char* op = "linear_backward";
  if (n == 0) return;
  DeviceGuard guard(op, device_of(op, m > 0 ? std::initializer_list<const void*>{x, out}
                                            : std::initializer_list<const void*>{out}));
  sum_rows_kernel<T><<<static_cast<unsigned>((n + 31) / 32), dim3(32, 8), 0, as_stream(stream)>>>(m, n, x, out);
  check_launch(op);
}

#define DK_INSTANTIATE(T)                                                                       \
  template void gemm<T>(const GemmParams&, const T*, const T*, T*, std::uintptr_t, bool);       \
  template void broadcast_rows<T>(int64_t, int64_t, const T*, T*, int64_t, std::uintptr_t);     \
  template void sum_rows<T>(int64_t, int64_t, const T*, T*, std::uintptr_t);
DK_INSTANTIATE(float)
DK_INSTANTIATE(double)
#undef DK_INSTANTIATE

}  // namespace dk::cuda
