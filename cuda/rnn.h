// CUDA LSTM and GRU over a whole sequence of one layer, forward and backward
// through time: the CPU family's ops (csrc/cpu/rnn.h, whose comment gives the
// shapes and the layout of the saved gates) on device pointers, launched on
// `stream` (a cudaStream_t as an integer, as in cuda/activation.h). A cell is
// the one-step case. Plain C++ declarations, so the bindings compile without
// nvcc. All pointers must be device memory of one GPU (checked:
// std::invalid_argument); a failed launch throws std::runtime_error naming the op.
#pragma once
#include <cstdint>

#include "core/params.h"

namespace dk::cuda {

template <class T>
void lstm_forward(const RnnParams& p, const T* x, const T* h0, const T* c0, const RnnWeights<T>& w, T* hs, T* cs,
                  T* gates, std::uintptr_t stream);
template <class T>
void lstm_backward(const RnnParams& p, const T* x, const T* h0, const T* c0, const RnnWeights<T>& w, const T* hs,
                   const T* cs, const T* gates, const T* dy, const T* dh_n, const T* dc_n, T* dx, T* dh0, T* dc0,
                   const RnnGrads<T>& g, std::uintptr_t stream);
template <class T>
void gru_forward(const RnnParams& p, const T* x, const T* h0, const RnnWeights<T>& w, T* hs, T* saved,
                 std::uintptr_t stream);
template <class T>
void gru_backward(const RnnParams& p, const T* x, const T* h0, const RnnWeights<T>& w, const T* hs, const T* saved,
                  const T* dy, const T* dh_n, T* dx, T* dh0, const RnnGrads<T>& g, std::uintptr_t stream);

}  // namespace dk::cuda
