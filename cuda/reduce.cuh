// Warp and block reductions shared by the CUDA kernels (include from .cu files
// only). Fixed combination order, no atomics: a reduction gives the same bits
// on every run.
#pragma once
#include <cuda_runtime.h>

namespace dk::cuda {

struct MaxOp {
  // NaNs are skipped here; they reach the sum through exp and make the row NaN.
  template <class T>
  __device__ T operator()(T a, T b) const { return b > a ? b : a; }
};
struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

template <class T, class Op>
__device__ T warp_reduce(T v, Op op) {
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Every thread of the block gets op over the block's v. blockDim.x is a multiple of 32.
template <class T, class Op>
__device__ T block_reduce(T v, Op op, T identity, T* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_reduce(v, op);
  __syncthreads();  // shared may still be read by the previous reduction
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = warp_reduce(lane < warps ? shared[lane] : identity, op);
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  return shared[0];
}

}  // namespace dk::cuda
