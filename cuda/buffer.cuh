// Temporary device memory for one op call and small reads back to the host
// (include from .cu files only). Scratch is stream-ordered (cudaMallocAsync /
// cudaFreeAsync on the op's stream): it is released once the op's kernels on
// that stream are done, without synchronising the host. Where the device has no
// stream-ordered allocator it falls back to cudaMalloc / cudaFree (cudaFree
// waits for the device, so the kernels are done with the memory by then).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "cuda/launch.h"

namespace dk::cuda {

class Scratch {
 public:
  Scratch(const char* op, size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes == 0) return;
    cudaError_t err = cudaMallocAsync(&ptr_, bytes, stream);
    if (err == cudaErrorNotSupported) {
      cudaGetLastError();  // clear it: the fallback below decides
      ordered_ = false;
      err = cudaMalloc(&ptr_, bytes);
    }
    if (err != cudaSuccess) cuda_fail(op, "cannot allocate " + std::to_string(bytes) + " bytes of scratch", err);
  }
  ~Scratch() {
    if (!ptr_) return;
    if (ordered_) cudaFreeAsync(ptr_, stream_);
    else cudaFree(ptr_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
  bool ordered_ = true;
};

// *src copied to the host once the stream's work so far is done (a synchronisation:
// used where the host must decide, e.g. to raise on a bad index).
template <class T>
T read_back(const char* op, const T* src, cudaStream_t stream) {
  T value{};
  cudaError_t err = cudaMemcpyAsync(&value, src, sizeof(T), cudaMemcpyDeviceToHost, stream);
  if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
  if (err != cudaSuccess) cuda_fail(op, "cannot read a result back from the GPU", err);
  return value;
}

// device_of over the pointers that are not null (optional arrays, and arrays
// the bindings pass as null because they are empty); the current device when
// all are null.
inline int device_of_present(const char* op, std::initializer_list<const void*> ptrs) {
  int device = -1;
  for (const void* p : ptrs) {
    if (!p) continue;
    const int d = device_of(op, {p});
    if (device >= 0 && d != device)
      throw std::invalid_argument(std::string("[") + op + "] the arrays are on different GPUs (" +
                                  std::to_string(device) + " and " + std::to_string(d) + ")");
    device = d;
  }
  if (device < 0) {
    cudaError_t err = cudaGetDevice(&device);
    if (err != cudaSuccess) cuda_fail(op, "cannot read the current device", err);
  }
  return device;
}

}  // namespace dk::cuda
