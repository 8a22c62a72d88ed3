// CUDA dropout: x (n) -> y (n) and a byte mask (n); backward dy, mask -> dx.
// Element i's keep decision is core/random.h's counter-based hash of (seed, i),
// the function the CPU kernel calls, so the mask for a seed is bit-identical on
// both devices and independent of the launch shape. One thread per element,
// grid-stride: the hash is a few integer multiplies, the kernel is memory-bound.
#include "cuda/dropout.h"

#include <cuda_runtime.h>

#include "core/random.h"
#include "cuda/launch.h"

namespace dk::cuda {
namespace {

constexpr int kBlock = 256;

template <class T>
__global__ void forward_kernel(int64_t n, uint64_t seed, uint64_t threshold, T scale, const T* x, T* y,
                               uint8_t* mask) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const bool keep = dropout_keep(seed, static_cast<uint64_t>(i), threshold);
    mask[i] = keep;
    y[i] = dropout_apply(x[i], keep, scale);
  }
}

template <class T>
__global__ void backward_kernel(int64_t n, T scale, const T* dy, const uint8_t* mask, T* dx) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dx[i] = dropout_apply(dy[i], mask[i] != 0, scale);
}

}  // namespace

template <class T>
void dropout_forward(const DropoutParams& p, const T* x, T* y, uint8_t* mask, std::uintptr_t stream) {
  const char* op = "dropout";
  if (p.n == 0) return;
  DeviceGuard guard(op, device_of(op, {x, y, mask}));
  forward_kernel<T><<<grid_for(p.n, kBlock), kBlock, 0, as_stream(stream)>>>(
      p.n, p.seed, dropout_threshold(p.p), T(dropout_scale(p.p)), x, y, mask);
  check_launch(op);
}

template <class T>
void dropout_backward(const DropoutParams& p, const T* dy, const uint8_t* mask, T* dx, std::uintptr_t stream) {
  const char* op = "dropout_backward";
  if (p.n == 0) return;
  DeviceGuard guard(op, device_of(op, {dy, mask, dx}));
  backward_kernel<T><<<grid_for(p.n, kBlock), kBlock, 0, as_stream(stream)>>>(p.n, T(dropout_scale(p.p)), dy,
                                                                               mask, dx);
  check_launch(op);
}

#define DK_INSTANTIATE(T)                                                                               \
  template void dropout_forward<T>(const DropoutParams&, const T*, T*, uint8_t*, std::uintptr_t);      \
  template void dropout_backward<T>(const DropoutParams&, const T*, const uint8_t*, T*, std::uintptr_t);
DK_INSTANTIATE(float)
DK_INSTANTIATE(double)
#undef DK_INSTANTIATE

}  // namespace dk::cuda
