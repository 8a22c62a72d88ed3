// CUDA losses, forward and backward: cross_entropy (fused log-softmax + NLL)
// and multi_margin over logits (n, c) and integer labels (n), mse and
// binary_cross_entropy_with_logits over elements; per-element formulas from
// core/loss_math.h, shared with the CPU kernels.
//
// Row losses (cross_entropy, multi_margin): one block per row (grid-stride over
// rows; 32..256 threads to fit the row), the row's max and sums are block
// reductions. Elementwise losses: one thread per element, grid-stride.
// Reductions (mean, sum) are deterministic, with no atomics: per-row losses, or
// per-block partial sums of the element terms (a block count that depends on n
// alone), are written in double to scratch, then one block adds them in a fixed
// order. So a loss has the same bits on every run, on any GPU.
// Labels are checked by first_bad_label before a loss runs: an integer atomicMin
// finds the first bad row, read back to raise the CPU's message.
#include "cuda/loss.h"

#include <cuda_runtime.h>

#include "core/loss_math.h"
#include "cuda/buffer.cuh"
#include "cuda/launch.h"
#include "cuda/reduce.cuh"

namespace dk::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int64_t kMaxPartials = 1024;  // partial sums of an elementwise reduction

// Threads per row block: a warp for short rows, up to kBlock for long ones.
int threads_per_row(int64_t c) { return c <= 32 ? 32 : c <= 64 ? 64 : c <= 128 ? 128 : kBlock; }

// Blocks of an elementwise reduction: a function of n alone, so the partial
// sums, hence the result's bits, are the same on every GPU.
int64_t partial_blocks(int64_t n) {
  const int64_t b = (n + 4 * kBlock - 1) / (4 * kBlock);
  return b < 1 ? 1 : b > kMaxPartials ? kMaxPartials : b;
}

template <class T>
__device__ __forceinline__ T neg_inf() { return -static_cast<T>(INFINITY); }

// The upstream gradient of a reduced loss: dout / count for mean, dout for sum.
template <class T>
__device__ __forceinline__ T reduced_grad(Reduction r, const T* dout, int64_t count) {
  if (r == Reduction::none) return T(0);
  return r == Reduction::mean ? T(double(dout[0]) / double(count)) : dout[0];
}

__global__ void bad_label_kernel(int64_t n, int64_t c, const int64_t* labels, unsigned long long* first) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    if (labels[i] < 0 || labels[i] >= c) atomicMin(first, static_cast<unsigned long long>(i));
}

// out[0] = the sum of count partials (/ divisor for mean), one block, fixed order.
template <class T>
__global__ void finish_kernel(int64_t count, const double* partial, bool mean, double divisor, T* out) {
  __shared__ double shared[32];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  s = block_reduce(s, SumOp(), 0.0, shared);
  if (threadIdx.x == 0) out[0] = T(mean ? s / divisor : s);
}

// ---- elementwise terms ------------------------------------------------------------

template <class T>
struct MseTerm {
  const T *pred, *target;
  __device__ T operator()(int64_t i) const { return mse_term(pred[i], target[i]); }
};

template <class T>
struct BceTerm {
  const T *x, *t, *pos_weight;
  int64_t c;
  __device__ T operator()(int64_t k) const {
    const T l = pos_weight ? bce_pos_coef(pos_weight[k % c], t[k]) : T(1);
    return bce_term(x[k], t[k], l);
  }
};

template <class T, class Term>
__global__ void each_kernel(int64_t n, Term term, T* out) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) out[i] = term(i);
}

template <class Term>
__global__ void partial_sums_kernel(int64_t n, Term term, double* partial) {
  __shared__ double shared[32];
  double s = 0.0;
  for (int64_t i = first_index(); i < n; i += grid_stride()) s += double(term(i));
  s = block_reduce(s, SumOp(), 0.0, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// out = each term (none), or their sum (/ divisor for mean).
template <class T, class Term>
void reduce_terms(const char* op, int64_t n, Term term, Reduction r, double divisor, T* out, cudaStream_t s) {
  if (r == Reduction::none) {
    if (n > 0) each_kernel<T><<<grid_for(n, kBlock), kBlock, 0, s>>>(n, term, out);
    return;
  }
  const int64_t blocks = partial_blocks(n);
  Scratch partial(op, blocks * sizeof(double), s);
  if (n > 0) partial_sums_kernel<<<static_cast<unsigned>(blocks), kBlock, 0, s>>>(n, term, partial.as<double>());
  finish_kernel<T><<<1, kBlock, 0, s>>>(n > 0 ? blocks : 0, partial.as<double>(), r == Reduction::mean, divisor,
                                        out);
}

// ---- row losses ------------------------------------------------------------------------

// Row i's loss to each[i] (none) or rows[i] (reduced, in double for the final sum).
template <class T>
__device__ __forceinline__ void put_row(int64_t i, T v, T* each, double* rows) {
  if (each) each[i] = v;
  else rows[i] = double(v);
}

// The row's max m and sum_exp = sum_j exp(x_j - m), in every thread of the block.
template <class T>
__device__ __forceinline__ void row_max_sum_exp(const T* xr, int64_t c, T* shared, T& m, T& sum_exp) {
  m = neg_inf<T>();
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) m = MaxOp()(m, xr[j]);
  m = block_reduce(m, MaxOp(), neg_inf<T>(), shared);
  T s = T(0);
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) s += exp(xr[j] - m);
  sum_exp = block_reduce(s, SumOp(), T(0), shared);
}

template <class T>
__global__ void cross_entropy_kernel(int64_t n, int64_t c, const T* x, const int64_t* labels, T* each,
                                     double* rows) {
  __shared__ T shared[32];
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const T* xr = x + i * c;
    T m, s;
    row_max_sum_exp(xr, c, shared, m, s);
    if (threadIdx.x == 0) put_row(i, cross_entropy_row(s, m, xr[labels[i]]), each, rows);
  }
}

// dlogits = softmax * g - g at the label.
template <class T>
__global__ void cross_entropy_backward_kernel(int64_t n, int64_t c, Reduction r, const T* x, const int64_t* labels,
                                              const T* dout, T* dx) {
  __shared__ T shared[32];
  const T g_all = reduced_grad(r, dout, n);
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const T* xr = x + i * c;
    T* dr = dx + i * c;
    T m, s;
    row_max_sum_exp(xr, c, shared, m, s);
    const T g = r == Reduction::none ? dout[i] : g_all, scale = g / s;
    const int64_t y = labels[i];
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      const T v = exp(xr[j] - m) * scale;
      dr[j] = j == y ? v - g : v;
    }
  }
}

// sum over j != y of w_y h_j^p / c, h_j = margin - x_y + x_j > 0.
template <class T>
__global__ void multi_margin_kernel(int64_t n, int64_t c, int p_norm, T margin, const T* x, const int64_t* labels,
                                    const T* weight, T* each, double* rows) {
  __shared__ T shared[32];
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const T* xr = x + i * c;
    const int64_t y = labels[i];
    const T base = margin - xr[y];
    T sum = T(0);
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      const T h = base + xr[j];
      if (j != y && h > T(0)) sum += margin_term(h, p_norm);
    }
    sum = block_reduce(sum, SumOp(), T(0), shared);
    if (threadIdx.x == 0) put_row(i, (weight ? weight[y] : T(1)) * sum / T(c), each, rows);
  }
}

// d/dx_j = w_y p h^(p-1) g / c for each positive hinge, d/dx_y = minus their sum.
template <class T>
__global__ void multi_margin_backward_kernel(int64_t n, int64_t c, int p_norm, T margin, Reduction r, const T* x,
                                             const int64_t* labels, const T* weight, const T* dout, T* dx) {
  __shared__ T shared[32];
  const T g_all = reduced_grad(r, dout, n);
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const T* xr = x + i * c;
    T* dr = dx + i * c;
    const int64_t y = labels[i];
    const T g = (r == Reduction::none ? dout[i] : g_all) * (weight ? weight[y] : T(1)) / T(c);
    const T base = margin - xr[y];
    T total = T(0);
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      if (j == y) continue;
      const T h = base + xr[j];
      const T d = h > T(0) ? margin_grad(h, p_norm, g) : T(0);
      dr[j] = d;
      total += d;
    }
    total = block_reduce(total, SumOp(), T(0), shared);
    if (threadIdx.x == 0) dr[y] = -total;
  }
}

// The row losses of a row kernel, then their reduction: launch(each, rows) runs
// the kernel writing to each (none) or to rows (reduced).
template <class T, class Launch>
void row_losses(const char* op, int64_t n, Reduction r, T* out, cudaStream_t s, const Launch& launch) {
  if (r == Reduction::none) {
    if (n > 0) launch(out, static_cast<double*>(nullptr));
    return;
  }
  Scratch rows(op, n * sizeof(double), s);
  if (n > 0) launch(static_cast<T*>(nullptr), rows.as<double>());
  finish_kernel<T><<<1, kBlock, 0, s>>>(n, rows.as<double>(), r == Reduction::mean, double(n), out);
}

}  // namespace

int64_t first_bad_label(const char* op, int64_t n, int64_t c, const int64_t* labels, int64_t* label,
                        std::uintptr_t stream) {
  if (n == 0) return -1;
  DeviceGuard guard(op, device_of(op, {labels}));
  cudaStream_t s = as_stream(stream);
  Scratch first(op, sizeof(unsigned long long), s);
  cudaError_t err = cudaMemsetAsync(first.as<unsigned long long>(), 0xff, sizeof(unsigned long long), s);
  if (err != cudaSuccess) cuda_fail(op, "cannot clear the label check", err);
  bad_label_kernel<<<grid_for(n, kBlock), kBlock, 0, s>>>(n, c, labels, first.as<unsigned long long>());
  check_launch(op);
  const unsigned long long row = read_back(op, first.as<unsigned long long>(), s);
  if (row == ~0ull) return -1;
  *label = read_back(op, labels + row, s);
  return static_cast<int64_t>(row);
}

template <class T>
void cross_entropy(const LossParams& p, const T* logits, const int64_t* labels, T* out, std::uintptr_t stream) {
  const char* op = "cross_entropy";
  if (p.n == 0 && p.reduction == Reduction::none) return;
  DeviceGuard guard(op, device_of_present(op, {logits, labels, out}));
  cudaStream_t s = as_stream(stream);
  row_losses<T>(op, p.n, p.reduction, out, s, [&](T* each, double* rows) {
    cross_entropy_kernel<T><<<grid_for(p.n, 1), threads_per_row(p.c), 0, s>>>(p.n, p.c, logits, labels, each, rows);
  });
  check_launch(op);
}

template <class T>
void cross_entropy_backward(const LossParams& p, const T* logits, const int64_t* labels, const T* dout,
                            T* dlogits, std::uintptr_t stream) {
  const char* op = "cross_entropy_backward";
  if (p.n * p.c == 0) return;
  DeviceGuard guard(op, device_of(op, {logits, labels, dout, dlogits}));
  cross_entropy_backward_kernel<T><<<grid_for(p.n, 1), threads_per_row(p.c), 0, as_stream(stream)>>>(
      p.n, p.c, p.reduction, logits, labels, dout, dlogits);
  check_launch(op);
}

template <class T>
void mse(const LossParams& p, const T* pred, const T* target, T* out, std::uintptr_t stream) {
  const char* op = "mse";
  const int64_t n = p.n * p.c;
  if (n == 0 && p.reduction == Reduction::none) return;
  DeviceGuard guard(op, device_of_present(op, {pred, target, out}));
  reduce_terms<T>(op, n, MseTerm<T>{pred, target}, p.reduction, double(n), out, as_stream(stream));
  check_launch(op);
}

namespace {
template <class T>
__global__ void mse_backward_kernel(int64_t n, Reduction r, T scale, const T* pred, const T* target, const T* dout,
                                    T* dpred) {
  const T g_all = r == Reduction::none ? T(0) : dout[0];
  for (int64_t i = first_index(); i < n; i += grid_stride())
    dpred[i] = mse_grad(pred[i], target[i], scale, r == Reduction::none ? dout[i] : g_all);
}

template <class T>
__global__ void bce_backward_kernel(int64_t n, int64_t c, Reduction r, const T* x, const T* t, const T* pos_weight,
                                    const T* dout, T* dx) {
  const T g_all = reduced_grad(r, dout, n);
  for (int64_t k = first_index(); k < n; k += grid_stride()) {
    const T l = pos_weight ? bce_pos_coef(pos_weight[k % c], t[k]) : T(1);
    dx[k] = bce_grad(x[k], t[k], l) * (r == Reduction::none ? dout[k] : g_all);
  }
}
}  // namespace

// torch: dpred = norm (pred - target) dout, norm = 2 / n (mean) or 2.
template <class T>
void mse_backward(const LossParams& p, const T* pred, const T* target, const T* dout, T* dpred,
                  std::uintptr_t stream) {
  const char* op = "mse_backward";
  const int64_t n = p.n * p.c;
  if (n == 0) return;
  DeviceGuard guard(op, device_of(op, {pred, target, dout, dpred}));
  const T scale = T(p.reduction == Reduction::mean ? 2.0 / double(n) : 2.0);
  mse_backward_kernel<T><<<grid_for(n, kBlock), kBlock, 0, as_stream(stream)>>>(n, p.reduction, scale, pred,
                                                                                 target, dout, dpred);
  check_launch(op);
}

template <class T>
void bce_with_logits(const LossParams& p, const T* logits, const T* target, const T* pos_weight, T* out,
                     std::uintptr_t stream) {
  const char* op = "binary_cross_entropy_with_logits";
  const int64_t n = p.n * p.c;
  if (n == 0 && p.reduction == Reduction::none) return;
  DeviceGuard guard(op, device_of_present(op, {logits, target, pos_weight, out}));
  reduce_terms<T>(op, n, BceTerm<T>{logits, target, pos_weight, p.c}, p.reduction, double(n), out,
                  as_stream(stream));
  check_launch(op);
}

template <class T>
void bce_with_logits_backward(const LossParams& p, const T* logits, const T* target, const T* pos_weight,
                              const T* dout, T* dlogits, std::uintptr_t stream) {
  const char* op = "binary_cross_entropy_with_logits_backward";
  const int64_t n = p.n * p.c;
  if (n == 0) return;
  DeviceGuard guard(op, device_of_present(op, {logits, target, pos_weight, dout, dlogits}));
  bce_backward_kernel<T><<<grid_for(n, kBlock), kBlock, 0, as_stream(stream)>>>(n, p.c, p.reduction, logits,
                                                                                target, pos_weight, dout, dlogits);
  check_launch(op);
}

template <class T>
void multi_margin(const MarginParams& p, const T* x, const int64_t* labels, const T* weight, T* out,
                  std::uintptr_t stream) {
  const char* op = "multi_margin";
  if (p.n == 0 && p.reduction == Reduction::none) return;
  DeviceGuard guard(op, device_of_present(op, {x, labels, weight, out}));
  cudaStream_t s = as_stream(stream);
  row_losses<T>(op, p.n, p.reduction, out, s, [&](T* each, double* rows) {
    multi_margin_kernel<T><<<grid_for(p.n, 1), threads_per_row(p.c), 0, s>>>(p.n, p.c, p.p_norm, T(p.margin), x,
                                                                             labels, weight, each, rows);
  });
  check_launch(op);
}

template <class T>
void multi_margin_backward(const MarginParams& p, const T* x, const int64_t* labels, const T* weight,
                           const T* dout, T* dx, std::uintptr_t stream) {
  const char* op = "multi_margin_backward";
  if (p.n * p.c == 0) return;
  DeviceGuard guard(op, device_of_present(op, {x, labels, weight, dout, dx}));
  multi_margin_backward_kernel<T><<<grid_for(p.n, 1), threads_per_row(p.c), 0, as_stream(stream)>>>(
      p.n, p.c, p.p_norm, T(p.margin), p.reduction, x, labels, weight, dout, dx);
  check_launch(op);
}

#define DK_INSTANTIATE(T)                                                                                         \
  template void cross_entropy<T>(const LossParams&, const T*, const int64_t*, T*, std::uintptr_t);              \
  template void cross_entropy_backward<T>(const LossParams&, const T*, const int64_t*, const T*, T*,            \
                                          std::uintptr_t);                                                      \
  template void mse<T>(const LossParams&, const T*, const T*, T*, std::uintptr_t);                              \
  template void mse_backward<T>(const LossParams&, const T*, const T*, const T*, T*, std::uintptr_t);           \
  template void bce_with_logits<T>(const LossParams&, const T*, const T*, const T*, T*, std::uintptr_t);        \
  template void bce_with_logits_backward<T>(const LossParams&, const T*, const T*, const T*, const T*, T*,      \
                                            std::uintptr_t);                                                    \
  template void multi_margin<T>(const MarginParams&, const T*, const int64_t*, const T*, T*, std::uintptr_t);   \
  template void multi_margin_backward<T>(const MarginParams&, const T*, const int64_t*, const T*, const T*, T*, \
                                         std::uintptr_t);
DK_INSTANTIATE(float)
DK_INSTANTIATE(double)
#undef DK_INSTANTIATE

}  // namespace dk::cuda
