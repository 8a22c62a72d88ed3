// CUDA batch norm over x (n, c, inner): per-channel statistics over the
// m = n * inner values of each channel; per-element math and the merge of
// partial statistics from core/batchnorm_math.h, shared with the CPU kernels.
//
// Training forward, three launches:
//   1. partial statistics: each channel's m values are cut into `parts` pieces
//      (a function of the shape alone). inner > 1: one block per (channel,
//      piece), each thread runs Welford over its strided values in double, then
//      the block merges its threads' (count, mean, M2) with Chan's rule in a
//      fixed tree order. inner == 1 ((N, C) inputs): one thread per (channel,
//      piece of rows), adjacent threads on adjacent channels, so row reads are
//      coalesced. Welford, not sums of squares: no cancellation when |mean| >> std.
//   2. one thread per channel merges the pieces in order: mean, invstd, the
//      running-statistics update (unbiased variance), per-channel coefficients.
//   3. y = (x - mean) * scale + shift elementwise.
// Backward: the same pieces sum dy and dy * (x - mean) in double, one thread per
// channel turns them into dweight, dbias and bn_backward's coefficients, then dx
// elementwise. No atomics anywhere: every run gives the same bits.
// Eval: the coefficients come from the running statistics; step 3 only.
#include "cuda/batchnorm.h"

#include <cuda_runtime.h>

#include "core/batchnorm_math.h"
#include "cuda/buffer.cuh"
#include "cuda/launch.h"

namespace dk::cuda {
namespace {

constexpr int kBlock = 256;          // a power of two: the merge tree halves it
constexpr int64_t kPiece = 16384;    // values of a channel per block piece (inner > 1)
constexpr int64_t kMaxParts = 1024;  // pieces per channel at most
constexpr int64_t kRowsPerThread = 64;   // rows per column piece (inner == 1)
constexpr int64_t kColumnThreads = 1 << 16;  // column pieces in all, at most (when rows allow)

// Pieces per channel: enough blocks for the GPU, few enough partials to merge fast.
int64_t pieces(const BatchNormParams& p) {
  const int64_t m = p.n * p.inner;
  int64_t parts;
  if (p.inner == 1) {
    const int64_t cap = kColumnThreads / (p.c > 0 ? p.c : 1);
    parts = (p.n + kRowsPerThread - 1) / kRowsPerThread;
    if (parts > cap) parts = cap;
  } else {
    parts = (m + kPiece - 1) / kPiece;
    if (parts > kMaxParts) parts = kMaxParts;
  }
  return parts < 1 ? 1 : parts;
}

struct BnSums {
  double dy = 0, dy_xmu = 0;  // sum dy, sum dy * (x - mean)
};

// The accumulators: add(acc, i, c) takes element i of channel c; merge combines two.
template <class T>
struct MomentsOp {
  using Acc = BnMoments;
  const T* x;
  __device__ void add(BnMoments& a, int64_t i, int64_t) const {  // Welford
    const double v = double(x[i]);
    a.n += 1.0;
    const double d = v - a.mean;
    a.mean += d / a.n;
    a.m2 += d * (v - a.mean);
  }
  __device__ static void merge(BnMoments& a, const BnMoments& b) { bn_merge(a, b); }
};

template <class T>
struct SumsOp {
  using Acc = BnSums;
  const T *dy, *x, *mean;
  __device__ void add(BnSums& a, int64_t i, int64_t c) const {
    const double g = double(dy[i]);
    a.dy += g;
    a.dy_xmu += g * (double(x[i]) - double(mean[c]));
  }
  __device__ static void merge(BnSums& a, const BnSums& b) {
    a.dy += b.dy;
    a.dy_xmu += b.dy_xmu;
  }
};

// inner > 1: block b is piece b % parts of channel b / parts; element k of a
// channel (k < m) is x[((k / inner) * C + ch) * inner + k % inner]. Each thread
// steps k by blockDim.x, carrying (k / inner, k % inner) without dividing.
template <class Op>
__global__ void block_pieces_kernel(int64_t C, int64_t L, int64_t m, int64_t parts, Op op,
                                    typename Op::Acc* partial) {
  using Acc = typename Op::Acc;
  __shared__ alignas(Acc) unsigned char raw[kBlock * sizeof(Acc)];  // raw: __shared__ takes no constructors
  Acc* shared = reinterpret_cast<Acc*>(raw);
  const int64_t dn = blockDim.x / L, dl = blockDim.x % L;
  for (int64_t b = blockIdx.x; b < C * parts; b += gridDim.x) {
    const int64_t ch = b / parts, q = b % parts;
    const int64_t k1 = m * (q + 1) / parts;
    int64_t k = m * q / parts + threadIdx.x, n = k / L, l = k % L;
    Acc a{};
    for (; k < k1; k += blockDim.x) {
      op.add(a, (n * C + ch) * L + l, ch);
      n += dn;
      l += dl;
      if (l >= L) l -= L, ++n;
    }
    shared[threadIdx.x] = a;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {  // fixed tree: the same merge order on every run
      if (threadIdx.x < s) Op::merge(shared[threadIdx.x], shared[threadIdx.x + s]);
      __syncthreads();
    }
    if (threadIdx.x == 0) partial[b] = shared[0];
    __syncthreads();  // shared[0] is read before the next piece overwrites it
  }
}

// inner == 1: thread t is piece t / C of channel t % C, rows [n q / parts, n (q + 1) / parts).
template <class Op>
__global__ void column_pieces_kernel(int64_t N, int64_t C, int64_t parts, Op op, typename Op::Acc* partial) {
  using Acc = typename Op::Acc;
  for (int64_t t = first_index(); t < C * parts; t += grid_stride()) {
    const int64_t ch = t % C, q = t / C;
    Acc a{};
    for (int64_t r = N * q / parts, end = N * (q + 1) / parts; r < end; ++r) op.add(a, r * C + ch, ch);
    partial[ch * parts + q] = a;
  }
}

// The pieces of every channel into partial (C * parts, channel-major).
template <class Op>
void reduce_pieces(const BatchNormParams& p, int64_t parts, const Op& op, typename Op::Acc* partial,
                   cudaStream_t s) {
  if (p.inner == 1)
    column_pieces_kernel<<<grid_for(p.c * parts, kBlock), kBlock, 0, s>>>(p.n, p.c, parts, op, partial);
  else
    block_pieces_kernel<<<grid_for(p.c * parts, 1), kBlock, 0, s>>>(p.c, p.inner, p.n * p.inner, parts, op,
                                                                     partial);
}

// Per-channel coefficients of the elementwise passes, in scratch: cf[i] is the
// i-th array of C values; forward (mean, scale, shift), backward (mean, mean_dy, k, scale).
template <class T>
struct Coef {
  T* a;
  int64_t c;
  __device__ T* operator[](int i) const { return a + i * c; }
};

// One channel's forward coefficients and saved statistics.
template <class T>
__device__ void set_channel(int64_t ch, double mean, double invstd, const T* weight, const T* bias, T* save_mean,
                            T* save_invstd, Coef<T> cf) {
  save_mean[ch] = cf[0][ch] = T(mean);
  save_invstd[ch] = T(invstd);
  cf[1][ch] = T(invstd * (weight ? double(weight[ch]) : 1.0));
  cf[2][ch] = bias ? bias[ch] : T(0);
}

template <class T>
__global__ void train_finish_kernel(int64_t C, int64_t parts, double m, double eps, double momentum,
                                    const BnMoments* partial, const T* weight, const T* bias, T* running_mean,
                                    T* running_var, T* save_mean, T* save_invstd, Coef<T> cf) {
  for (int64_t ch = first_index(); ch < C; ch += grid_stride()) {
    BnMoments s = partial[ch * parts];
    for (int64_t q = 1; q < parts; ++q) bn_merge(s, partial[ch * parts + q]);
    set_channel(ch, s.mean, bn_invstd(s.m2 / m, eps), weight, bias, save_mean, save_invstd, cf);
    if (running_mean) {
      running_mean[ch] = T(bn_running(double(running_mean[ch]), s.mean, momentum));
      running_var[ch] = T(bn_running(double(running_var[ch]), s.m2 / (m - 1.0), momentum));
    }
  }
}

template <class T>
__global__ void eval_finish_kernel(int64_t C, double eps, const T* weight, const T* bias, const T* running_mean,
                                   const T* running_var, T* save_mean, T* save_invstd, Coef<T> cf) {
  for (int64_t ch = first_index(); ch < C; ch += grid_stride())
    set_channel(ch, double(running_mean[ch]), bn_invstd(double(running_var[ch]), eps), weight, bias, save_mean,
                save_invstd, cf);
}

template <class T>
__global__ void backward_finish_kernel(int64_t C, int64_t parts, double m, bool training, const BnSums* partial,
                                       const T* weight, const T* save_mean, const T* save_invstd, T* dweight,
                                       T* dbias, Coef<T> cf) {
  for (int64_t ch = first_index(); ch < C; ch += grid_stride()) {
    BnSums s = partial[ch * parts];
    for (int64_t q = 1; q < parts; ++q) SumsOp<T>::merge(s, partial[ch * parts + q]);
    const BnBackCoef k = bn_backward_coef(s.dy, s.dy_xmu, double(save_invstd[ch]),
                                          weight ? double(weight[ch]) : 1.0, m, training);
    if (dbias) dbias[ch] = T(k.dbias);
    if (dweight) dweight[ch] = T(k.dweight);
    cf[0][ch] = save_mean[ch];
    cf[1][ch] = T(k.mean_dy);
    cf[2][ch] = T(k.k);
    cf[3][ch] = T(k.scale);
  }
}

// ---- elementwise passes: f(i, channel) over every element ----------------------------

template <class T>
struct NormalizeOp {
  const T* x;
  T* y;
  Coef<T> cf;
  __device__ void operator()(int64_t i, int64_t ch) const { y[i] = bn_forward(x[i], cf[0][ch], cf[1][ch], cf[2][ch]); }
};

template <class T>
struct BackwardOp {
  const T *dy, *x;
  T* dx;
  Coef<T> cf;
  __device__ void operator()(int64_t i, int64_t ch) const {
    dx[i] = bn_backward(dy[i], x[i], cf[0][ch], cf[1][ch], cf[2][ch], cf[3][ch]);
  }
};

// inner == 1: element i is channel i % C.
template <class F>
__global__ void rows_apply_kernel(int64_t total, int64_t C, F f) {
  for (int64_t i = first_index(); i < total; i += grid_stride()) f(i, i % C);
}

// inner > 1: one block per (n, c) segment of `inner` contiguous values (grid-stride
// over segments), so the channel costs one division per segment, not per element.
template <class F>
__global__ void segments_apply_kernel(int64_t segments, int64_t C, int64_t L, F f) {
  for (int64_t seg = blockIdx.x; seg < segments; seg += gridDim.x) {
    const int64_t ch = seg % C, base = seg * L;
    for (int64_t l = threadIdx.x; l < L; l += blockDim.x) f(base + l, ch);
  }
}

template <class F>
void apply(const BatchNormParams& p, const F& f, cudaStream_t s) {
  if (p.inner == 1) {
    rows_apply_kernel<<<grid_for(p.n * p.c, kBlock), kBlock, 0, s>>>(p.n * p.c, p.c, f);
  } else {
    const int threads = p.inner >= 256 ? 256 : p.inner >= 128 ? 128 : p.inner >= 64 ? 64 : 32;
    segments_apply_kernel<<<grid_for(p.n * p.c, 1), threads, 0, s>>>(p.n * p.c, p.c, p.inner, f);
  }
}

void clear(const char* op, void* p, size_t bytes, cudaStream_t s) {
  if (!p || bytes == 0) return;
  cudaError_t err = cudaMemsetAsync(p, 0, bytes, s);  // all-zero bits are 0.0
  if (err != cudaSuccess) cuda_fail(op, "cannot clear an output", err);
}

}  // namespace

template <class T>
void batchnorm_forward(const BatchNormParams& p, const T* x, const T* weight, const T* bias, T* running_mean,
                       T* running_var, T* y, T* save_mean, T* save_invstd, std::uintptr_t stream) {
  const char* op = "batch_norm";
  if (p.c == 0) return;
  DeviceGuard guard(op, device_of_present(op, {x, weight, bias, running_mean, running_var, y, save_mean,
                                               save_invstd}));
  cudaStream_t s = as_stream(stream);
  const int64_t m = p.n * p.inner;
  if (p.training && m == 0) {  // an empty batch: zero statistics, running ones untouched
    clear(op, save_mean, p.c * sizeof(T), s);
    clear(op, save_invstd, p.c * sizeof(T), s);
    return;
  }
  Scratch coef(op, 3 * p.c * sizeof(T), s);
  const Coef<T> cf{coef.as<T>(), p.c};
  const unsigned channel_grid = grid_for(p.c, kBlock);
  if (p.training) {
    const int64_t parts = pieces(p);
    Scratch partial(op, p.c * parts * sizeof(BnMoments), s);
    reduce_pieces(p, parts, MomentsOp<T>{x}, partial.as<BnMoments>(), s);
    train_finish_kernel<T><<<channel_grid, kBlock, 0, s>>>(p.c, parts, double(m), p.eps, p.momentum,
                                                           partial.as<BnMoments>(), weight, bias, running_mean,
                                                           running_var, save_mean, save_invstd, cf);
  } else {
    eval_finish_kernel<T><<<channel_grid, kBlock, 0, s>>>(p.c, p.eps, weight, bias, running_mean, running_var,
                                                          save_mean, save_invstd, cf);
  }
  if (m > 0) apply(p, NormalizeOp<T>{x, y, cf}, s);
  check_launch(op);
}

template <class T>
void batchnorm_backward(const BatchNormParams& p, const T* dy, const T* x, const T* weight, const T* save_mean,
                        const T* save_invstd, T* dx, T* dweight, T* dbias, std::uintptr_t stream) {
  const char* op = "batch_norm_backward";
  if (p.c == 0) return;
  DeviceGuard guard(op, device_of_present(op, {dy, x, weight, save_mean, save_invstd, dx, dweight, dbias}));
  cudaStream_t s = as_stream(stream);
  const int64_t m = p.n * p.inner;
  if (m == 0) {
    clear(op, dweight, p.c * sizeof(T), s);
    clear(op, dbias, p.c * sizeof(T), s);
    return;
  }
  const int64_t parts = pieces(p);
  Scratch partial(op, p.c * parts * sizeof(BnSums), s), coef(op, 4 * p.c * sizeof(T), s);
  const Coef<T> cf{coef.as<T>(), p.c};
  reduce_pieces(p, parts, SumsOp<T>{dy, x, save_mean}, partial.as<BnSums>(), s);
  backward_finish_kernel<T><<<grid_for(p.c, kBlock), kBlock, 0, s>>>(
      p.c, parts, double(m), p.training, partial.as<BnSums>(), weight, save_mean, save_invstd, dweight, dbias, cf);
  apply(p, BackwardOp<T>{dy, x, dx, cf}, s);
  check_launch(op);
}

#define DK_INSTANTIATE(T)                                                                                \
  template void batchnorm_forward<T>(const BatchNormParams&, const T*, const T*, const T*, T*, T*, T*, T*, \
                                     T*, std::uintptr_t);                                                \
  template void batchnorm_backward<T>(const BatchNormParams&, const T*, const T*, const T*, const T*,     \
                                      const T*, T*, T*, T*, std::uintptr_t);
DK_INSTANTIATE(float)
DK_INSTANTIATE(double)
#undef DK_INSTANTIATE

}  // namespace dk::cuda
