// LSTM and GRU over a whole sequence of one layer, forward and backward
// through time (shapes in rnn.h; a cell is the one-step case of the same code).
//
// Forward: the input projection of every step is one GEMM before the
// recurrence, x (S B, I) @ w_ih^T -> (S B, G H), with the biases added by the
// GEMM's epilogue (LSTM: b_ih + b_hh, summed once; GRU: b_ih). Each step then
// computes the recurrent projection h @ w_hh^T with one small GEMM on packed
// weights, and one fused, vectorised pass over the step's gates adds the two,
// applies the nonlinearities and the state update (core/rnn_math.h, the
// formulas the CUDA kernels share) and keeps the activated gates for backward.
// GRU keeps the recurrent part apart (gh = h w_hh^T + b_hh), since r
// multiplies its n third.
// Backward: per step (last to first) one fused pass turns dh, dc and the saved
// gates into the gate gradients dA_t (stored for all steps), then one GEMM
// carries dh to the previous step, dh = dA_t @ w_hh. Everything else is a
// large GEMM after the loop, split by rows over the threads: dx = dA @ w_ih,
// dw_ih = dA^T x, dw_hh = dA^T [h0; hs[0 .. S-2]] (see gradients()), and the
// bias gradients are dA's column sums.
//
// Threads: the recurrence is one parallel region per call, split one of two
// ways (recurrence_split()).
// By rows: each thread runs its own batch rows through every step, all the
// hidden units: a forward GEMM of its rows of h against the whole of w_hh
// (packed once per call, shared), then their gate pass; backward, its rows'
// gate gradients, then its rows of dh. Batch rows never meet, so the threads
// never wait for each other. Each thread streams all of w_hh every step, so
// this needs enough rows per thread to reuse it and a w_hh small enough to
// stay in the last-level cache. Measured against the split by units, LSTM T=50
// forward + backward, 2 Zen 3 cores, paired in one process (medians): (32,
// 512, 512) 122.8 -> 121.2 ms, (64, 128, 256) 53.4 -> 51.8, (128, 128, 128)
// 41.2 -> 39.3; GRU (24, 512, 512) 79.1 -> 75.3, (64, 128, 256) 46.2 ->
// 43.6. But (16, 512, 512) 62 -> 67 (8 rows a thread) and (32, 1024, 1024)
// 562 -> 602 (16 MiB of w_hh streamed twice every step).
// By units: each thread owns a slice of the hidden units (whole cache lines)
// in every gate, all the rows. Forward, a thread runs the GEMM for its units'
// gates (m = B rows, its share of the G H columns, from w_hh's rows for them
// gathered and packed once per call) and then their gate pass; backward, its
// units' gate gradients and then its columns of dh (w_hh's columns for them,
// packed once per call). A thread's gate pass reads only what its own GEMM
// wrote, so there is one barrier per step (the GEMM reads all of h_{t-1}, or
// of dA_t), and a thread's share of w_hh (512 KiB at H = 256) stays in its own
// L2. This replaced, per step, the engine's threaded GEMM (tiles handed out
// dynamically) followed by a gate pass threaded over batch rows: two
// fork/joins per step, and half the gates written on one core and read on the
// other. Measured on 2 busy Zen 4 cores, T = 50 module forward + backward, old
// and new paired in one process: LSTM 1.01-1.04x, GRU 1.05-1.06x faster,
// bit-identical results.
// Either way the engine's gemm runs on the calling thread inside the region,
// and the results are bit-identical to one thread's.
// A one-step sequence (a cell) runs its one GEMM threaded by the engine and
// its gate pass threaded by rows (see recurrence()). A cell or a batch of one
// packs nothing: the engine packs a trans_b operand on the fly, which for one
// product is the same work, and a single row streams w_hh (gemv). Packing w_hh for the
// backward's dh GEMM rather than reading it in place: LSTM T=50 (64, 128,
// 256) backward 56 -> 54 ms, one thread.
// Tried and dropped: the recurrent GEMM transposed (gates^T = w_hh h^T, so
// that m = G H rather than the batch fills the 14-row micro-kernel): no faster
// at (B, H) = (32, 512) or (64, 256), and it would need transposed states.
// A thread's forward GEMM per gate (no gathered copy of w_hh, the gates
// written in place): forward 0.91-0.96x the old path's speed, where the
// gathered single GEMM gives 1.00-1.02x. On 2 Zen 3 cores, in-process A/B
// against the code here (medians): the input projection per step inside the
// recurrence (each thread its rows, the recurrent product added with beta = 1,
// so the pass reads one array, from L2): forward 0.95-0.98x at (32, 512, 512),
// 1.03x at (64, 128, 256); dx per step inside the backward loop: 0.96-1.01x;
// K blocks of up to 2048 for a layer's products (dx, dw and dh one block each):
// 0.995-0.997x over 60 samples on a quiet host.
// Cost at those sizes is the GEMMs' (the gate passes are about a tenth):
// with 2 threads, forward at (32, 512, 512) runs at about 200 GFLOP/s, 88% of
// the FMA peak, and a layer's forward + backward at 80%; what is left is
// mostly the engine's (14-row micro-kernel on B = 32 or 64 rows, w_hh
// streamed from L3 when it does not fit L2). Against torch 2.13 (oneDNN,
// itself at about 80% of peak there), quiet minima, 2 threads: LSTM T=50
// 1.22x at (64, 128, 256) and 1.11x at (32, 512, 512), 1 layer.
// On 2 Zen 3 cores (AVX2, 6-row micro-kernel) the (32, 512, 512) layer's
// forward + backward ran at 80-83% of the FMA peak, 117-120 ms: input
// projection 18.0, forward recurrence 21.0 (its GEMMs 17.9), backward
// recurrence 20.2, dx 19.2, the dA^T packing 1.6 (13 MiB, from memory), dw_ih
// 18.5, dw_hh 18.2, bias sums 0.4 (before gradients() split its products by
// rows, 1-3% faster). The same product with both operands packed beforehand
// takes 17.4 ms, the micro-kernel in cache 97.5% of the peak. perf, after the
// split: micro-kernels 84% of the CPU time, packing 4.4%, gate passes 3.1%,
// the kernel zeroing fresh pages of the output arrays 1%.
// On 2 Zen 5 cores (full-width AVX-512, 48 KiB L1D) the same layer took 47-50
// ms, 78% of the FMA peak: input projection 7.3, forward recurrence 8.3 (its
// gate passes 0.7), backward recurrence 8.2, dx 8.0, dw_ih and dw_hh 15.4 (6.5
// each at the peak); in the forward the micro-kernels took about 94% of the
// CPU time. There the split by units measured 1-5% slower than by rows, and
// software prefetching of w_hh's packed strips no faster. The transposed form
// was tried again there, for the whole forward: each step gates^T = w_ih
// x_t^T + bias + w_hh h_{t-1}^T (the input projection inside the step; each
// thread the gathered rows of its hidden units, packed once per call, as A in
// full 14-row tiles; h^T and c^T kept; a barrier a step). Its GEMMs ran at 94%
// of the FMA peak, 13.7 ms against 14.6 for the hoisted projection and the
// recurrence here, bit-identical results; but packing the gathered rows (0.5
// ms), the barriers (0.15) and writing the gates, c and h back to (B, ...)
// rows through register transposes (strided stores: that pass took 1.2-1.6
// ms, 0.8 with the gates left transposed, and then backward's pass, reading
// them, 1.1-1.7 against 0.7) took it all back: forward + backward 0.98-0.99x.
// Against torch there, T=50 forward + backward, torch alone in its process:
// (32, 512, 512) 57-63 ms in glibc's default malloc, which hands about 32 MiB
// of torch's buffers back to the kernel and faults them in again every call
// (15 ms of system time a call), and 49-51 ms with MALLOC_TRIM_THRESHOLD_ and
// MALLOC_MMAP_THRESHOLD_ set to 1e9; (64, 128, 256) 32-33 ms against 22 ms.
// This layer takes 46-53 ms and 20-22 either way (its buffers are kept), so
// against a torch spared those faults the LSTM is 1.0-1.05x, not 1.2-1.5x: the
// rest of the margin is the allocator's. GRU's is not (torch 49 and 109 ms
// either way, 3x this file's).
#include "cpu/rnn.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
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
  T* p = static_cast<T*>(aligned_bytes(static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T)));
  if (!p) throw std::bad_alloc();
  return std::unique_ptr<T[], AlignedFree>(p);
}

// The calling thread's buffer `slot` of at least n elements, kept between
// calls and grown on demand: the gate gradients of every step (13 MiB for an
// LSTM layer at T=50, (B, H) = (32, 512)), GRU's input parts, a cell's
// recurrent product (slot 1). Allocated per call, they came back as fresh
// pages every call: LSTM (32, 512, 512) layer forward + backward, 2 threads,
// page faults 19 -> 2 MiB per call, system time 9-14 -> 2-3 ms, 111-115 ->
// 102-105 ms (minima); the LSTM cells 3-5% faster (back to before the split
// by units).
template <class T>
T* kept(int slot, int64_t n) {
  struct Kept {
    std::unique_ptr<T[], AlignedFree> data;
    int64_t size = 0;
  };
  static thread_local Kept kept[2];
  Kept& k = kept[slot];
  if (k.size < n) {
    k.data.reset();  // not both at once
    k.size = 0;
    k.data = buffer<T>(n);
    k.size = n;
  }
  return k.data.get();
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

// f(j, n) over the vectors of hidden units [lo, hi) of a row: j the first
// unit, n the lanes in use (the last vector may be partial).
template <class T, class F>
inline void for_lanes(int64_t lo, int64_t hi, F f) {
  for (int64_t j = lo; j < hi; j += Vec<T>::width) f(j, hi - j);
}

// Below this many multiply-adds of one step's recurrent GEMM per thread, a
// second thread (and a barrier every step) costs more than it saves.
constexpr double kMinStepFmasPerThread = double(1 << 18);

// The split by rows needs this many batch rows per thread (two 6-row AVX2
// tiles; at 8 it is slower, see the top of the file) ...
constexpr int64_t kMinRowsPerThread = 12;
// ... and w_hh at most this big, since every thread streams all of it each step.
constexpr double kMaxRowsSplitWeightBytes = double(8 << 20);

// How the recurrence's threads share a step: `threads` of them, by rows (each
// its own batch rows, all the units) or by units (each whole cache lines of
// hidden units, all the rows).
struct Split {
  int threads;
  bool by_rows;
};
template <class T>
Split recurrence_split(const RnnParams& p, int64_t gates) {
  const double fmas = double(p.batch) * double(gates * p.hidden) * double(p.hidden);
  const double most = std::max(1.0, std::min<double>(get_num_threads(), fmas / kMinStepFmasPerThread));
  const int threads = static_cast<int>(most);
  const double weight_bytes = double(gates * p.hidden) * double(p.hidden) * sizeof(T);
  if (threads > 1 && p.batch >= threads * kMinRowsPerThread && weight_bytes <= kMaxRowsSplitWeightBytes)
    return {threads, true};
  const int64_t line = 64 / sizeof(T), lines = (p.hidden + line - 1) / line;
  return {static_cast<int>(std::min<double>(threads, double(lines))), false};
}

// The hidden units [lo, hi) of the calling thread: whole cache lines, so no
// two threads write one line of the gates or the states.
struct Units {
  int64_t lo, hi;
};
template <class T>
Units my_units(int64_t hidden) {
  const int64_t line = 64 / sizeof(T), lines = (hidden + line - 1) / line;
  const int64_t id = omp_get_thread_num(), nt = omp_get_num_threads();
  return {std::min(hidden, lines * id / nt * line), std::min(hidden, lines * (id + 1) / nt * line)};
}

// The batch rows [lo, hi) of the calling thread.
struct Rows {
  int64_t lo, hi;
};
inline Rows my_rows(int64_t batch) {
  const int64_t id = omp_get_thread_num(), nt = omp_get_num_threads();
  return {batch * id / nt, batch * (id + 1) / nt};
}

// Runs the work of one thread between the barriers of a parallel region. An
// exception (bad_alloc from a packing or a GEMM's scratch) must not leave the
// region, and every thread must still meet every barrier: the first one is
// kept, the rest of the work skipped, and it is rethrown after the region.
class Guard {
 public:
  template <class F>
  void run(F f) {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      f();
    } catch (...) {
#pragma omp critical(dk_rnn_guard)
      if (!error_) error_ = std::current_exception();
      failed_ = true;
    }
  }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

// One thread's share of the recurrent GEMM of every step: its hidden units
// [lo, lo + n) of each gate. Forward, h w_hh^T for those gates, from w_hh's
// rows for them, gate by gate side by side (G n rows), packed once per call;
// backward, the columns [lo, lo + n) of dh from w_hh's columns [lo, lo + n),
// packed once per call. A one-step sequence (a cell) or a batch of one packs
// nothing (see the top of the file); a cell has all the units.
template <class T>
struct Recurrent {
  const RnnParams& p;
  int64_t gates, lo, n;
  const T* w_hh;
  PackedMatrix<T> packed;  // forward: w_hh's rows for the thread's units, gate by gate; backward: its columns

  Recurrent(const RnnParams& p_, int64_t gates_, const T* w, Units u, bool backward)
      : p(p_), gates(gates_), lo(u.lo), n(u.hi - u.lo), w_hh(w) {
    const int64_t H = p.hidden;
    if (p.steps <= 1 || p.batch <= 1 || n <= 0) return;
    if (backward) {
      packed = pack_b<T>(gates * H, n, w_hh + lo, H, false);  // dh = dA w_hh
      return;
    }
    if (n == H) {  // all the units: w_hh as it is
      packed = pack_b<T>(H, gates * H, w_hh, H, true);
      return;
    }
    auto rows = buffer<T>(gates * n * H);  // the gates' row blocks side by side, then one packing
    for (int64_t g = 0; g < gates; ++g)
      std::memcpy(rows.get() + g * n * H, w_hh + (g * H + lo) * H, static_cast<size_t>(n * H) * sizeof(T));
    packed = pack_b<T>(H, gates * n, rows.get(), H, true);
  }
  // acc (B, G n) = h (B, H) @ (w_hh's rows for the units)^T: gate g's units at
  // columns g n + [0, n); the rows r of acc and h only.
  void forward(const T* h, T* acc, Rows r) const {
    const int64_t H = p.hidden, m = r.hi - r.lo;
    if (n <= 0 || m <= 0) return;
    h += r.lo * H, acc += r.lo * gates * n;
    if (packed.data) return gemm<T>(mm(m, gates * n, H, H, H, false, true), h, packed, acc);
    if (n == H) return gemm<T>(mm(m, gates * H, H, H, H, false, true), h, w_hh, acc);
    GemmParams q = mm(m, n, H, H, H, false, true);  // a batch of one split over threads: gemv per gate
    q.ldc = gates * n;
    for (int64_t g = 0; g < gates; ++g) gemm<T>(q, h, w_hh + (g * H + lo) * H, acc + g * n);
  }
  // dh[:, lo .. lo + n) (rows of H) = dA (B, G H) @ w_hh[:, lo .. lo + n) + beta * dh; the rows r only.
  void backward(const T* da, T* dh, double beta, Rows r) const {
    const int64_t m = r.hi - r.lo;
    if (n <= 0 || m <= 0) return;
    da += r.lo * gates * p.hidden, dh += r.lo * p.hidden;
    GemmParams q = mm(m, n, gates * p.hidden, gates * p.hidden, p.hidden, false, false, beta);
    q.ldc = p.hidden;
    if (packed.data) gemm<T>(q, da, packed, dh + lo);
    else gemm<T>(q, da, w_hh + lo, dh + lo);
  }
};

// The recurrence of one call, split as recurrence_split() says: each thread
// with its units u and rows r, its share rec of the recurrent GEMM (by rows,
// all of it, shared) and (forward) acc (B, G n) for that GEMM's result (by
// rows, shared, each thread writing its rows). Forward, for t = 0 .. S-1:
// carry(t), the thread's GEMM of step t, then pass(t), its gate pass. Backward,
// for t = S-1 .. 0: carry(t + 1) (dh from dA_{t+1}; none at the last step)
// then pass(t), and carry(0) at the end, only for p.state_grads (it makes dh0
// and nothing else). Split by units, a GEMM reads what every thread's previous
// pass wrote (h_{t-1}, dA_{t+1}), hence a barrier after each pass; a pass
// reads only what its own thread's GEMM wrote.
// A one-step sequence (a cell) has nothing to carry between steps: the
// engine threads its one GEMM (w_hh read in place) and the gate pass is split
// by rows, as before the split by units, which measured 7-8% slower for the
// LSTM cells (2 threads, minima: 0.34 -> 0.37 ms at (64, 128, 256), 0.96 ->
// 1.03 ms at (32, 512, 512)).
template <class T, class Carry, class Pass>
void recurrence(const RnnParams& p, int64_t gates, const T* w_hh, bool backward, Carry carry, Pass pass) {
  const int64_t S = p.steps, B = p.batch, H = p.hidden;
  const Units all_units{0, H};
  const Rows all_rows{0, B};
  const Split split = recurrence_split<T>(p, gates);
  std::unique_ptr<Recurrent<T>> shared;  // a cell's, or the split by rows'
  T* shared_acc = nullptr;
  if (S == 1 || split.by_rows) {
    shared.reset(new Recurrent<T>(p, gates, w_hh, all_units, backward));
    if (!backward) shared_acc = kept<T>(1, B * gates * H);
  }
  if (S == 1) {
    if (!backward) carry(*shared, shared_acc, 0, all_rows);
#pragma omp parallel for num_threads(threads_for(B * 4 * H)) schedule(static)
    for (int64_t b = 0; b < B; ++b) pass(all_units, Rows{b, b + 1}, shared_acc, 0);
    if (backward && p.state_grads) carry(*shared, shared_acc, 0, all_rows);
    return;
  }
  Guard guard;
#pragma omp parallel num_threads(split.threads)
  {
    const Units u = split.by_rows ? all_units : my_units<T>(H);
    const Rows r = split.by_rows ? my_rows(B) : all_rows;
    std::unique_ptr<Recurrent<T>> own;
    std::unique_ptr<T[], AlignedFree> own_acc;
    if (!split.by_rows) {
      guard.run([&] {
        own.reset(new Recurrent<T>(p, gates, w_hh, u, backward));
        if (!backward) own_acc = buffer<T>(B * gates * (u.hi - u.lo));
      });
    }
    const Recurrent<T>* rec = split.by_rows ? shared.get() : own.get();
    T* acc = split.by_rows ? shared_acc : own_acc.get();
    for (int64_t i = 0; i < S; ++i) {
      const int64_t t = backward ? S - 1 - i : i;
      guard.run([&] {
        if (!backward) carry(*rec, acc, t, r);
        else if (i) carry(*rec, acc, t + 1, r);
        pass(u, r, acc, t);
      });
      if (!split.by_rows) {
#pragma omp barrier
      }
    }
    if (backward && p.state_grads) guard.run([&] { carry(*rec, acc, 0, r); });
  }
  guard.rethrow();
}

// A thread's share of a product split by split_rows: at least this many rows ...
constexpr int64_t kMinShareRows = 64;
// ... and this many multiply-adds (the engine's own threshold for a second thread).
constexpr double kMinShareFmas = double(1 << 19);

// f(lo, hi) for the rows [lo, hi) of a product's C (rows rows, fmas
// multiply-adds each), one contiguous share per thread, each f a
// single-threaded GEMM. With one thread worth using, f(0, rows) runs on the
// calling thread and the engine threads its GEMM.
template <class T, class F>
void split_rows(int64_t rows, double fmas, F f) {
  const int nt = static_cast<int>(std::max(
      1.0, std::min({double(get_num_threads()), double(rows / kMinShareRows), rows * fmas / kMinShareFmas})));
  if (nt == 1) return f(0, rows);
  Guard guard;
  for_each_range(1, &rows, 64 / int64_t(sizeof(T)), nt,
                 [&](int64_t, int64_t lo, int64_t hi) { guard.run([&] { f(lo, hi); }); });
  guard.rethrow();
}

// After the backward loop, from the gate gradients of every step (S B, G H):
// dx = da_ih @ w_ih, dw_ih = da_ih^T x and dw_hh = da_hh^T [h0; hs[0 .. S-2]]
// (LSTM: both are dA; GRU: the input and the recurrent parts), and the bias
// gradients, their column sums (db_ih, db_hh where non-null). Step 0 read h0,
// the others the states before them: one GEMM when h0 lies right before
// hs[0] (ops.lstm and ops.gru allocate them so), else a second GEMM for h0
// accumulating with beta = 1. One GEMM against two, T=50 forward + backward
// at (32, 512, 512), 2 Zen 3 cores, medians of 31 interleaved: LSTM 120.95 ->
// 120.49 ms, GRU 91.0 -> 90.4 (the K = 32 product alone: 0.7 ms).
// An LSTM's two weight gradients then share one A, dA^T, packed once into a
// matrix kept between calls (as the gate gradients are, and as big):
// LSTM 120.7 -> 118.7 and 119.2 -> 117.7 ms in two runs, bit-identical.
// Packed into fresh memory every call it was slower than packing twice (page
// faults on 13 MiB).
// Each product is split by rows of C over the threads, each thread's share
// one single-threaded GEMM (split_rows): dx by the steps' batch rows, the
// weight gradients by gate units, each thread packing its rows of dA^T (into
// its own kept matrix) once for both. Against the engine threading each GEMM
// (tiles handed out, a barrier per K block, dA^T packed once for all): no
// barriers, and each thread streams only its rows of the packed dA^T, where
// both threads swept all of it. Bit-identical (each element sums its K
// blocks in the same order). T=50 forward + backward, 2 Zen 3 cores, in-process
// A/B, medians of 41 interleaved: LSTM (32, 512, 512) 1.012 / 1.029 /
// 1.019x, (64, 128, 256) 1.036x, GRU (32, 512, 512) 1.010x. In a harness, the
// input projection's shape (1600, 2048, 512, B transposed) ran 2-5% slower
// split so (each thread then packs all of w_ih): it stays threaded by the engine.
// Also measured and dropped: the columns of [dw_ih | dw_hh] split instead,
// over one shared dA^T (0.6% slower than rows); x and [h0; hs] packed once as
// shared B operands for the rows split (0.98-0.997x); each thread packing its
// rows of dA_t^T inside the backward loop, while they are in cache, instead of
// the pack here (0.97-1.007x: the stores cost the loop what the pack cost).
// S >= 1 here (nothing_to_do handles S = 0).
template <class T>
void gradients(const RnnParams& p, int64_t gh, const T* x, const T* w_ih, const T* h0, const T* hs, const T* da_ih,
               const T* da_hh, T* dx, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh) {
  const int64_t S = p.steps, B = p.batch, H = p.hidden, I = p.input, SB = S * B;
  split_rows<T>(SB, double(gh) * double(I), [&](int64_t r0, int64_t r1) {
    gemm<T>(mm(r1 - r0, I, gh, gh, I, false, false), da_ih + r0 * gh, w_ih, dx + r0 * I);
  });
  if (db_ih) sum_rows<T>(SB, gh, da_ih, db_ih);
  if (db_hh) sum_rows<T>(SB, gh, da_hh, db_hh);
  const bool adjacent = h0 + B * H == hs;
  split_rows<T>(gh, double(SB) * double(I + H), [&](int64_t r0, int64_t r1) {
    const int64_t m = r1 - r0;
    const T *a_ih = da_ih + r0, *a_hh = da_hh + r0;
    T *w_i = dw_ih + r0 * I, *w_h = dw_hh + r0 * H;
    if (adjacent && da_ih == da_hh) {  // one A, packed once
      static thread_local PackedMatrix<T> da_t;
      repack_a<T>(da_t, m, SB, a_ih, gh, true);
      gemm<T>(mm(m, I, SB, gh, I, true, false), da_t, x, w_i);
      gemm<T>(mm(m, H, SB, gh, H, true, false), da_t, h0, w_h);
      return;
    }
    gemm<T>(mm(m, I, SB, gh, I, true, false), a_ih, x, w_i);
    if (adjacent) return gemm<T>(mm(m, H, SB, gh, H, true, false), a_hh, h0, w_h);
    gemm<T>(mm(m, H, B, gh, H, true, false), a_hh, h0, w_h);
    if (S > 1) gemm<T>(mm(m, H, (S - 1) * B, gh, H, true, false, 1.0), a_hh + B * gh, hs, w_h);
  });
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
  recurrence<T>(
      p, 4, w.w_hh, false,
      [&](const Recurrent<T>& rec, T* acc, int64_t t, Rows r) {  // h w_hh^T
        rec.forward(t ? hs + (t - 1) * BH : h0, acc, r);
      },
      [&](Units u, Rows rows, const T* acc, int64_t t) {  // x w_ih^T + bias + h w_hh^T -> gates
        const int64_t un = u.hi - u.lo;
        const T* c = t ? cs + (t - 1) * BH : c0;
        T* a = gates + t * B * G4;
        for (int64_t b = rows.lo; b < rows.hi; ++b) {
          T* ab = a + b * G4;
          const T* rb = acc + b * 4 * un;
          const int64_t r = b * H + t * BH;
          for_lanes<T>(u.lo, u.hi, [&](int64_t j, int64_t n) {
            const int64_t k = j - u.lo;
            V i = V::load(ab + j, n) + V::load(rb + k, n), f = V::load(ab + H + j, n) + V::load(rb + un + k, n),
              g = V::load(ab + 2 * H + j, n) + V::load(rb + 2 * un + k, n),
              o = V::load(ab + 3 * H + j, n) + V::load(rb + 3 * un + k, n), c_new, h_new;
            lstm_cell_forward<V, T>(i, f, g, o, V::load(c + b * H + j, n), c_new, h_new);
            i.store(ab + j, n), f.store(ab + H + j, n), g.store(ab + 2 * H + j, n), o.store(ab + 3 * H + j, n);
            c_new.store(cs + r + j, n), h_new.store(hs + r + j, n);
          });
        }
      });
}

template <class T>
void lstm_backward(const RnnParams& p, const T* x, const T* h0, const T* c0, const RnnWeights<T>& w, const T* hs,
                   const T* cs, const T* gates, const T* dy, const T* dh_n, const T* dc_n, T* dx, T* dh0, T* dc0,
                   const RnnGrads<T>& g) {
  using V = Vec<T>;
  const int64_t S = p.steps, B = p.batch, H = p.hidden, G4 = 4 * H, BH = B * H;
  if (nothing_to_do(p, 4, dh_n, dc_n, dx, dh0, dc0, g)) return;
  T* da = kept<T>(0, S * B * G4);
  // dh0 and dc0 carry dh and dc from step to step.
  copy_or_zero(dh0, dh_n, BH);
  copy_or_zero(dc0, dc_n, BH);
  recurrence<T>(
      p, 4, w.w_hh, true,
      [&](const Recurrent<T>& rec, T*, int64_t t, Rows r) {  // dh = dA_t w_hh
        rec.backward(da + t * B * G4, dh0, 0.0, r);
      },
      [&](Units u, Rows rows, const T*, int64_t t) {  // this thread's dA_t and dc
        const T* c = t ? cs + (t - 1) * BH : c0;
        const T* a = gates + t * B * G4;
        T* dat = da + t * B * G4;
        for (int64_t b = rows.lo; b < rows.hi; ++b) {
          const T* ab = a + b * G4;
          T* dab = dat + b * G4;
          const int64_t r = b * H + t * BH;
          for_lanes<T>(u.lo, u.hi, [&](int64_t j, int64_t n) {
            V dh = V::load(dh0 + b * H + j, n), dc = V::load(dc0 + b * H + j, n), di, df, dg, dout;
            if (dy) dh = dh + V::load(dy + r + j, n);
            lstm_cell_backward<V, T>(V::load(ab + j, n), V::load(ab + H + j, n), V::load(ab + 2 * H + j, n),
                                     V::load(ab + 3 * H + j, n), V::load(c + b * H + j, n), V::load(cs + r + j, n),
                                     dh, dc, di, df, dg, dout);
            di.store(dab + j, n), df.store(dab + H + j, n), dg.store(dab + 2 * H + j, n),
                dout.store(dab + 3 * H + j, n);
            dc.store(dc0 + b * H + j, n);
          });
        }
      });
  gradients<T>(p, G4, x, w.w_ih, h0, hs, da, da, dx, g.dw_ih, g.dw_hh, g.db_ih ? g.db_ih : g.db_hh, nullptr);
  if (g.db_ih && g.db_hh) std::copy(g.db_ih, g.db_ih + G4, g.db_hh);  // both biases enter the same sum
}

// ---- GRU -----------------------------------------------------------------------

template <class T>
void gru_forward(const RnnParams& p, const T* x, const T* h0, const RnnWeights<T>& w, T* hs, T* saved) {
  using V = Vec<T>;
  const int64_t S = p.steps, B = p.batch, H = p.hidden, G3 = 3 * H, G4 = 4 * H, BH = B * H;
  if (S * B == 0 || H == 0) return;  // every output is empty
  T* gi = kept<T>(0, S * B * G3);
  // gi (S B, 3H) = x w_ih^T + b_ih: every step's input part at once
  gemm<T>(mm(S * B, G3, p.input, p.input, p.input, false, true), x, w.w_ih, gi, GemmBias<T>{w.b_ih, nullptr});
  recurrence<T>(
      p, 3, w.w_hh, false,
      [&](const Recurrent<T>& rec, T* acc, int64_t t, Rows r) {  // h w_hh^T
        rec.forward(t ? hs + (t - 1) * BH : h0, acc, r);
      },
      [&](Units u, Rows rows, const T* acc, int64_t t) {  // this thread's gates and h
        const int64_t un = u.hi - u.lo;
        const T* h = t ? hs + (t - 1) * BH : h0;
        const T* git = gi + t * B * G3;
        T* st = saved + t * B * G4;
        auto bias = [&](int64_t j, int64_t n) { return w.b_hh ? V::load(w.b_hh + j, n) : V(T(0)); };
        for (int64_t b = rows.lo; b < rows.hi; ++b) {
          const T *ib = git + b * G3, *rb = acc + b * 3 * un;
          T* sb = st + b * G4;
          for_lanes<T>(u.lo, u.hi, [&](int64_t j, int64_t n) {
            const int64_t k = j - u.lo;  // gh = h w_hh^T + b_hh
            V hr = V::load(rb + k, n) + bias(j, n), hz = V::load(rb + un + k, n) + bias(H + j, n),
              hn = V::load(rb + 2 * un + k, n) + bias(2 * H + j, n), r, z, nn, h_new;
            gru_cell_forward<V, T>(V::load(ib + j, n), V::load(ib + H + j, n), V::load(ib + 2 * H + j, n), hr, hz,
                                   hn, V::load(h + b * H + j, n), r, z, nn, h_new);
            r.store(sb + j, n), z.store(sb + H + j, n), nn.store(sb + 2 * H + j, n), hn.store(sb + 3 * H + j, n);
            h_new.store(hs + t * BH + b * H + j, n);
          });
        }
      });
}

template <class T>
void gru_backward(const RnnParams& p, const T* x, const T* h0, const RnnWeights<T>& w, const T* hs, const T* saved,
                  const T* dy, const T* dh_n, T* dx, T* dh0, const RnnGrads<T>& g) {
  using V = Vec<T>;
  const int64_t S = p.steps, B = p.batch, H = p.hidden, G3 = 3 * H, G4 = 4 * H, BH = B * H;
  if (nothing_to_do<T>(p, 3, dh_n, nullptr, dx, dh0, nullptr, g)) return;
  T *dgi = kept<T>(0, S * B * G3), *dgh = kept<T>(1, S * B * G3);
  copy_or_zero(dh0, dh_n, BH);  // carries dh from step to step
  recurrence<T>(
      p, 3, w.w_hh, true,
      [&](const Recurrent<T>& rec, T*, int64_t t, Rows r) {  // += dgh_t w_hh
        rec.backward(dgh + t * B * G3, dh0, 1.0, r);
      },
      [&](Units u, Rows rows, const T*, int64_t t) {  // this thread's dgi_t, dgh_t and dh z
        const T* h = t ? hs + (t - 1) * BH : h0;
        const T* st = saved + t * B * G4;
        T *dit = dgi + t * B * G3, *dht = dgh + t * B * G3;
        for (int64_t b = rows.lo; b < rows.hi; ++b) {
          const T* sb = st + b * G4;
          T *di = dit + b * G3, *dhh = dht + b * G3;
          for_lanes<T>(u.lo, u.hi, [&](int64_t j, int64_t n) {
            V dh = V::load(dh0 + b * H + j, n), dar, daz, dain, dahn, dh_old;
            if (dy) dh = dh + V::load(dy + t * BH + b * H + j, n);
            gru_cell_backward<V, T>(V::load(sb + j, n), V::load(sb + H + j, n), V::load(sb + 2 * H + j, n),
                                    V::load(sb + 3 * H + j, n), V::load(h + b * H + j, n), dh, dar, daz, dain, dahn,
                                    dh_old);
            dar.store(di + j, n), daz.store(di + H + j, n), dain.store(di + 2 * H + j, n);
            dar.store(dhh + j, n), daz.store(dhh + H + j, n), dahn.store(dhh + 2 * H + j, n);
            dh_old.store(dh0 + b * H + j, n);
          });
        }
      });
  gradients<T>(p, G3, x, w.w_ih, h0, hs, dgi, dgh, dx, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh);
}

}  // namespace

DK_DEFINE_TABLE(RnnKernels, rnn, lstm_forward<T>, lstm_backward<T>, gru_forward<T>, gru_backward<T>)

}  // namespace dk::cpu::DK_ISA_NS
