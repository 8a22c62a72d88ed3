// CUDA max, average and global average pooling over NCHW planes, forward and
// backward: x (planes, ih, iw), y (planes, oh, ow); the window geometry and
// torch's rules come from core/pool_math.h, shared with the CPU kernels.
//
// Forward (max, avg): one thread per output element, grid-stride; adjacent
// threads take adjacent outputs of a row, so their window loads and the stores
// are coalesced. Max visits the taps in row-major window order with torch's
// "greater or NaN replaces" rule, so values and flat indices equal the CPU's.
// max backward: the indices alone (no window arguments) say where each dy goes,
// and windows may overlap, so one warp owns one plane: it zeroes the plane, then
// takes the outputs 32 at a time; lanes naming the same input element are
// grouped (__match_any_sync) and the group's lowest lane adds their dy in lane
// order. Chunks follow each other (__syncwarp), so every sum has a fixed order:
// deterministic, no float atomics. Bad indices are counted with an integer atomic.
// avg backward gathers instead: one thread per input element sums the shares of
// the windows that cover it (window arithmetic, no index array), row by row in
// the CPU's order, so no two threads ever write one element.
// global average: one warp per plane (lane sums, then a shuffle reduction).
#include "cuda/pool.h"

#include <cuda_runtime.h>

#include "core/pool_math.h"
#include "cuda/buffer.cuh"
#include "cuda/launch.h"
#include "cuda/reduce.cuh"

namespace dk::cuda {
namespace {

constexpr int kBlock = 256;

template <class T>
__global__ void max_pool_kernel(PoolParams p, const T* x, T* y, int64_t* indices) {
  const int64_t total = p.planes * p.oh * p.ow;
  for (int64_t o = first_index(); o < total; o += grid_stride()) {
    const int64_t ow = o % p.ow, t = o / p.ow, oh = t % p.oh, plane = t / p.oh;
    const PoolTaps r = pool_taps(oh, p.sh, p.ph, p.kh, p.dh, p.ih);
    const PoolTaps c = pool_taps(ow, p.sw, p.pw, p.kw, p.dw, p.iw);
    if (r.count == 0 || c.count == 0) {  // a window wholly in padding (dilation only)
      y[o] = -static_cast<T>(INFINITY);
      indices[o] = -1;
      continue;
    }
    const T* xp = x + plane * p.ih * p.iw;
    int64_t best = r.first * p.iw + c.first;
    T m = xp[best];
    for (int64_t i = 0; i < r.count; ++i) {
      const int64_t row = (r.first + i * p.dh) * p.iw + c.first;
      for (int64_t j = 0; j < c.count; ++j) {
        const int64_t at = row + j * p.dw;
        const T v = xp[at];
        if (pool_replaces(v, m)) {
          m = v;
          best = at;
        }
      }
    }
    y[o] = m;
    indices[o] = best;
  }
}

// One warp per plane; blockDim.x is a multiple of 32, so every lane of a warp
// runs the same loop trips and the warp-wide intrinsics see all 32 lanes.
template <class T>
__global__ void max_pool_backward_kernel(int64_t planes, int64_t plane_in, int64_t plane_out, const T* dy,
                                         const int64_t* indices, T* dx, unsigned long long* bad) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = grid_stride() >> 5;
  unsigned long long nbad = 0;
  for (int64_t plane = first_index() >> 5; plane < planes; plane += warps) {
    T* d = dx + plane * plane_in;
    const T* g = dy + plane * plane_out;
    const int64_t* ix = indices + plane * plane_out;
    for (int64_t k = lane; k < plane_in; k += 32) d[k] = T(0);
    __syncwarp();
    for (int64_t o0 = 0; o0 < plane_out; o0 += 32) {
      const int64_t o = o0 + lane;
      const int64_t at = o < plane_out ? ix[o] : -1;
      const bool valid = static_cast<uint64_t>(at) < static_cast<uint64_t>(plane_in);
      if (!valid && at != -1) ++nbad;
      // Lanes with the same element form one group (the invalid ones a group that does nothing).
      const unsigned group = __match_any_sync(0xffffffffu, static_cast<long long>(valid ? at : -1));
      if (valid && __ffs(group) - 1 == lane) {
        T s = T(0);
        for (unsigned m = group; m != 0; m &= m - 1) s += g[o0 + __ffs(m) - 1];
        d[at] += s;
      }
      __syncwarp();  // this chunk's adds land before the next chunk reads
    }
  }
  nbad = warp_reduce(nbad, SumOp());
  if (lane == 0 && nbad != 0) atomicAdd(bad, nbad);
}

template <class T>
__global__ void avg_pool_kernel(PoolParams p, const T* x, T* y) {
  const int64_t total = p.planes * p.oh * p.ow;
  for (int64_t o = first_index(); o < total; o += grid_stride()) {
    const int64_t ow = o % p.ow, t = o / p.ow, oh = t % p.oh, plane = t / p.oh;
    const PoolTaps r = pool_taps(oh, p.sh, p.ph, p.kh, 1, p.ih);
    const PoolTaps c = pool_taps(ow, p.sw, p.pw, p.kw, 1, p.iw);
    if (r.count == 0 || c.count == 0) {
      y[o] = T(0);
      continue;
    }
    const T* xp = x + plane * p.ih * p.iw + r.first * p.iw + c.first;
    T sum = T(0);
    for (int64_t i = 0; i < r.count; ++i)
      for (int64_t j = 0; j < c.count; ++j) sum += xp[i * p.iw + j];
    const int64_t div = pool_divisor(p.count_include_pad, oh, p.sh, p.ph, p.kh, p.ih, r) *
                        pool_divisor(p.count_include_pad, ow, p.sw, p.pw, p.kw, p.iw, c);
    y[o] = sum / T(div);
  }
}

// The outputs [lo, hi] along one axis whose (undilated) window covers input position v.
struct Cover {
  int64_t lo, hi;
};
__device__ __forceinline__ Cover covering(int64_t v, int64_t s, int64_t pad, int64_t k, int64_t out) {
  const int64_t first = v + pad - k + 1;  // o * s >= first and o * s <= v + pad
  const int64_t lo = first <= 0 ? 0 : (first + s - 1) / s;
  const int64_t last = (v + pad) / s;
  return {lo, last < out - 1 ? last : out - 1};
}

template <class T>
__global__ void avg_pool_backward_kernel(PoolParams p, const T* dy, T* dx) {
  const int64_t total = p.planes * p.ih * p.iw;
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t w = e % p.iw, t = e / p.iw, h = t % p.ih, plane = t / p.ih;
    const Cover rows = covering(h, p.sh, p.ph, p.kh, p.oh), cols = covering(w, p.sw, p.pw, p.kw, p.ow);
    const T* g = dy + plane * p.oh * p.ow;
    T acc = T(0);
    for (int64_t oh = rows.lo; oh <= rows.hi; ++oh) {
      const PoolTaps r = pool_taps(oh, p.sh, p.ph, p.kh, 1, p.ih);
      const T hdiv = T(pool_divisor(p.count_include_pad, oh, p.sh, p.ph, p.kh, p.ih, r));
      T row = T(0);  // this output row's share, then added to the element: the CPU's order
      for (int64_t ow = cols.lo; ow <= cols.hi; ++ow) {
        const PoolTaps c = pool_taps(ow, p.sw, p.pw, p.kw, 1, p.iw);
        const T wdiv = T(pool_divisor(p.count_include_pad, ow, p.sw, p.pw, p.kw, p.iw, c));
        row += g[oh * p.ow + ow] / (hdiv * wdiv);
      }
      acc += row;
    }
    dx[e] = acc;
  }
}

template <class T>
__global__ void global_avg_kernel(int64_t planes, int64_t hw, const T* x, T* y) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = grid_stride() >> 5;
  for (int64_t plane = first_index() >> 5; plane < planes; plane += warps) {
    const T* xp = x + plane * hw;
    T s = T(0);
    for (int64_t k = lane; k < hw; k += 32) s += xp[k];
    s = warp_reduce(s, SumOp());
    if (lane == 0) y[plane] = s / T(hw);
  }
}

template <class T>
__global__ void global_avg_backward_kernel(int64_t planes, int64_t hw, const T* dy, T* dx) {
  for (int64_t e = first_index(); e < planes * hw; e += grid_stride()) dx[e] = dy[e / hw] / T(hw);
}

}  // namespace

template <class T>
void max_pool2d(const PoolParams& p, const T* x, T* y, int64_t* indices, std::uintptr_t stream) {
  const char* op = "max_pool2d";
  const int64_t total = p.planes * p.oh * p.ow;
  if (total == 0) return;
  DeviceGuard guard(op, device_of(op, {x, y, indices}));
  max_pool_kernel<T><<<grid_for(total, kBlock), kBlock, 0, as_stream(stream)>>>(p, x, y, indices);
  check_launch(op);
}

template <class T>
int64_t max_pool2d_backward(const PoolParams& p, const T* dy, const int64_t* indices, T* dx,
                            std::uintptr_t stream) {
  const char* op = "max_pool2d_backward";
  if (p.planes * p.ih * p.iw == 0) return 0;
  DeviceGuard guard(op, device_of(op, {dy, indices, dx}));
  cudaStream_t s = as_stream(stream);
  Scratch bad(op, sizeof(unsigned long long), s);
  cudaError_t err = cudaMemsetAsync(bad.as<unsigned long long>(), 0, sizeof(unsigned long long), s);
  if (err != cudaSuccess) cuda_fail(op, "cannot clear the bad-index count", err);
  max_pool_backward_kernel<T><<<grid_for(p.planes * 32, kBlock), kBlock, 0, s>>>(
      p.planes, p.ih * p.iw, p.oh * p.ow, dy, indices, dx, bad.as<unsigned long long>());
  check_launch(op);
  return static_cast<int64_t>(read_back(op, bad.as<unsigned long long>(), s));
}

template <class T>
void avg_pool2d(const PoolParams& p, const T* x, T* y, std::uintptr_t stream) {
  const char* op = "avg_pool2d";
  const int64_t total = p.planes * p.oh * p.ow;
  if (total == 0) return;
  DeviceGuard guard(op, device_of(op, {x, y}));
  avg_pool_kernel<T><<<grid_for(total, kBlock), kBlock, 0, as_stream(stream)>>>(p, x, y);
  check_launch(op);
}

template <class T>
void avg_pool2d_backward(const PoolParams& p, const T* dy, T* dx, std::uintptr_t stream) {
  const char* op = "avg_pool2d_backward";
  const int64_t total = p.planes * p.ih * p.iw;
  if (total == 0) return;
  DeviceGuard guard(op, device_of(op, {dy, dx}));
  avg_pool_backward_kernel<T><<<grid_for(total, kBlock), kBlock, 0, as_stream(stream)>>>(p, dy, dx);
  check_launch(op);
}

template <class T>
void global_avg_pool2d(int64_t planes, int64_t hw, const T* x, T* y, std::uintptr_t stream) {
  const char* op = "global_avg_pool2d";
  if (planes == 0) return;
  DeviceGuard guard(op, device_of(op, {x, y}));
  global_avg_kernel<T><<<grid_for(planes * 32, kBlock), kBlock, 0, as_stream(stream)>>>(planes, hw, x, y);
  check_launch(op);
}

template <class T>
void global_avg_pool2d_backward(int64_t planes, int64_t hw, const T* dy, T* dx, std::uintptr_t stream) {
  const char* op = "global_avg_pool2d_backward";
  if (planes * hw == 0) return;
  DeviceGuard guard(op, device_of(op, {dy, dx}));
  global_avg_backward_kernel<T><<<grid_for(planes * hw, kBlock), kBlock, 0, as_stream(stream)>>>(planes, hw, dy, dx);
  check_launch(op);
}

#define DK_INSTANTIATE(T)                                                                                     \
  template void max_pool2d<T>(const PoolParams&, const T*, T*, int64_t*, std::uintptr_t);                   \
  template int64_t max_pool2d_backward<T>(const PoolParams&, const T*, const int64_t*, T*, std::uintptr_t); \
  template void avg_pool2d<T>(const PoolParams&, const T*, T*, std::uintptr_t);                             \
  template void avg_pool2d_backward<T>(const PoolParams&, const T*, T*, std::uintptr_t);                    \
  template void global_avg_pool2d<T>(int64_t, int64_t, const T*, T*, std::uintptr_t);                       \
  template void global_avg_pool2d_backward<T>(int64_t, int64_t, const T*, T*, std::uintptr_t);
DK_INSTANTIATE(float)
DK_INSTANTIATE(double)
#undef DK_INSTANTIATE

}  // namespace dk::cuda
