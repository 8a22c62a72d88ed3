// LSTM and GRU gate math of one element, written once for both devices: the
// CPU kernels call these with V = Vec<T> (exp and tanh then come from
// cpu/simd_math.h by argument-dependent lookup), the CUDA kernels with V = T.
//
// PyTorch's formulation and gate order. With a = x W_ih^T + b_ih + h W_hh^T + b_hh
// split by gate along the last axis:
//   LSTM (i, f, g, o):  i = sigmoid(a_i), f = sigmoid(a_f), g = tanh(a_g), o = sigmoid(a_o)
//                       c' = f c + i g,   h' = o tanh(c')
//   GRU (r, z, n), with the input part gi = x W_ih^T + b_ih and the recurrent part
//   gh = h W_hh^T + b_hh kept apart, since r multiplies the recurrent part of n:
//                       r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z)
//                       n = tanh(gi_n + r gh_n),  h' = (1 - z) n + z h = n + z (h - n)
// Forward saves the activated gates (and GRU's gh_n); backward differentiates
// from them, so no nonlinearity is evaluated twice except tanh(c').
#pragma once
#include "core/activation_math.h"
#include "core/dk.h"

namespace dk {

// -- LSTM -----------------------------------------------------------------------

// In: the pre-activations i, f, g, o and the cell state c. Out: i, f, g, o
// activated (what backward needs), the new cell state c_new and hidden state h_new.
template <class V, class T>
DK_HOST_DEVICE void lstm_cell_forward(V& i, V& f, V& g, V& o, V c, V& c_new, V& h_new) {
  i = sigmoid<V, T>(i);
  f = sigmoid<V, T>(f);
  g = tanh(g);
  o = sigmoid<V, T>(o);
  c_new = f * c + i * g;
  h_new = o * tanh(c_new);
}

// In: the activated gates, the old and new cell states, dh (of h_new) and dc
// (of c_new). Out: the gradients of the four pre-activations, and dc becomes
// the gradient of the old cell state.
//   dc' = dc + dh o tanh'(c'), tanh'(c') = 1 - tanh^2(c')
//   da_i = dc' g i (1 - i)      (sigmoid' = s (1 - s))
//   da_f = dc' c f (1 - f)
//   da_g = dc' i (1 - g^2)
//   da_o = dh tanh(c') o (1 - o)
//   dc_old = dc' f
template <class V, class T>
DK_HOST_DEVICE void lstm_cell_backward(V i, V f, V g, V o, V c, V c_new, V dh, V& dc, V& da_i, V& da_f, V& da_g,
                                  V& da_o) {
  const V one(T(1));
  V tc = tanh(c_new);
  V dct = dc + dh * o * (one - tc * tc);
  da_i = dct * g * i * (one - i);
  da_f = dct * c * f * (one - f);
  da_g = dct * i * (one - g * g);
  da_o = dh * tc * o * (one - o);
  dc = dct * f;
}

// -- GRU ------------------------------------------------------------------------

// In: the input parts (ir, iz, in), the recurrent parts (hr, hz, hn) of the
// pre-activations and the old hidden state h. Out: the activated gates r, z, n
// (saved with hn for backward) and the new hidden state.
template <class V, class T>
DK_HOST_DEVICE void gru_cell_forward(V ir, V iz, V in, V hr, V hz, V hn, V h, V& r, V& z, V& n, V& h_new) {
  r = sigmoid<V, T>(ir + hr);
  z = sigmoid<V, T>(iz + hz);
  n = tanh(in + r * hn);
  h_new = n + z * (h - n);
}

// In: the saved r, z, n, hn, the old hidden state h and dh (of h_new). Out: the
// gradients of the input parts (da_r, da_z, da_in) and of the recurrent parts
// (da_r, da_z, da_hn: r and z enter both sums alike), and dh_old, the part of
// h's gradient that does not pass through W_hh.
//   dn = dh (1 - z),   da_in = dn (1 - n^2),   da_hn = da_in r
//   da_z = dh (h - n) z (1 - z)
//   da_r = da_in hn r (1 - r)
//   dh_old = dh z
template <class V, class T>
DK_HOST_DEVICE void gru_cell_backward(V r, V z, V n, V hn, V h, V dh, V& da_r, V& da_z, V& da_in, V& da_hn,
                                 V& dh_old) {
  const V one(T(1));
  da_in = dh * (one - z) * (one - n * n);
  da_hn = da_in * r;
  da_z = dh * (h - n) * z * (one - z);
  da_r = da_in * hn * r * (one - r);
  dh_old = dh * z;
}

}  // namespace dk
