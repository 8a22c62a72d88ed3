// Macros and types shared by every layer: CPU kernels, CUDA kernels, bindings.
#pragma once
#include <cstdint>

// Per-element math written once and compiled for both devices. On the host the
// functions get internal linkage, so the copy compiled into the AVX-512 object
// can never be picked by the linker for the baseline object.
#if defined(__CUDACC__)
#define DK_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DK_HOST_DEVICE static inline __attribute__((always_inline))
#endif

#define DK_STRINGIFY2(x) #x
#define DK_STRINGIFY(x) DK_STRINGIFY2(x)
