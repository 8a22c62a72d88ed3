// CUDA optimizer steps and gradient utilities: the CPU family's ops
// (csrc/cpu/optim.h) over lists of device arrays, each a single fused launch
// over every tensor, on `stream` (a cudaStream_t as an integer, as in
// cuda/activation.h). Plain C++ declarations, so the bindings compile without
// nvcc. All pointers must be device memory of one GPU (checked:
// std::invalid_argument); a failed launch throws std::runtime_error naming the op.
#pragma once
#include <cstdint>

#include "core/params.h"

namespace dk::cuda {

// count tensors of sizes[i] elements; the pointer arrays live in host memory and
// hold device pointers. state[k] is the k-th state list (nullptr where the
// optimizer keeps no such state), parallel to params.
template <class T>
struct TensorLists {
  int64_t count = 0;
  T* const* params = nullptr;
  const T* const* grads = nullptr;
  const int64_t* sizes = nullptr;
  T* const* state[3] = {nullptr, nullptr, nullptr};
};

// One overload per optimizer, told apart by its params struct (the CPU family
// has kernels.sgd, kernels.adam, ...). Each returns true when it updated, false
// when check_finite found a NaN/Inf gradient, in which case nothing was
// written. With check_finite the call waits for the stream (it reads one flag
// back); without, it returns once the work is enqueued.
// sgd: state[0] momentum buffers (when momentum != 0).
template <class T>
bool optim_step(const SgdParams& p, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream);
// adagrad: state[0] sums.
template <class T>
bool optim_step(const AdagradParams& p, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream);
// adadelta: state[0] square_avgs, state[1] acc_deltas.
template <class T>
bool optim_step(const AdadeltaParams& p, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream);
// rmsprop: state[0] square_avgs, state[1] grad_avgs (centered), state[2] momentum buffers (momentum > 0).
template <class T>
bool optim_step(const RmspropParams& p, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream);
// adam: state[0] exp_avgs, state[1] exp_avg_sqs, state[2] max_exp_avg_sqs (amsgrad).
template <class T>
bool optim_step(const AdamParams& p, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream);
// adamax: state[0] exp_avgs, state[1] exp_infs.
template <class T>
bool optim_step(const AdamaxParams& p, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream);
// nadam: state[0] exp_avgs, state[1] exp_avg_sqs.
template <class T>
bool optim_step(const NadamParams& p, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream);

// count arrays of sizes[i] elements (device pointers in a host array).
template <class T>
struct ArrayLists {
  int64_t count = 0;
  T* const* data = nullptr;
  const int64_t* sizes = nullptr;
};

// True when no element is NaN or +-Inf. Waits for the stream.
template <class T>
bool all_finite(const ArrayLists<const T>& a, std::uintptr_t stream);
// cpu::OptimKernels::clip_grad_norm on the GPU: the norm (float64 partial sums
// per chunk, then one block combining them in a fixed order: the same bits on
// every run), then the scaling pass when ClipParams asks for it. Waits for the
// stream (the norm is returned to the host).
template <class T>
double clip_grad_norm(const ClipParams& p, const ArrayLists<T>& g, std::uintptr_t stream);
// Every element clamped to [-clip, clip]; NaN stays NaN.
template <class T>
void clip_grad_value(T clip, const ArrayLists<T>& g, std::uintptr_t stream);

}  // namespace dk::cuda
