// CUDA loss kernels: the CPU family's ops (csrc/cpu/loss.h) on device pointers,
// launched on `stream` (a cudaStream_t as an integer, as in cuda/activation.h).
// Plain C++ declarations, so the bindings compile without nvcc. Labels must be
// in [0, c): the bindings check them with first_bad_label before any loss runs.
// Null pointers are allowed for empty arrays and absent weights.
#pragma once
#include <cstdint>

#include "core/params.h"

namespace dk::cuda {

// The first row i whose labels[i] is outside [0, c), with *label set to its
// label, or -1 when every label is a class. Waits for the check to finish.
int64_t first_bad_label(const char* op, int64_t n, int64_t c, const int64_t* labels, int64_t* label,
                        std::uintptr_t stream);

template <class T>
void cross_entropy(const LossParams& p, const T* logits, const int64_t* labels, T* out, std::uintptr_t stream);
template <class T>
void cross_entropy_backward(const LossParams& p, const T* logits, const int64_t* labels, const T* dout,
                            T* dlogits, std::uintptr_t stream);
template <class T>
void mse(const LossParams& p, const T* pred, const T* target, T* out, std::uintptr_t stream);
template <class T>
void mse_backward(const LossParams& p, const T* pred, const T* target, const T* dout, T* dpred,
                  std::uintptr_t stream);
template <class T>
void bce_with_logits(const LossParams& p, const T* logits, const T* target, const T* pos_weight, T* out,
                     std::uintptr_t stream);
template <class T>
void bce_with_logits_backward(const LossParams& p, const T* logits, const T* target, const T* pos_weight,
                              const T* dout, T* dlogits, std::uintptr_t stream);
template <class T>
void multi_margin(const MarginParams& p, const T* x, const int64_t* labels, const T* weight, T* out,
                  std::uintptr_t stream);
template <class T>
void multi_margin_backward(const MarginParams& p, const T* x, const int64_t* labels, const T* weight,
                           const T* dout, T* dx, std::uintptr_t stream);

}  // namespace dk::cuda
