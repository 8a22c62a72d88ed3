// LSTM and GRU, forward and backward through time, over a whole sequence of
// one layer in one call (a cell is a sequence of one step). Shapes, with
// S = p.steps, B = p.batch, I = p.input, H = p.hidden and G = 4 (LSTM) or 3 (GRU):
//   x (S, B, I); h0, c0 (B, H); hs, cs (S, B, H): the states after each step
//   weights as PyTorch: w_ih (G H, I), w_hh (G H, H), b_ih, b_hh (G H) or nullptr
//   LSTM gates (S, B, 4H): i, f, g, o after their nonlinearities
//   GRU saved (S, B, 4H): r, z, n after their nonlinearities, then hn = h W_hn^T + b_hn
// Backward takes dy (S, B, H), the gradient of hs, and dh_n, dc_n (B, H), the
// gradients of the final states (each nullptr for zero), and overwrites dx,
// dh0, dc0 and the weight gradients (the bias gradients only when non-null).
#pragma once
#include "core/params.h"
#include "cpu/dispatch.h"

namespace dk::cpu {

// RnnWeights and RnnGrads (core/params.h) are shared with the CUDA kernels.
template <class T>
struct RnnKernels {
  void (*lstm_forward)(const RnnParams& p, const T* x, const T* h0, const T* c0, const RnnWeights<T>& w, T* hs,
                       T* cs, T* gates);
  void (*lstm_backward)(const RnnParams& p, const T* x, const T* h0, const T* c0, const RnnWeights<T>& w,
                        const T* hs, const T* cs, const T* gates, const T* dy, const T* dh_n, const T* dc_n, T* dx,
                        T* dh0, T* dc0, const RnnGrads<T>& g);
  void (*gru_forward)(const RnnParams& p, const T* x, const T* h0, const RnnWeights<T>& w, T* hs, T* saved);
  void (*gru_backward)(const RnnParams& p, const T* x, const T* h0, const RnnWeights<T>& w, const T* hs,
                       const T* saved, const T* dy, const T* dh_n, T* dx, T* dh0, const RnnGrads<T>& g);
};

DK_DECLARE_KERNELS(RnnKernels, rnn)

}  // namespace dk::cpu
