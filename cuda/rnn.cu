// CUDA LSTM and GRU over a sequence, forward and backward through time
// (shapes and saved-gate layout in csrc/cpu/rnn.h; a cell is one step).
// x (S, B, I); states (B, H); hs, cs (S, B, H); w_ih (G H, I), w_hh (G H, H).
//
// The same algorithm as the CPU kernel (csrc/cpu/rnn.cpp), with every matrix
// product left to the CUDA GEMM (cuda/gemm.h) and only the pointwise gate math
// fused, one thread per (batch row, hidden unit), calling core/rnn_math.h: the
// formulas the CPU kernels run.
// Forward: the input projection of all steps is one GEMM, x (S B, I) @ w_ih^T,
// plus the biases (LSTM: b_ih + b_hh, GRU: b_ih) in one pass; then per step a
// recurrent GEMM (LSTM: a += h w_hh^T with beta = 1; GRU: gh = h w_hh^T, b_hh
// added by the gate kernel, since r multiplies its n third) and one gate kernel
// that activates, updates the states and saves the activated gates in place.
// Backward: per step, last to first, one gate kernel turns dh, dc and the saved
// gates into the gate gradients dA_t (kept for every step) and carries dc; one
// GEMM carries dh, dh = dA_t @ w_hh (GRU: beta = 1 onto dh z). After the loop
// the big GEMMs: dx = dA @ w_ih, dw_ih = dA^T x, dw_hh = dA^T [h0; hs[0..S-2]]
// (two GEMMs, the second accumulating with beta = 1), and the bias gradients
// are dA's column sums (a block per 32 columns, a fixed summation order: the
// same bits on every run, no atomics).
// Scratch (dA, GRU's gi and gh) comes from the stream-ordered allocator and is
// freed on the stream after the last kernel that reads it.
#include "cuda/rnn.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <initializer_list>
#include <string>

#include "core/rnn_math.h"
#include "cuda/gemm.h"
#include "cuda/launch.h"

namespace dk::cuda {
namespace {

constexpr int kBlock = 256;

void check(const char* op, const char* what, cudaError_t err) {
  if (err != cudaSuccess) cuda_fail(op, what, err);
}

// The GPU of every non-null pointer (an empty array may have none).
int device_of_all(const char* op, std::initializer_list<const void*> ptrs) {
  int dev = -1;
  for (const void* p : ptrs) {
    if (p == nullptr) continue;
    const int d = device_of(op, {p});
    if (dev >= 0 && d != dev)
      throw std::invalid_argument(std::string("[") + op + "] the arrays are on different GPUs (" +
                                  std::to_string(dev) + " and " + std::to_string(d) + ")");
    dev = d;
  }
  if (dev < 0) check(op, "cannot read the current device", cudaGetDevice(&dev));
  return dev;
}

// n elements of device scratch, freed on the stream when it goes out of scope.
template <class T>
class Scratch {
 public:
  Scratch(const char* op, int64_t n, cudaStream_t s) : stream_(s) {
    check(op, "cannot allocate device scratch memory",
          cudaMallocAsync(reinterpret_cast<void**>(&ptr_), static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T), s));
  }
  ~Scratch() { cudaFreeAsync(ptr_, stream_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
  cudaStream_t stream_;
};

// Row-major C (m x n, ldc = n) = op(A) op(B) + beta C, as the CPU kernel's mm().
// Empty products are settled here (k = 0: C = beta C, with beta 0 or 1 only),
// so the GEMM sees only real work.
template <class T>
void mm(const char* op, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, bool trans_a, const T* b,
        int64_t ldb, bool trans_b, T* c, double beta, cudaStream_t s) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == 0.0)
      check(op, "cannot clear an output", cudaMemsetAsync(c, 0, static_cast<size_t>(m * n) * sizeof(T), s));
    return;
  }
  GemmParams p;
  p.m = m, p.n = n, p.k = k;
  p.lda = std::max<int64_t>(lda, 1), p.ldb = std::max<int64_t>(ldb, 1), p.ldc = n;
  p.trans_a = trans_a, p.trans_b = trans_b, p.beta = beta;
  gemm<T>(p, a, b, c, reinterpret_cast<std::uintptr_t>(s));
}

// dst = src (n elements), or zeros when src is nullptr.
template <class T>
void copy_or_zero(const char* op, T* dst, const T* src, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  const size_t bytes = static_cast<size_t>(n) * sizeof(T);
  check(op, "cannot copy a state",
        src ? cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s) : cudaMemsetAsync(dst, 0, bytes, s));
}

// -- kernels -------------------------------------------------------------------------

// a (rows, n) += b1 + b2 along the columns (either may be nullptr): the biases of
// the input projection, summed first as the CPU does (b_ih + b_hh).
template <class T>
__global__ void add_bias_kernel(int64_t rows, int64_t n, T* a, const T* b1, const T* b2) {
  for (int64_t i = first_index(); i < rows * n; i += grid_stride()) {
    const int64_t c = i % n;
    const T v = b1 ? (b2 ? b1[c] + b2[c] : b1[c]) : b2[c];
    a[i] += v;
  }
}

// One LSTM step: a (B, 4H) pre-activations in, activated gates out (in place);
// c (B, H) the old cell state; c_new, h_new (B, H).
template <class T>
__global__ void lstm_forward_kernel(int64_t B, int64_t H, T* a, const T* c, T* c_new, T* h_new) {
  for (int64_t idx = first_index(); idx < B * H; idx += grid_stride()) {
    const int64_t b = idx / H, j = idx % H;
    T* ab = a + b * 4 * H;
    T i = ab[j], f = ab[H + j], g = ab[2 * H + j], o = ab[3 * H + j], cn, hn;
    lstm_cell_forward<T, T>(i, f, g, o, c[idx], cn, hn);
    ab[j] = i, ab[H + j] = f, ab[2 * H + j] = g, ab[3 * H + j] = o;
    c_new[idx] = cn, h_new[idx] = hn;
  }
}

// One LSTM step backward: dh (B, H) the carried gradient (plus dy_t when non-null),
// dc (B, H) carried in place; saved gates (B, 4H); c, c_new the cell states
// before and after; da (B, 4H) the pre-activation gradients out.
template <class T>
__global__ void lstm_backward_kernel(int64_t B, int64_t H, const T* gates, const T* c, const T* c_new,
                                     const T* dy, const T* dh, T* dc, T* da) {
  for (int64_t idx = first_index(); idx < B * H; idx += grid_stride()) {
    const int64_t b = idx / H, j = idx % H;
    const T* ab = gates + b * 4 * H;
    T* db = da + b * 4 * H;
    T h = dh[idx], dcv = dc[idx], di, df, dg, dout;
    if (dy) h = h + dy[idx];
    lstm_cell_backward<T, T>(ab[j], ab[H + j], ab[2 * H + j], ab[3 * H + j], c[idx], c_new[idx], h, dcv, di, df,
                             dg, dout);
    db[j] = di, db[H + j] = df, db[2 * H + j] = dg, db[3 * H + j] = dout;
    dc[idx] = dcv;
  }
}

// One GRU step: gi (B, 3H) the input part (biased), gh (B, 3H) = h w_hh^T (b_hh
// added here, nullptr for none); h (B, H); saved (B, 4H): r, z, n, hn; h_new (B, H).
template <class T>
__global__ void gru_forward_kernel(int64_t B, int64_t H, const T* gi, const T* gh, const T* b_hh, const T* h,
                                   T* saved, T* h_new) {
  for (int64_t idx = first_index(); idx < B * H; idx += grid_stride()) {
    const int64_t b = idx / H, j = idx % H;
    const T* ib = gi + b * 3 * H;
    const T* hb = gh + b * 3 * H;
    T hr = hb[j], hz = hb[H + j], hn = hb[2 * H + j];
    if (b_hh) hr = hr + b_hh[j], hz = hz + b_hh[H + j], hn = hn + b_hh[2 * H + j];
    T r, z, n, hnew;
    gru_cell_forward<T, T>(ib[j], ib[H + j], ib[2 * H + j], hr, hz, hn, h[idx], r, z, n, hnew);
    T* sb = saved + b * 4 * H;
    sb[j] = r, sb[H + j] = z, sb[2 * H + j] = n, sb[3 * H + j] = hn;
    h_new[idx] = hnew;
  }
}

// One GRU step backward: dh (B, H) the carried gradient (plus dy_t when non-null),
// replaced by dh z; dgi, dgh (B, 3H) the gradients of the input and recurrent parts.
template <class T>
__global__ void gru_backward_kernel(int64_t B, int64_t H, const T* saved, const T* h, const T* dy, T* dh, T* dgi,
                                    T* dgh) {
  for (int64_t idx = first_index(); idx < B * H; idx += grid_stride()) {
    const int64_t b = idx / H, j = idx % H;
    const T* sb = saved + b * 4 * H;
    T g = dh[idx], dar, daz, dain, dahn, dh_old;
    if (dy) g = g + dy[idx];
    gru_cell_backward<T, T>(sb[j], sb[H + j], sb[2 * H + j], sb[3 * H + j], h[idx], g, dar, daz, dain, dahn, dh_old);
    T* di = dgi + b * 3 * H;
    T* dr = dgh + b * 3 * H;
    di[j] = dar, di[H + j] = daz, di[2 * H + j] = dain;
    dr[j] = dar, dr[H + j] = daz, dr[2 * H + j] = dahn;
    dh[idx] = dh_old;
  }
}

// -- shared steps --------------------------------------------------------------------

template <class T>
void add_bias(const char* op, int64_t rows, int64_t n, T* a, const T* b1, const T* b2, cudaStream_t s) {
  if ((!b1 && !b2) || rows * n == 0) return;
  add_bias_kernel<T><<<grid_for(rows * n, kBlock), kBlock, 0, s>>>(rows, n, a, b1, b2);
  check_launch(op);
}

// out1[c] (and out2[c] when non-null: LSTM's two biases get one gradient) =
// sum over rows of a[r][c], a (rows, n): cuda::sum_rows, deterministic.
template <class T>
void column_sums(const char* op, int64_t rows, int64_t n, const T* a, T* out1, T* out2, cudaStream_t s) {
  if (!out1 || n == 0) return;
  sum_rows<T>(rows, n, a, out1, reinterpret_cast<std::uintptr_t>(s));
  if (!out2) return;
  cudaError_t err = cudaMemcpyAsync(out2, out1, n * sizeof(T), cudaMemcpyDeviceToDevice, s);
  if (err != cudaSuccess) cuda_fail(op, "cannot copy the bias gradient", err);
}

// After the loop, from dA (S B, G H): dx = dA @ w_ih, dw_ih = dA^T x, and
// dw_hh = dA^T [h0; hs[0 .. S-2]].
template <class T>
void weight_gradients(const char* op, const RnnParams& p, int64_t gh, const T* x, const T* h0, const T* hs,
                      const T* w_ih, const T* da_in, const T* da_rec, T* dx, T* dw_ih, T* dw_hh, cudaStream_t s) {
  const int64_t S = p.steps, B = p.batch, H = p.hidden, I = p.input, SB = S * B;
  mm<T>(op, SB, I, gh, da_in, gh, false, w_ih, I, false, dx, 0.0, s);
  mm<T>(op, gh, I, SB, da_in, gh, true, x, I, false, dw_ih, 0.0, s);
  mm<T>(op, gh, H, B, da_rec, gh, true, h0, H, false, dw_hh, 0.0, s);
  if (S > 1) mm<T>(op, gh, H, (S - 1) * B, da_rec + B * gh, gh, true, hs, H, false, dw_hh, 1.0, s);
}

// Backward with nothing to differentiate (no steps, an empty batch or no hidden
// units): zero gradients, and the final states' gradients pass to the initial ones.
template <class T>
bool nothing_to_do(const char* op, const RnnParams& p, int64_t gates, const T* dh_n, const T* dc_n, T* dx, T* dh0,
                   T* dc0, const RnnGrads<T>& g, cudaStream_t s) {
  const int64_t S = p.steps, B = p.batch, H = p.hidden, gh = gates * H;
  if (S * B != 0 && H != 0) return false;
  copy_or_zero<T>(op, dx, nullptr, S * B * p.input, s);
  copy_or_zero(op, dh0, dh_n, B * H, s);
  if (dc0) copy_or_zero(op, dc0, dc_n, B * H, s);
  copy_or_zero<T>(op, g.dw_ih, nullptr, gh * p.input, s);
  copy_or_zero<T>(op, g.dw_hh, nullptr, gh * H, s);
  if (g.db_ih) copy_or_zero<T>(op, g.db_ih, nullptr, gh, s);
  if (g.db_hh) copy_or_zero<T>(op, g.db_hh, nullptr, gh, s);
  return true;
}

}  // namespace

template <class T>
void lstm_forward(const RnnParams& p, const T* x, const T* h0, const T* c0, const RnnWeights<T>& w, T* hs, T* cs,
                  T* gates, std::uintptr_t stream) {
  const char* op = "lstm";
  const int64_t S = p.steps, B = p.batch, H = p.hidden, G4 = 4 * H, BH = B * H;
  if (S * B == 0 || H == 0) return;  // every output is empty
  DeviceGuard guard(op, device_of_all(op, {x, h0, c0, w.w_ih, w.w_hh, w.b_ih, w.b_hh, hs, cs, gates}));
  const cudaStream_t s = as_stream(stream);
  // gates (S B, 4H) = x w_ih^T + (b_ih + b_hh): every step's input projection at once
  mm<T>(op, S * B, G4, p.input, x, p.input, false, w.w_ih, p.input, true, gates, 0.0, s);
  add_bias<T>(op, S * B, G4, gates, w.b_ih, w.b_hh, s);
  for (int64_t t = 0; t < S; ++t) {
    const T* h = t ? hs + (t - 1) * BH : h0;
    const T* c = t ? cs + (t - 1) * BH : c0;
    T* a = gates + t * B * G4;
    mm<T>(op, B, G4, H, h, H, false, w.w_hh, H, true, a, 1.0, s);  // a += h w_hh^T
    lstm_forward_kernel<T><<<grid_for(BH, kBlock), kBlock, 0, s>>>(B, H, a, c, cs + t * BH, hs + t * BH);
    check_launch(op);
  }
}

template <class T>
void lstm_backward(const RnnParams& p, const T* x, const T* h0, const T* c0, const RnnWeights<T>& w, const T* hs,
                   const T* cs, const T* gates, const T* dy, const T* dh_n, const T* dc_n, T* dx, T* dh0, T* dc0,
                   const RnnGrads<T>& g, std::uintptr_t stream) {
  const char* op = "lstm_backward";
  const int64_t S = p.steps, B = p.batch, H = p.hidden, G4 = 4 * H, BH = B * H;
  DeviceGuard guard(op, device_of_all(op, {x, h0, c0, w.w_ih, w.w_hh, hs, cs, gates, dy, dh_n, dc_n, dx, dh0, dc0,
                                           g.dw_ih, g.dw_hh, g.db_ih, g.db_hh}));
  const cudaStream_t s = as_stream(stream);
  if (nothing_to_do(op, p, 4, dh_n, dc_n, dx, dh0, dc0, g, s)) return;
  Scratch<T> da(op, S * B * G4, s);
  // dh0 and dc0 carry dh and dc from step to step.
  copy_or_zero(op, dh0, dh_n, BH, s);
  copy_or_zero(op, dc0, dc_n, BH, s);
  for (int64_t t = S - 1; t >= 0; --t) {
    const T* c = t ? cs + (t - 1) * BH : c0;
    T* dat = da.get() + t * B * G4;
    lstm_backward_kernel<T><<<grid_for(BH, kBlock), kBlock, 0, s>>>(
        B, H, gates + t * B * G4, c, cs + t * BH, dy ? dy + t * BH : nullptr, dh0, dc0, dat);
    check_launch(op);
    // dh = dA_t w_hh (at t = 0 it is dh0, made only when wanted)
    if (t > 0 || p.state_grads) mm<T>(op, B, H, G4, dat, G4, false, w.w_hh, H, false, dh0, 0.0, s);
  }
  weight_gradients<T>(op, p, G4, x, h0, hs, w.w_ih, da.get(), da.get(), dx, g.dw_ih, g.dw_hh, s);
  // Both biases enter the same sum: one column sum serves both.
  column_sums<T>(op, S * B, G4, da.get(), g.db_ih ? g.db_ih : g.db_hh, g.db_ih ? g.db_hh : nullptr, s);
}

template <class T>
void gru_forward(const RnnParams& p, const T* x, const T* h0, const RnnWeights<T>& w, T* hs, T* saved,
                 std::uintptr_t stream) {
  const char* op = "gru";
  const int64_t S = p.steps, B = p.batch, H = p.hidden, G3 = 3 * H, G4 = 4 * H, BH = B * H;
  if (S * B == 0 || H == 0) return;  // every output is empty
  DeviceGuard guard(op, device_of_all(op, {x, h0, w.w_ih, w.w_hh, w.b_ih, w.b_hh, hs, saved}));
  const cudaStream_t s = as_stream(stream);
  Scratch<T> gi(op, S * B * G3, s), gh(op, B * G3, s);
  // gi (S B, 3H) = x w_ih^T + b_ih: every step's input part at once
  mm<T>(op, S * B, G3, p.input, x, p.input, false, w.w_ih, p.input, true, gi.get(), 0.0, s);
  add_bias<T>(op, S * B, G3, gi.get(), w.b_ih, nullptr, s);
  for (int64_t t = 0; t < S; ++t) {
    const T* h = t ? hs + (t - 1) * BH : h0;
    mm<T>(op, B, G3, H, h, H, false, w.w_hh, H, true, gh.get(), 0.0, s);  // gh = h w_hh^T
    gru_forward_kernel<T><<<grid_for(BH, kBlock), kBlock, 0, s>>>(B, H, gi.get() + t * B * G3, gh.get(), w.b_hh, h,
                                                                  saved + t * B * G4, hs + t * BH);
    check_launch(op);
  }
}

template <class T>
void gru_backward(const RnnParams& p, const T* x, const T* h0, const RnnWeights<T>& w, const T* hs, const T* saved,
                  const T* dy, const T* dh_n, T* dx, T* dh0, const RnnGrads<T>& g, std::uintptr_t stream) {
  const char* op = "gru_backward";
  const int64_t S = p.steps, B = p.batch, H = p.hidden, G3 = 3 * H, G4 = 4 * H, BH = B * H;
  DeviceGuard guard(op, device_of_all(op, {x, h0, w.w_ih, w.w_hh, hs, saved, dy, dh_n, dx, dh0, g.dw_ih, g.dw_hh,
                                           g.db_ih, g.db_hh}));
  const cudaStream_t s = as_stream(stream);
  if (nothing_to_do<T>(op, p, 3, dh_n, nullptr, dx, dh0, nullptr, g, s)) return;
  Scratch<T> dgi(op, S * B * G3, s), dgh(op, S * B * G3, s);
  copy_or_zero(op, dh0, dh_n, BH, s);  // carries dh from step to step
  for (int64_t t = S - 1; t >= 0; --t) {
    const T* h = t ? hs + (t - 1) * BH : h0;
    T* dht = dgh.get() + t * B * G3;
    gru_backward_kernel<T><<<grid_for(BH, kBlock), kBlock, 0, s>>>(
        B, H, saved + t * B * G4, h, dy ? dy + t * BH : nullptr, dh0, dgi.get() + t * B * G3, dht);
    check_launch(op);
    // dh = dh z + dgh_t w_hh (at t = 0 it is dh0, made only when wanted)
    if (t > 0 || p.state_grads) mm<T>(op, B, H, G3, dht, G3, false, w.w_hh, H, false, dh0, 1.0, s);
  }
  weight_gradients<T>(op, p, G3, x, h0, hs, w.w_ih, dgi.get(), dgh.get(), dx, g.dw_ih, g.dw_hh, s);
  column_sums<T>(op, S * B, G3, dgi.get(), g.db_ih, nullptr, s);
  column_sums<T>(op, S * B, G3, dgh.get(), g.db_hh, nullptr, s);
}

#define DK_INSTANTIATE(T)                                                                                        \
  template void lstm_forward<T>(const RnnParams&, const T*, const T*, const T*, const RnnWeights<T>&, T*, T*, T*, \
                                std::uintptr_t);                                                                 \
  template void lstm_backward<T>(const RnnParams&, const T*, const T*, const T*, const RnnWeights<T>&, const T*,  \
                                 const T*, const T*, const T*, const T*, const T*, T*, T*, T*, const RnnGrads<T>&, \
                                 std::uintptr_t);                                                                \
  template void gru_forward<T>(const RnnParams&, const T*, const T*, const RnnWeights<T>&, T*, T*, std::uintptr_t); \
  template void gru_backward<T>(const RnnParams&, const T*, const T*, const RnnWeights<T>&, const T*, const T*,   \
                                const T*, const T*, T*, T*, const RnnGrads<T>&, std::uintptr_t);
DK_INSTANTIATE(float)
DK_INSTANTIATE(double)
#undef DK_INSTANTIATE

}  // namespace dk::cuda
