// CUDA 2-D convolution (ConvParams): x (n, c, h, w), w (k, cg, r, s), y (n, k, oh, ow),
// cg = c / groups, kg = k / groups, crs = cg * r * s, pos = oh * ow.
//
// General groups: explicit im2col into a workspace and cuda::gemm per group.
// The batch is taken in chunks of nb images so that the workspace stays under
// kWorkspaceBytes (one image at least); within a chunk the columns of all its
// images sit side by side (L = nb * pos columns), so each group is one large
// GEMM rather than nb thin ones:
//   col  (c * r * s, L): row (ci, a, b), column img * pos + q, x's tap or 0;
//   dyt  (k, L):         dy's chunk with the image and channel axes swapped.
//   forward        out_g (kg x L) = W_g (kg x crs) col_g, then y = out + b (unpack);
//   backward data  dcol_g (crs x L) = W_g^T dyt_g, then col2im;
//   backward weight dW_g (kg x crs) += dyt_g col_g^T, chunk after chunk (beta = 1).
// col2im is a gather (each dx element sums the col entries that read it, in tap
// order), not a scatter with atomics, and every reduction is either a GEMM (each
// output a fixed-order sum in one thread) or a fixed-order block reduction, so
// results are deterministic. An implicit GEMM would save the workspace traffic;
// explicit im2col keeps one GEMM kernel for every family.
// Depthwise (cg == 1: each output channel reads one input channel) is direct:
// as a GEMM each group is a (kg x r*s) by (r*s x pos) product, far too thin for
// the GEMM tiles. Forward: a thread per output; backward data: a thread per
// input element gathering its taps; backward weight: a block per (kk, a, b)
// reducing over the batch and positions in a fixed order.
#include "cuda/conv.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "cuda/gemm.h"
#include "cuda/launch.h"
#include "cuda/reduce.cuh"

namespace dk::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int64_t kWorkspaceBytes = int64_t(256) << 20;

struct Geometry {
  int64_t cg, kg, crs, rs, hw, pos;
};

Geometry geometry(const ConvParams& p) {
  const int64_t cg = p.c / p.groups;
  return {cg, p.k / p.groups, cg * p.r * p.s, p.r * p.s, p.h * p.w, p.oh * p.ow};
}

// Device memory for one call, freed (stream-ordered where the device supports
// memory pools) when the call's launches are queued.
class Workspace {
 public:
  Workspace(const char* op, int64_t bytes, cudaStream_t stream) : stream_(stream) {
    int device = 0, pools = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device);
    if (err != cudaSuccess) cuda_fail(op, "cannot query the device", err);
    async_ = pools != 0;
    err = async_ ? cudaMallocAsync(&ptr_, static_cast<size_t>(bytes), stream) : cudaMalloc(&ptr_, static_cast<size_t>(bytes));
    if (err != cudaSuccess) cuda_fail(op, "cannot allocate a workspace of " + std::to_string(bytes) + " bytes", err);
  }
  ~Workspace() {
    if (async_) cudaFreeAsync(ptr_, stream_);
    else cudaFree(ptr_);  // waits for the device: the kernels using it are done
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
  bool async_ = false;
};

// Images per chunk: col (c * r * s rows) and dyt or out (k rows) of pos columns
// per image within kWorkspaceBytes, at least one.
int64_t chunk_images(const ConvParams& p, const Geometry& g, int64_t elem) {
  const int64_t per_image = (p.c * g.rs + p.k) * g.pos * elem;
  return std::clamp<int64_t>(kWorkspaceBytes / std::max<int64_t>(per_image, 1), 1, p.n);
}

// col[row][img * pos + q] for the chunk's nb images at x (the chunk's first image).
template <class T>
__global__ void im2col_kernel(ConvParams p, int64_t nb, const T* __restrict__ x, T* __restrict__ col) {
  const int64_t pos = p.oh * p.ow, len = nb * pos, total = p.c * p.r * p.s * len;
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t row = e / len, column = e % len, img = column / pos, q = column % pos;
    const int64_t b = row % p.s, a = row / p.s % p.r, ci = row / (p.r * p.s);
    const int64_t ih = q / p.ow * p.sh - p.ph + a * p.dh, iw = q % p.ow * p.sw - p.pw + b * p.dw;
    const bool in = ih >= 0 && ih < p.h && iw >= 0 && iw < p.w;
    col[e] = in ? x[((img * p.c + ci) * p.h + ih) * p.w + iw] : T(0);
  }
}

// The output index o whose tap at o * stride - pad + t * dil is i, or -1.
__device__ __forceinline__ int64_t source(int64_t i, int64_t t, int64_t stride, int64_t pad, int64_t dil, int64_t out) {
  const int64_t num = i + pad - t * dil;
  if (num < 0 || num % stride != 0) return -1;
  const int64_t o = num / stride;
  return o < out ? o : -1;
}

// dx of the chunk's nb images: each element the sum, in tap order, of the col
// entries its taps produced (the transpose of im2col as a gather).
template <class T>
__global__ void col2im_kernel(ConvParams p, int64_t nb, const T* __restrict__ col, T* __restrict__ dx) {
  const int64_t pos = p.oh * p.ow, len = nb * pos, total = nb * p.c * p.h * p.w;
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t iw = e % p.w, ih = e / p.w % p.h, ci = e / (p.h * p.w) % p.c, img = e / (p.c * p.h * p.w);
    T sum = T(0);
    for (int64_t a = 0; a < p.r; ++a) {
      const int64_t i = source(ih, a, p.sh, p.ph, p.dh, p.oh);
      if (i < 0) continue;
      for (int64_t b = 0; b < p.s; ++b) {
        const int64_t j = source(iw, b, p.sw, p.pw, p.dw, p.ow);
        if (j >= 0) sum += col[((ci * p.r + a) * p.s + b) * len + img * pos + i * p.ow + j];
      }
    }
    dx[e] = sum;
  }
}

// dyt[kk][img * pos + q] = dy[img][kk][q] for the chunk's nb images.
template <class T>
__global__ void pack_kernel(int64_t nb, int64_t k, int64_t pos, const T* __restrict__ dy, T* __restrict__ dyt) {
  const int64_t len = nb * pos;
  for (int64_t e = first_index(); e < k * len; e += grid_stride()) {
    const int64_t kk = e / len, column = e % len;
    dyt[e] = dy[(column / pos * k + kk) * pos + column % pos];
  }
}

// y[img][kk][q] = out[kk][img * pos + q] + b[kk] (b may be null).
template <class T>
__global__ void unpack_kernel(int64_t nb, int64_t k, int64_t pos, const T* __restrict__ out, const T* __restrict__ b,
                              T* __restrict__ y) {
  const int64_t len = nb * pos;
  for (int64_t e = first_index(); e < nb * k * pos; e += grid_stride()) {
    const int64_t q = e % pos, kk = e / pos % k, img = e / (k * pos);
    const T v = out[kk * len + img * pos + q];
    y[e] = b ? v + b[kk] : v;
  }
}

// Depthwise forward: one thread per output element.
template <class T>
__global__ void depthwise_forward_kernel(ConvParams p, int64_t kg, const T* __restrict__ x, const T* __restrict__ w,
                                         const T* __restrict__ b, T* __restrict__ y) {
  const int64_t pos = p.oh * p.ow, total = p.n * p.k * pos;
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t j = e % p.ow, i = e / p.ow % p.oh, kk = e / pos % p.k, img = e / (p.k * pos);
    const T* plane = x + (img * p.c + kk / kg) * p.h * p.w;
    const T* wk = w + kk * p.r * p.s;
    T sum = T(0);
    for (int64_t a = 0; a < p.r; ++a) {
      const int64_t ih = i * p.sh - p.ph + a * p.dh;
      if (ih < 0 || ih >= p.h) continue;
      for (int64_t bb = 0; bb < p.s; ++bb) {
        const int64_t iw = j * p.sw - p.pw + bb * p.dw;
        if (iw >= 0 && iw < p.w) sum += wk[a * p.s + bb] * plane[ih * p.w + iw];
      }
    }
    y[e] = b ? sum + b[kk] : sum;
  }
}

// Depthwise backward data: one thread per input element, gathering the taps of
// the kg output channels that read its channel.
template <class T>
__global__ void depthwise_backward_data_kernel(ConvParams p, int64_t kg, const T* __restrict__ dy,
                                               const T* __restrict__ w, T* __restrict__ dx) {
  const int64_t pos = p.oh * p.ow, total = p.n * p.c * p.h * p.w;
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t iw = e % p.w, ih = e / p.w % p.h, ci = e / (p.h * p.w) % p.c, img = e / (p.c * p.h * p.w);
    T sum = T(0);
    for (int64_t kk = ci * kg; kk < (ci + 1) * kg; ++kk) {
      const T* plane = dy + (img * p.k + kk) * pos;
      for (int64_t a = 0; a < p.r; ++a) {
        const int64_t i = source(ih, a, p.sh, p.ph, p.dh, p.oh);
        if (i < 0) continue;
        for (int64_t b = 0; b < p.s; ++b) {
          const int64_t j = source(iw, b, p.sw, p.pw, p.dw, p.ow);
          if (j >= 0) sum += w[(kk * p.r + a) * p.s + b] * plane[i * p.ow + j];
        }
      }
    }
    dx[e] = sum;
  }
}

// Depthwise backward weight: block (kk, a, b) sums dy * x over the batch and
// the positions (each thread a strided subset in order, then a block reduction).
template <class T>
__global__ void depthwise_backward_weight_kernel(ConvParams p, int64_t kg, const T* __restrict__ dy,
                                                 const T* __restrict__ x, T* __restrict__ dw) {
  __shared__ T shared[32];
  const int64_t pos = p.oh * p.ow, taps = p.r * p.s;
  for (int64_t t = blockIdx.x; t < p.k * taps; t += gridDim.x) {
    const int64_t kk = t / taps, a = t % taps / p.s, b = t % p.s, ci = kk / kg;
    T sum = T(0);
    for (int64_t e = threadIdx.x; e < p.n * pos; e += blockDim.x) {
      const int64_t img = e / pos, q = e % pos;
      const int64_t ih = q / p.ow * p.sh - p.ph + a * p.dh, iw = q % p.ow * p.sw - p.pw + b * p.dw;
      if (ih >= 0 && ih < p.h && iw >= 0 && iw < p.w)
        sum += dy[(img * p.k + kk) * pos + q] * x[((img * p.c + ci) * p.h + ih) * p.w + iw];
    }
    sum = block_reduce(sum, SumOp(), T(0), shared);
    if (threadIdx.x == 0) dw[t] = sum;
  }
}

// db[kk] = sum of dy[., kk, ., .]: a block per channel, fixed-order reduction.
template <class T>
__global__ void bias_grad_kernel(int64_t n, int64_t k, int64_t pos, const T* __restrict__ dy, T* __restrict__ db) {
  __shared__ T shared[32];
  for (int64_t kk = blockIdx.x; kk < k; kk += gridDim.x) {
    T sum = T(0);
    for (int64_t e = threadIdx.x; e < n * pos; e += blockDim.x) sum += dy[(e / pos * k + kk) * pos + e % pos];
    sum = block_reduce(sum, SumOp(), T(0), shared);
    if (threadIdx.x == 0) db[kk] = sum;
  }
}

// step(n0, cnt, len, col, rest) for each chunk of cnt images from image n0
// (len = cnt * pos columns): col (c * r * s x len) and rest (k x len) in one workspace.
template <class T, class Step>
void by_chunks(const char* op, const ConvParams& p, const Geometry& g, cudaStream_t s, Step&& step) {
  const int64_t nb = chunk_images(p, g, sizeof(T));
  Workspace ws(op, (p.c * g.rs + p.k) * nb * g.pos * static_cast<int64_t>(sizeof(T)), s);
  for (int64_t n0 = 0; n0 < p.n; n0 += nb) {
    const int64_t cnt = std::min(nb, p.n - n0), len = cnt * g.pos;
    T* col = ws.as<T>();
    step(n0, cnt, len, col, col + p.c * g.rs * len);
  }
}

// col of the cnt images from image n0.
template <class T>
void im2col(const char* op, const ConvParams& p, const Geometry& g, int64_t n0, int64_t cnt, const T* x, T* col,
            cudaStream_t s) {
  im2col_kernel<T><<<grid_for(p.c * g.rs * cnt * g.pos, kBlock), kBlock, 0, s>>>(p, cnt, x + n0 * p.c * g.hw, col);
  check_launch(op);
}

// dyt of the cnt images from image n0.
template <class T>
void pack(const char* op, const ConvParams& p, const Geometry& g, int64_t n0, int64_t cnt, const T* dy, T* dyt,
          cudaStream_t s) {
  pack_kernel<T><<<grid_for(p.k * cnt * g.pos, kBlock), kBlock, 0, s>>>(cnt, p.k, g.pos, dy + n0 * p.k * g.pos, dyt);
  check_launch(op);
}

GemmParams product(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc, bool ta, bool tb,
                   double beta = 0.0) {
  GemmParams g;
  g.m = m, g.n = n, g.k = k, g.lda = lda, g.ldb = ldb, g.ldc = ldc, g.trans_a = ta, g.trans_b = tb, g.beta = beta;
  return g;
}

}  // namespace

template <class T>
void conv_forward(const ConvParams& p, const T* x, const T* w, const T* b, T* y, std::uintptr_t stream, bool tf32) {
  const char* op = "conv2d";
  if (p.n == 0) return;
  DeviceGuard guard(op, b ? device_of(op, {x, w, b, y}) : device_of(op, {x, w, y}));
  const cudaStream_t s = as_stream(stream);
  const Geometry g = geometry(p);
  if (g.cg == 1) {
    depthwise_forward_kernel<T><<<grid_for(p.n * p.k * g.pos, kBlock), kBlock, 0, s>>>(p, g.kg, x, w, b, y);
    return check_launch(op);
  }
  by_chunks<T>(op, p, g, s, [&](int64_t n0, int64_t cnt, int64_t len, T* col, T* out) {
    im2col(op, p, g, n0, cnt, x, col, s);
    for (int64_t gi = 0; gi < p.groups; ++gi)
      gemm<T>(product(g.kg, len, g.crs, g.crs, len, len, false, false), w + gi * g.kg * g.crs, col + gi * g.crs * len,
              out + gi * g.kg * len, stream, tf32);
    unpack_kernel<T><<<grid_for(cnt * p.k * g.pos, kBlock), kBlock, 0, s>>>(cnt, p.k, g.pos, out, b,
                                                                             y + n0 * p.k * g.pos);
    check_launch(op);
  });
}

template <class T>
void conv_backward_data(const ConvParams& p, const T* dy, const T* w, T* dx, std::uintptr_t stream, bool tf32) {
  const char* op = "conv2d_backward";
  if (p.n == 0) return;
  DeviceGuard guard(op, device_of(op, {dy, w, dx}));
  const cudaStream_t s = as_stream(stream);
  const Geometry g = geometry(p);
  if (g.cg == 1) {
    depthwise_backward_data_kernel<T><<<grid_for(p.n * p.c * g.hw, kBlock), kBlock, 0, s>>>(p, g.kg, dy, w, dx);
    return check_launch(op);
  }
  by_chunks<T>(op, p, g, s, [&](int64_t n0, int64_t cnt, int64_t len, T* col, T* dyt) {
    pack(op, p, g, n0, cnt, dy, dyt, s);
    for (int64_t gi = 0; gi < p.groups; ++gi)  // dcol_g (crs x len) = W_g^T (crs x kg) dyt_g (kg x len)
      gemm<T>(product(g.crs, len, g.kg, g.crs, len, len, true, false), w + gi * g.kg * g.crs, dyt + gi * g.kg * len,
              col + gi * g.crs * len, stream, tf32);
    col2im_kernel<T><<<grid_for(cnt * p.c * g.hw, kBlock), kBlock, 0, s>>>(p, cnt, col, dx + n0 * p.c * g.hw);
    check_launch(op);
  });
}

template <class T>
void conv_backward_weight(const ConvParams& p, const T* dy, const T* x, T* dw, T* db, std::uintptr_t stream,
                          bool tf32) {
  const char* op = "conv2d_backward";
  if (!dw && !db) return;
  const Geometry g = geometry(p);
  const int64_t wsize = p.k * g.crs;
  const cudaStream_t s = as_stream(stream);
  if (p.n == 0) {  // nothing to sum: zeros
    DeviceGuard guard(op, dw && db ? device_of(op, {dw, db}) : device_of(op, {dw ? dw : db}));
    for (auto [ptr, count] : {std::pair<T*, int64_t>{dw, wsize}, {db, p.k}}) {
      if (!ptr) continue;
      const cudaError_t err = cudaMemsetAsync(ptr, 0, static_cast<size_t>(count) * sizeof(T), s);
      if (err != cudaSuccess) cuda_fail(op, "cannot clear a gradient", err);
    }
    return;
  }
  DeviceGuard guard(op, dw && db ? device_of(op, {dy, x, dw, db}) : device_of(op, {dy, x, dw ? dw : db}));
  if (db) {
    bias_grad_kernel<T><<<static_cast<unsigned>(std::min<int64_t>(p.k, 65536)), kBlock, 0, s>>>(p.n, p.k, g.pos, dy, db);
    check_launch(op);
  }
  if (!dw) return;
  if (g.cg == 1) {
    depthwise_backward_weight_kernel<T>
        <<<static_cast<unsigned>(std::min<int64_t>(wsize, 65536)), kBlock, 0, s>>>(p, g.kg, dy, x, dw);
    return check_launch(op);
  }
  by_chunks<T>(op, p, g, s, [&](int64_t n0, int64_t cnt, int64_t len, T* col, T* dyt) {
    im2col(op, p, g, n0, cnt, x, col, s);
    pack(op, p, g, n0, cnt, dy, dyt, s);
    for (int64_t gi = 0; gi < p.groups; ++gi)  // dW_g (kg x crs) (+)= dyt_g (kg x len) col_g^T (len x crs)
      gemm<T>(product(g.kg, g.crs, len, len, len, g.crs, false, true, n0 == 0 ? 0.0 : 1.0), dyt + gi * g.kg * len,
              col + gi * g.crs * len, dw + gi * g.kg * g.crs, stream, tf32);
  });
}

#define DK_INSTANTIATE(T)                                                                                         \
  template void conv_forward<T>(const ConvParams&, const T*, const T*, const T*, T*, std::uintptr_t, bool);     \
  template void conv_backward_data<T>(const ConvParams&, const T*, const T*, T*, std::uintptr_t, bool);         \
  template void conv_backward_weight<T>(const ConvParams&, const T*, const T*, T*, T*, std::uintptr_t, bool);
DK_INSTANTIATE(float)
DK_INSTANTIATE(double)
#undef DK_INSTANTIATE

}  // namespace dk::cuda
