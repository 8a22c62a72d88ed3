// What every CUDA op file needs around its launches (include from .cu files
// only): the caller's stream, the device that holds the arrays, grid sizes for
// grid-stride loops and launch-error checks that name the op.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace dk::cuda {

inline cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

[[noreturn]] inline void cuda_fail(const char* op, const std::string& what, cudaError_t err) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  throw std::runtime_error(std::string("[") + op + "] " + what + ": " + cudaGetErrorString(err));
}

// Throws when the launch just made failed (bad configuration, no device, ...).
inline void check_launch(const char* op) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) cuda_fail(op, "CUDA kernel launch failed", err);
}

// The GPU holding every pointer (device or managed memory); std::invalid_argument
// for host memory or pointers on different GPUs, which a kernel cannot use.
inline int device_of(const char* op, std::initializer_list<const void*> ptrs) {
  int device = -1;
  for (const void* p : ptrs) {
    cudaPointerAttributes attr{};
    cudaError_t err = cudaPointerGetAttributes(&attr, p);
    if (err != cudaSuccess) cuda_fail(op, "cannot query a CUDA array's pointer", err);
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
      throw std::invalid_argument(std::string("[") + op + "] an array given as CUDA memory is not device memory");
    if (device >= 0 && attr.device != device)
      throw std::invalid_argument(std::string("[") + op + "] the arrays are on different GPUs (" +
                                  std::to_string(device) + " and " + std::to_string(attr.device) + ")");
    device = attr.device;
  }
  return device;
}

// Makes `device` current for the launches of one op and restores the caller's.
class DeviceGuard {
 public:
  DeviceGuard(const char* op, int device) {
    cudaError_t err = cudaGetDevice(&previous_);
    if (err != cudaSuccess) cuda_fail(op, "cannot read the current device", err);
    if (device != previous_ && (err = cudaSetDevice(device)) != cudaSuccess)
      cuda_fail(op, "cannot select device " + std::to_string(device), err);
  }
  ~DeviceGuard() {
    int now = previous_;
    if (cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// Blocks for a grid-stride loop over n items: enough to fill any GPU, capped
// so the loop, not the grid, covers very large n.
inline unsigned grid_for(int64_t n, int block) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + block - 1) / block, 65536)));
}

// The first index and the stride of a grid-stride loop, in 64 bits.
__device__ __forceinline__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

}  // namespace dk::cuda
