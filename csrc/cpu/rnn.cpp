// LSTM and GRU over a whole sequence of one layer, forward and backward
// through time (shapes in rnn.h; a cell is the one-step case of the same code).
//
// Forward: the input projection of every step is one GEMM before the
// recurrence, x (S B, I) @ w_ih^T -> (S B, G H), with the biases added by the
// GEMM's epilogue (LSTM: b_ih + b_hh, summed once; GRU: b_ih). Each step then
// adds the recurrent projection h @ w_hh^T with one GEMM on w_hh packed once per
// call (the engine's pack_b with trans_b: no repacking per step), and one fused,
// vectorised pass over the step's gates applies the nonlinearities and the
// state update (core/rnn_math.h, the formulas the CUDA kernels share) and keeps
// the activated gates for backward. GRU keeps the recurrent part apart
// (gh = h w_hh^T + b_hh), since r multiplies its n third.
// Backward: per step (last to first) one fused pass turns dh, dc and the saved
// gates into the gate gradients dA_t (stored for all steps), then one GEMM
// carries dh to the previous step, dh = dA_t @ w_hh. Everything else is a
// large GEMM after the loop: dx = dA @ w_ih, dw_ih = dA^T x, dw_hh = dA^T
// [h0; hs[0 .. S-2]] (two GEMMs, the second accumulating with beta = 1), and
// the bias gradients are dA's column sums. So the recurrence runs one small
// GEMM per step each way, and w_hh is packed once per call for each direction
// (packing it for the backward's dh GEMM too, rather than reading it in place:
// LSTM T=50 (64, 128, 256) backward 56 -> 54 ms, one thread, a busy machine).
// A one-step sequence (a cell) packs nothing: the engine packs a trans_b
// operand on the fly, which for one product is the same work.
// Tried and dropped: the recurrent GEMM transposed (gates^T = w_hh h^T, so
// that m = G H rather than the batch fills the 14-row micro-kernel): no faster
// at (B, H) = (32, 512) or (64, 256), and it would need transposed states.
// Cost at those sizes is the GEMMs' (the gate passes are about a tenth).
#include "cpu/rnn.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "core/rnn_math.h"
#include "cpu/gemm.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "cpu/simd_math.h"

namespace dk::cpu::DK_ISA_NS {
namespace {

// An uninitialised, 64-byte aligned array of n elements (at least one).
template <class T>
std::unique_ptr<T[], AlignedFree> buffer(int64_t n) {
  const size_t bytes = (static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T) + 63) / 64 * 64;
  T* p = static_cast<T*>(std::aligned_alloc(64, bytes));
  if (!p) throw std::bad_alloc();
  return std::unique_ptr<T[], AlignedFree>(p);
}

template <class T>
void copy_or_zero(T* dst, const T* src, int64_t n) {
  if (n <= 0) return;
  if (src) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(T));
  else std::memset(dst, 0, static_cast<size_t>(n) * sizeof(T));
}

// Row-major C (m x n) = op(A) (m x k) op(B) (k x n) + beta C with the given leading dimensions.
GemmParams mm(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, bool trans_a, bool trans_b,
              double beta = 0.0) {
  GemmParams p;
  p.m = m, p.n = n, p.k = k;
  p.lda = std::max<int64_t>(lda, 1), p.ldb = std::max<int64_t>(ldb, 1), p.ldc = std::max<int64_t>(n, 1);
  p.trans_a = trans_a, p.trans_b = trans_b, p.beta = beta;
  return p;
}

// f(row) for each of `rows` rows of `per_row` elements of streaming work.
template <class F>
void for_rows(int64_t rows, int64_t per_row, F f) {
#pragma omp parallel for num_threads(threads_for(rows * per_row)) schedule(static)
  for (int64_t b = 0; b < rows; ++b) f(b);
}

// f(j, n) over the vectors of a row of h elements: j the first element, n the
// lanes in use (the last vector may be partial).
template <class T, class F>
inline void for_lanes(int64_t h, F f) {
  for (int64_t j = 0; j < h; j += Vec<T>::width) f(j, h - j);
}

// The recurrent GEMM of every step, with w_hh (G H, H) packed once per call as
// its op(B): w_hh^T for forward, w_hh for backward.
template <class T>
struct Recurrent {
  const RnnParams& p;
  int64_t gh;  // G * H
  const T* w_hh;
  PackedMatrix<T> packed;

  Recurrent(const RnnParams& p_, int64_t gates, const T* w, bool backward) : p(p_), gh(gates * p_.hidden), w_hh(w) {
    if (p.steps > 1 && p.batch > 1 && p.hidden > 0)
      packed = backward ? pack_b<T>(gh, p.hidden, w_hh, p.hidden, false)   // dh = dA w_hh
                        : pack_b<T>(p.hidden, gh, w_hh, p.hidden, true);   // a = h w_hh^T
  }
  // out (B, G H) = h (B, H) @ w_hh^T + beta * out + bias
  void forward(const T* h, T* out, double beta, const T* bias = nullptr) const {
    const GemmParams q = mm(p.batch, gh, p.hidden, p.hidden, p.hidden, false, true, beta);
    const GemmBias<T> b{bias, nullptr};
    if (packed.data) gemm<T>(q, h, packed, out, b);
    else gemm<T>(q, h, w_hh, out, b);
  }
  // dh (B, H) = dA (B, G H) @ w_hh + beta * dh
  void backward(const T* da, T* dh, double beta) const {
    const GemmParams q = mm(p.batch, p.hidden, gh, gh, p.hidden, false, false, beta);
    if (packed.data) gemm<T>(q, da, packed, dh);
    else gemm<T>(q, da, w_hh, dh);
  }
};

// After the backward loop, from the gate gradients of every step, dA (S B, G H):
// the input side, dx = dA @ w_ih and dw_ih = dA^T x, and the column sums of dA
// (a bias gradient, when db is non-null)...
template <class T>
void input_gradients(const RnnParams& p, int64_t gh, const T* x, const T* w_ih, const T* da, T* dx, T* dw_ih,
                     T* db) {
  const int64_t SB = p.steps * p.batch, I = p.input;
  gemm<T>(mm(SB, I, gh, gh, I, false, false), da, w_ih, dx);
  gemm<T>(mm(gh, I, SB, gh, I, true, false), da, x, dw_ih);
  if (db) sum_rows<T>(SB, gh, da, db);
}

// ... and the recurrent side, dw_hh = dA^T [h0; hs[0 .. S-2]]: step 0 read h0,
// the others the states before them (a second GEMM accumulating with beta = 1).
// S >= 1 here (nothing_to_do handles S = 0).
template <class T>
void recurrent_gradients(const RnnParams& p, int64_t gh, const T* h0, const T* hs, const T* da, T* dw_hh, T* db) {
  const int64_t S = p.steps, B = p.batch, H = p.hidden;
  gemm<T>(mm(gh, H, B, gh, H, true, false), da, h0, dw_hh);
  if (S > 1) gemm<T>(mm(gh, H, (S - 1) * B, gh, H, true, false, 1.0), da + B * gh, hs, dw_hh);
  if (db) sum_rows<T>(S * B, gh, da, db);
}

// Backward with nothing to differentiate (no steps, an empty batch or no
// hidden units): zero gradients, and the final states' gradients pass to the
// initial states. Also keeps the loops below from running S empty steps.
template <class T>
bool nothing_to_do(const RnnParams& p, int64_t gates, const T* dh_n, const T* dc_n, T* dx, T* dh0, T* dc0,
                   const RnnGrads<T>& g) {
  const int64_t S = p.steps, B = p.batch, H = p.hidden, gh = gates * H;
  if (S * B != 0 && H != 0) return false;
  copy_or_zero<T>(dx, nullptr, S * B * p.input);
  copy_or_zero(dh0, dh_n, B * H);
  if (dc0) copy_or_zero(dc0, dc_n, B * H);
  copy_or_zero<T>(g.dw_ih, nullptr, gh * p.input);
  copy_or_zero<T>(g.dw_hh, nullptr, gh * H);
  if (g.db_ih) copy_or_zero<T>(g.db_ih, nullptr, gh);
  if (g.db_hh) copy_or_zero<T>(g.db_hh, nullptr, gh);
  return true;
}

// ---- LSTM ----------------------------------------------------------------------

template <class T>
void lstm_forward(const RnnParams& p, const T* x, const T* h0, const T* c0, const RnnWeights<T>& w, T* hs, T* cs,
                  T* gates) {
  using V = Vec<T>;
  const int64_t S = p.steps, B = p.batch, H = p.hidden, G4 = 4 * H, BH = B * H;
  if (S * B == 0 || H == 0) return;  // every output is empty
  // The biases, summed once: b_ih + b_hh.
  std::unique_ptr<T[], AlignedFree> bsum;
  const T* bias = w.b_ih ? w.b_ih : w.b_hh;
  if (w.b_ih && w.b_hh) {
    bsum = buffer<T>(G4);
    for (int64_t j = 0; j < G4; ++j) bsum[j] = w.b_ih[j] + w.b_hh[j];
    bias = bsum.get();
  }
  // gates (S B, 4H) = x w_ih^T + bias: every step's input projection at once
  gemm<T>(mm(S * B, G4, p.input, p.input, p.input, false, true), x, w.w_ih, gates, GemmBias<T>{bias, nullptr});
  const Recurrent<T> rec(p, 4, w.w_hh, false);
  for (int64_t t = 0; t < S; ++t) {
    const T* h = t ? hs + (t - 1) * BH : h0;
    const T* c = t ? cs + (t - 1) * BH : c0;
    T* a = gates + t * B * G4;
    rec.forward(h, a, 1.0);  // a += h w_hh^T
    for_rows(B, G4, [&](int64_t b) {
      T* ab = a + b * G4;
      const int64_t r = b * H + t * BH;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        V i = V::load(ab + j, n), f = V::load(ab + H + j, n), g = V::load(ab + 2 * H + j, n),
          o = V::load(ab + 3 * H + j, n), c_new, h_new;
        lstm_cell_forward<V, T>(i, f, g, o, V::load(c + b * H + j, n), c_new, h_new);
        i.store(ab + j, n), f.store(ab + H + j, n), g.store(ab + 2 * H + j, n), o.store(ab + 3 * H + j, n);
        c_new.store(cs + r + j, n), h_new.store(hs + r + j, n);
      });
    });
  }
}

template <class T>
void lstm_backward(const RnnParams& p, const T* x, const T* h0, const T* c0, const RnnWeights<T>& w, const T* hs,
                   const T* cs, const T* gates, const T* dy, const T* dh_n, const T* dc_n, T* dx, T* dh0, T* dc0,
                   const RnnGrads<T>& g) {
  using V = Vec<T>;
  const int64_t S = p.steps, B = p.batch, H = p.hidden, G4 = 4 * H, BH = B * H;
  if (nothing_to_do(p, 4, dh_n, dc_n, dx, dh0, dc0, g)) return;
  auto da = buffer<T>(S * B * G4);
  // dh0 and dc0 carry dh and dc from step to step.
  copy_or_zero(dh0, dh_n, BH);
  copy_or_zero(dc0, dc_n, BH);
  const Recurrent<T> rec(p, 4, w.w_hh, true);
  for (int64_t t = S - 1; t >= 0; --t) {
    const T* c = t ? cs + (t - 1) * BH : c0;
    const T* a = gates + t * B * G4;
    T* dat = da.get() + t * B * G4;
    for_rows(B, G4, [&](int64_t b) {
      const T* ab = a + b * G4;
      T* dab = dat + b * G4;
      const int64_t r = b * H + t * BH;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        V dh = V::load(dh0 + b * H + j, n), dc = V::load(dc0 + b * H + j, n), di, df, dg, dout;
        if (dy) dh = dh + V::load(dy + r + j, n);
        lstm_cell_backward<V, T>(V::load(ab + j, n), V::load(ab + H + j, n), V::load(ab + 2 * H + j, n),
                                 V::load(ab + 3 * H + j, n), V::load(c + b * H + j, n), V::load(cs + r + j, n), dh,
                                 dc, di, df, dg, dout);
        di.store(dab + j, n), df.store(dab + H + j, n), dg.store(dab + 2 * H + j, n), dout.store(dab + 3 * H + j, n);
        dc.store(dc0 + b * H + j, n);
      });
    });
    rec.backward(dat, dh0, 0.0);  // dh = dA_t w_hh
  }
  input_gradients(p, G4, x, w.w_ih, da.get(), dx, g.dw_ih, g.db_ih ? g.db_ih : g.db_hh);
  recurrent_gradients<T>(p, G4, h0, hs, da.get(), g.dw_hh, nullptr);
  if (g.db_ih && g.db_hh) std::copy(g.db_ih, g.db_ih + G4, g.db_hh);  // both biases enter the same sum
}

// ---- GRU -----------------------------------------------------------------------

template <class T>
void gru_forward(const RnnParams& p, const T* x, const T* h0, const RnnWeights<T>& w, T* hs, T* saved) {
  using V = Vec<T>;
  const int64_t S = p.steps, B = p.batch, H = p.hidden, G3 = 3 * H, G4 = 4 * H, BH = B * H;
  if (S * B == 0 || H == 0) return;  // every output is empty
  auto gi = buffer<T>(S * B * G3), gh = buffer<T>(B * G3);
  // gi (S B, 3H) = x w_ih^T + b_ih: every step's input part at once
  gemm<T>(mm(S * B, G3, p.input, p.input, p.input, false, true), x, w.w_ih, gi.get(), GemmBias<T>{w.b_ih, nullptr});
  const Recurrent<T> rec(p, 3, w.w_hh, false);
  for (int64_t t = 0; t < S; ++t) {
    const T* h = t ? hs + (t - 1) * BH : h0;
    rec.forward(h, gh.get(), 0.0, w.b_hh);  // gh = h w_hh^T + b_hh
    const T* git = gi.get() + t * B * G3;
    T* st = saved + t * B * G4;
    for_rows(B, G4, [&](int64_t b) {
      const T *ib = git + b * G3, *hb = gh.get() + b * G3;
      T* sb = st + b * G4;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        V hn = V::load(hb + 2 * H + j, n), r, z, nn, h_new;
        gru_cell_forward<V, T>(V::load(ib + j, n), V::load(ib + H + j, n), V::load(ib + 2 * H + j, n),
                               V::load(hb + j, n), V::load(hb + H + j, n), hn, V::load(h + b * H + j, n), r, z, nn,
                               h_new);
        r.store(sb + j, n), z.store(sb + H + j, n), nn.store(sb + 2 * H + j, n), hn.store(sb + 3 * H + j, n);
        h_new.store(hs + t * BH + b * H + j, n);
      });
    });
  }
}

template <class T>
void gru_backward(const RnnParams& p, const T* x, const T* h0, const RnnWeights<T>& w, const T* hs, const T* saved,
                  const T* dy, const T* dh_n, T* dx, T* dh0, const RnnGrads<T>& g) {
  using V = Vec<T>;
  const int64_t S = p.steps, B = p.batch, H = p.hidden, G3 = 3 * H, G4 = 4 * H, BH = B * H;
  if (nothing_to_do<T>(p, 3, dh_n, nullptr, dx, dh0, nullptr, g)) return;
  auto dgi = buffer<T>(S * B * G3), dgh = buffer<T>(S * B * G3);
  copy_or_zero(dh0, dh_n, BH);  // carries dh from step to step
  const Recurrent<T> rec(p, 3, w.w_hh, true);
  for (int64_t t = S - 1; t >= 0; --t) {
    const T* h = t ? hs + (t - 1) * BH : h0;
    const T* st = saved + t * B * G4;
    T *dit = dgi.get() + t * B * G3, *dht = dgh.get() + t * B * G3;
    for_rows(B, G4, [&](int64_t b) {
      const T* sb = st + b * G4;
      T *di = dit + b * G3, *dhh = dht + b * G3;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        V dh = V::load(dh0 + b * H + j, n), dar, daz, dain, dahn, dh_old;
        if (dy) dh = dh + V::load(dy + t * BH + b * H + j, n);
        gru_cell_backward<V, T>(V::load(sb + j, n), V::load(sb + H + j, n), V::load(sb + 2 * H + j, n),
                                V::load(sb + 3 * H + j, n), V::load(h + b * H + j, n), dh, dar, daz, dain, dahn,
                                dh_old);
        dar.store(di + j, n), daz.store(di + H + j, n), dain.store(di + 2 * H + j, n);
        dar.store(dhh + j, n), daz.store(dhh + H + j, n), dahn.store(dhh + 2 * H + j, n);
        dh_old.store(dh0 + b * H + j, n);
      });
    });
    rec.backward(dht, dh0, 1.0);  // dh = dh z + dgh_t w_hh
  }
  input_gradients(p, G3, x, w.w_ih, dgi.get(), dx, g.dw_ih, g.db_ih);
  recurrent_gradients(p, G3, h0, hs, dgh.get(), g.dw_hh, g.db_hh);
}

}  // namespace

DK_DEFINE_TABLE(RnnKernels, rnn, lstm_forward<T>, lstm_backward<T>, gru_forward<T>, gru_backward<T>)

}  // namespace dk::cpu::DK_ISA_NS
