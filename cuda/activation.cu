// CUDA activations and softmax: the same formulas as the CPU kernels
// (core/activation_math.h with V = T), on the caller's stream.
//
// Elementwise: grid-stride loop over n, one element per thread per step, so any
// n (not a multiple of the block, or past 2^31) is covered by a capped grid.
// softmax over (outer, dim, inner):
//   inner == 1: one block per row (grid-stride over rows); max and sum are
//     block reductions (warp shuffles, then one value per warp in shared
//     memory), in a fixed order: no atomics, the result is deterministic.
//     The block shrinks to 32..256 threads to fit short rows.
//   inner > 1: one thread per (outer, inner) column, looping over dim; adjacent
//     threads read adjacent columns, so loads are coalesced.
// Backward uses the forward output y: softmax dx = y (dy - sum(dy y)),
// log_softmax dx = dy - exp(y) sum(dy).
#include "cuda/activation.h"

#include <cuda_runtime.h>

#include "core/activation_math.h"
#include "cuda/launch.h"
#include "cuda/reduce.cuh"

namespace dk::cuda {
namespace {

constexpr int kBlock = 256;

// x and y may be the same array (in place): no __restrict__.
template <Activation K, class T>
__global__ void forward_kernel(int64_t n, const T* x, T* y, ActCoef<T> c) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = activation_forward<K, T, T>(x[i], c);
}

template <Activation K, class T>
__global__ void backward_kernel(int64_t n, const T* dy, const T* saved, T* dx, ActCoef<T> c) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    dx[i] = activation_backward<K, T, T>(dy[i], saved[i], c);
}

// -- block reductions ---------------------------------------------------------------

template <class T>
__device__ __forceinline__ T neg_inf() { return -static_cast<T>(INFINITY); }

// -- softmax ------------------------------------------------------------------------

template <class T>
__global__ void softmax_rows_kernel(int64_t rows, int64_t d, bool is_log, const T* x, T* y) {
  __shared__ T shared[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    T m = neg_inf<T>();
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) m = MaxOp()(m, xr[j]);
    m = block_reduce(m, MaxOp(), neg_inf<T>(), shared);
    T s = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s += exp(xr[j] - m);
    s = block_reduce(s, SumOp(), T(0), shared);
    if (is_log) {
      const T lse = log(s);
      for (int64_t j = threadIdx.x; j < d; j += blockDim.x) yr[j] = (xr[j] - m) - lse;
    } else {
      const T inv = T(1) / s;
      for (int64_t j = threadIdx.x; j < d; j += blockDim.x) yr[j] = exp(xr[j] - m) * inv;
    }
  }
}

template <class T>
__global__ void softmax_columns_kernel(int64_t outer, int64_t d, int64_t inner, bool is_log, const T* x, T* y) {
  for (int64_t col = first_index(); col < outer * inner; col += grid_stride()) {
    const int64_t off = (col / inner) * d * inner + col % inner;
    const T* xc = x + off;
    T* yc = y + off;
    T m = neg_inf<T>();
    for (int64_t k = 0; k < d; ++k) m = MaxOp()(m, xc[k * inner]);
    T s = 0;
    for (int64_t k = 0; k < d; ++k) s += exp(xc[k * inner] - m);
    if (is_log) {
      const T lse = log(s);
      for (int64_t k = 0; k < d; ++k) yc[k * inner] = (xc[k * inner] - m) - lse;
    } else {
      const T inv = T(1) / s;
      for (int64_t k = 0; k < d; ++k) yc[k * inner] = exp(xc[k * inner] - m) * inv;
    }
  }
}

template <class T>
__global__ void softmax_backward_rows_kernel(int64_t rows, int64_t d, bool is_log, const T* dy, const T* y,
                                             T* dx) {
  __shared__ T shared[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t off = r * d;
    T s = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s += is_log ? dy[off + j] : dy[off + j] * y[off + j];
    s = block_reduce(s, SumOp(), T(0), shared);
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const T g = dy[off + j], out = y[off + j];
      dx[off + j] = is_log ? g - exp(out) * s : out * (g - s);
    }
  }
}

template <class T>
__global__ void softmax_backward_columns_kernel(int64_t outer, int64_t d, int64_t inner, bool is_log, const T* dy,
                                                const T* y, T* dx) {
  for (int64_t col = first_index(); col < outer * inner; col += grid_stride()) {
    const int64_t off = (col / inner) * d * inner + col % inner;
    T s = 0;
    for (int64_t k = 0; k < d; ++k) {
      const int64_t i = off + k * inner;
      s += is_log ? dy[i] : dy[i] * y[i];
    }
    for (int64_t k = 0; k < d; ++k) {
      const int64_t i = off + k * inner;
      dx[i] = is_log ? dy[i] - exp(y[i]) * s : y[i] * (dy[i] - s);
    }
  }
}

// Threads per row block: a warp for short rows, up to kBlock for long ones.
int row_block(int64_t d) { return d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : kBlock; }

const char* softmax_name(const SoftmaxParams& p) { return p.log ? "log_softmax" : "softmax"; }

}  // namespace

template <class T>
void activation_forward(const ActivationParams& p, const T* x, T* y, std::uintptr_t stream) {
  const char* op = activation_name(p.kind);
  if (p.n == 0) return;
  DeviceGuard guard(op, device_of(op, {x, y}));
  const ActCoef<T> c{T(p.alpha), T(p.threshold)};
  with_activation(p.kind, [&](auto kind) {
    forward_kernel<decltype(kind)::value, T><<<grid_for(p.n, kBlock), kBlock, 0, as_stream(stream)>>>(p.n, x, y, c);
  });
  check_launch(op);
}

template <class T>
void activation_backward(const ActivationParams& p, const T* dy, const T* saved, T* dx, std::uintptr_t stream) {
  const char* op = activation_name(p.kind);
  if (p.n == 0) return;
  DeviceGuard guard(op, device_of(op, {dy, saved, dx}));
  const ActCoef<T> c{T(p.alpha), T(p.threshold)};
  with_activation(p.kind, [&](auto kind) {
    backward_kernel<decltype(kind)::value, T>
        <<<grid_for(p.n, kBlock), kBlock, 0, as_stream(stream)>>>(p.n, dy, saved, dx, c);
  });
  check_launch(op);
}

template <class T>
void softmax_forward(const SoftmaxParams& p, const T* x, T* y, std::uintptr_t stream) {
  const char* op = softmax_name(p);
  if (p.outer * p.dim * p.inner == 0) return;
  DeviceGuard guard(op, device_of(op, {x, y}));
  if (p.inner == 1) {
    const int block = row_block(p.dim);
    softmax_rows_kernel<T><<<grid_for(p.outer, 1), block, 0, as_stream(stream)>>>(p.outer, p.dim, p.log, x, y);
  } else {
    softmax_columns_kernel<T><<<grid_for(p.outer * p.inner, kBlock), kBlock, 0, as_stream(stream)>>>(
        p.outer, p.dim, p.inner, p.log, x, y);
  }
  check_launch(op);
}

template <class T>
void softmax_backward(const SoftmaxParams& p, const T* dy, const T* y, T* dx, std::uintptr_t stream) {
  const char* op = softmax_name(p);
  if (p.outer * p.dim * p.inner == 0) return;
  DeviceGuard guard(op, device_of(op, {dy, y, dx}));
  if (p.inner == 1) {
    const int block = row_block(p.dim);
    softmax_backward_rows_kernel<T>
        <<<grid_for(p.outer, 1), block, 0, as_stream(stream)>>>(p.outer, p.dim, p.log, dy, y, dx);
  } else {
    softmax_backward_columns_kernel<T><<<grid_for(p.outer * p.inner, kBlock), kBlock, 0, as_stream(stream)>>>(
        p.outer, p.dim, p.inner, p.log, dy, y, dx);
  }
  check_launch(op);
}

#define DK_INSTANTIATE(T)                                                                                 \
  template void activation_forward<T>(const ActivationParams&, const T*, T*, std::uintptr_t);           \
  template void activation_backward<T>(const ActivationParams&, const T*, const T*, T*, std::uintptr_t); \
  template void softmax_forward<T>(const SoftmaxParams&, const T*, T*, std::uintptr_t);                 \
  template void softmax_backward<T>(const SoftmaxParams&, const T*, const T*, T*, std::uintptr_t);
DK_INSTANTIATE(float)
DK_INSTANTIATE(double)
#undef DK_INSTANTIATE

}  // namespace dk::cuda
