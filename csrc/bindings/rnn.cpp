// LSTM and GRU: the cells (lstm_cell, gru_cell: x (B, I), states (B, H)) and
// the sequences of one layer (lstm, gru: x (T, B, I), initial states (B, H),
// outputs over all steps (T, B, H)), forward and backward. The cell and the
// sequence share one checker and one kernel (a cell is one step); the op name
// and the argument names in messages are the Python function's.
// Weights as PyTorch: w_ih (G H, I), w_hh (G H, H), b_ih, b_hh (G H,) or None,
// G = 4 (LSTM: i, f, g, o) or 3 (GRU: r, z, n). Outputs are allocated by
// deepkern.ops and checked here (C-contiguous, writeable, the call's dtype).
// numpy arrays run the CPU kernels; CUDA arrays (x decides, the others must
// agree) run the CUDA kernels on the stream of x's interface. Both paths check
// shapes with the same functions (on shape vectors), so they raise the same errors.
#include <cstdint>
#include <string>

#include "bindings/common.h"
#include "bindings/cuda_array.h"
#include "cpu/rnn.h"

#ifdef DK_WITH_CUDA
#include "cuda/rnn.h"
#endif

namespace dk::bind {

namespace {

// The Python names of one op's arguments.
struct Names {
  const char* op;
  const char *h0, *c0;         // initial states
  const char *hs, *cs, *gates;  // outputs of forward, inputs of backward
  const char *dy, *dh_n, *dc_n;  // gradients coming in
  const char *dh0, *dc0;       // gradients going out (with dx, dw_ih, ...)
};

Names names(bool lstm, bool cell, bool backward) {
  static const char* ops[2][2][2] = {{{"gru", "gru_backward"}, {"gru_cell", "gru_cell_backward"}},
                                     {{"lstm", "lstm_backward"}, {"lstm_cell", "lstm_cell_backward"}}};
  const char* op = ops[lstm][cell][backward];
  if (cell) return {op, "h", "c", "h_new", "c_new", lstm ? "gates" : "saved", "dh_new", nullptr, "dc_new", "dh", "dc"};
  return {op, "h0", "c0", "hs", "cs", lstm ? "gates" : "saved", "dy", "dh_n", "dc_n", "dh0", "dc0"};
}

std::string n2(int64_t a, int64_t b) { return "(" + std::to_string(a) + ", " + std::to_string(b) + ")"; }

// One call's arrays, checked against x and the weights; keeps the arrays alive.
// x decides the device: numpy arrays are checked (and read-only ones copied to
// C-contiguous memory) for the CPU kernels, CUDA arrays for the CUDA kernels;
// the shape checks are the same functions for both, so are the messages.
struct Rnn {
  Names nm;
  bool cell;
  int64_t gates;  // G
  DType dt = DType::f32;
  RnnParams p;
  bool gpu = false;
  std::uintptr_t stream = 0;  // x's stream, on the GPU
  const void *x = nullptr, *w_ih = nullptr, *w_hh = nullptr;
  std::vector<py::array> keep;

  Rnn(bool lstm, bool cell_, bool backward) : nm(names(lstm, cell_, backward)), cell(cell_), gates(lstm ? 4 : 3) {}

  // ([T,] B, n): the shape of x-like and state-sequence arrays.
  std::vector<int64_t> seq(int64_t n) const {
    return cell ? std::vector<int64_t>{p.batch, n} : std::vector<int64_t>{p.steps, p.batch, n};
  }

  const char* gate_names() const { return gates == 4 ? "i, f, g, o" : "r, z, n"; }

  // -- the shape checks -------------------------------------------------------------

  void need_ndim(const char* name, const std::vector<int64_t>& s, size_t ndim) const {
    if (s.size() != ndim)
      value_error(nm.op, std::string(name) + " must be " + std::to_string(ndim) + "-D, got shape " + shape_str(s));
  }
  void need_shape(const char* name, const std::vector<int64_t>& s, const std::vector<int64_t>& want) const {
    if (s != want) value_error(nm.op, std::string(name) + " must have shape " + shape_str(want) + ", got " + shape_str(s));
  }

  // x, w_ih, w_hh: T, B, I and H of the call.
  void dims(const std::vector<int64_t>& xs, const std::vector<int64_t>& wi, const std::vector<int64_t>& wh) {
    const char* op = nm.op;
    if (cell && xs.size() != 2) value_error(op, "x must be 2-D (batch, input_size), got shape " + shape_str(xs));
    if (!cell && xs.size() != 3)
      value_error(op, "x must be 3-D (seq_len, batch, input_size), got shape " + shape_str(xs));
    p.steps = cell ? 1 : xs[0];
    p.batch = xs[xs.size() - 2];
    p.input = xs[xs.size() - 1];
    need_ndim("w_ih", wi, 2);
    if (wi[0] % gates)
      value_error(op, "w_ih has " + std::to_string(wi[0]) + " rows, expected " + std::to_string(gates) +
                          " * hidden_size (gates " + gate_names() + ")");
    p.hidden = wi[0] / gates;
    if (wi[1] != p.input)
      value_error(op, "x has " + std::to_string(p.input) + " features, w_ih expects " + std::to_string(wi[1]));
    need_ndim("w_hh", wh, 2);
    if (wh[0] != wi[0])
      value_error(op, "w_hh has " + std::to_string(wh[0]) + " rows, w_ih has " + std::to_string(wi[0]) + " (" +
                          std::to_string(gates) + " * hidden_size)");
    if (wh[1] != p.hidden)
      value_error(op, "w_hh must be " + n2(gates * p.hidden, p.hidden) + " (" + std::to_string(gates) +
                          " * hidden_size, hidden_size) for w_ih's " + std::to_string(wi[0]) + " rows, got " +
                          shape_str(wh));
    // Every size product the kernels form fits int64 (an empty array may have huge dimensions).
    using I128 = __int128;
    const I128 most = I128(1) << 62, sb = I128(p.steps) * p.batch;
    if (sb > most || sb * p.input > most || sb * gates * p.hidden > most || I128(gates) * p.hidden * p.input > most)
      value_error(op, "x " + shape_str(xs) + " and w_ih " + shape_str(wi) + " give sizes that overflow int64");
  }

  // A state (B, H): "h has 255 columns, w_hh expects 256".
  void state_dims(const char* name, const std::vector<int64_t>& s) const {
    need_ndim(name, s, 2);
    if (s[0] != p.batch)
      value_error(nm.op, std::string(name) + " has " + std::to_string(s[0]) + " rows, x has " +
                             std::to_string(p.batch) + " (the batch)");
    if (s[1] != p.hidden)
      value_error(nm.op, std::string(name) + " has " + std::to_string(s[1]) + " columns, w_hh expects " +
                             std::to_string(p.hidden));
  }

  // -- numpy arguments --------------------------------------------------------------

  // A read-only argument, checked for dtype but not yet copied: shapes are checked
  // on it first, so a mismatch never pays for a copy.
  py::array raw(const char* name, py::handle h) const {
    py::array a = as_array(nm.op, name, h);
    if (float_dtype(nm.op, name, a) != dt)
      type_error(nm.op, std::string(name) + " has dtype " + dtype_name(a) + ", expected " +
                            (dt == DType::f32 ? "float32" : "float64") + " like the other arguments");
    return a;
  }

  // The checked argument as the kernels read it: C-contiguous and aligned to its
  // dtype (input() copies strided and misaligned views). numpy's "array is too big"
  // (a strided view of more bytes than can exist) becomes the op's error naming the
  // argument.
  const void* contiguous(const char* name, const py::array& a) {
    try {
      py::array c = input(nm.op, name, a, dt);
      keep.push_back(c);
      return c.data();
    } catch (py::error_already_set& e) {
      if (!e.matches(PyExc_ValueError)) throw;
      value_error(nm.op, std::string(name) + " " + shape_str(a) + " is too large to copy to contiguous memory");
    }
  }

  // -- CUDA arguments ---------------------------------------------------------------

  // A CUDA argument of the call's dtype, C-contiguous (and writeable when written)
  // and aligned to its dtype (a CUDA array cannot be copied here to fix that).
  CudaArray cuda_arg(const char* name, py::handle h, bool written = false) const {
    check_same_device(nm.op, name, h, true, "x");
    CudaArray a = written ? cuda_output(nm.op, name, h) : cuda_array(nm.op, name, h);
    auto str = [](DType d) { return d == DType::f32 ? "float32" : "float64"; };
    if (a.dtype != dt)
      type_error(nm.op, std::string(name) + " has dtype " + str(a.dtype) + ", expected " + str(dt) +
                            " like the other arguments");
    if (reinterpret_cast<uintptr_t>(a.data) % (dt == DType::f32 ? 4 : 8) != 0)
      value_error(nm.op, std::string(name) + " must be aligned to its dtype");
    return a;
  }

  // -- every argument, on either device -----------------------------------------------

  // x, w_ih, w_hh: the device, dtype, T, B, I and H of the call.
  void inputs(py::handle x_, py::handle w_ih_, py::handle w_hh_) {
    gpu = on_gpu(nm.op, {{"x", x_}});
    if (gpu) {
      dt = cuda_array(nm.op, "x", x_).dtype;
      CudaArray xa = cuda_arg("x", x_), wi = cuda_arg("w_ih", w_ih_), wh = cuda_arg("w_hh", w_hh_);
      dims(xa.shape, wi.shape, wh.shape);
      stream = xa.stream;
      x = xa.data, w_ih = wi.data, w_hh = wh.data;
      return;
    }
    dt = float_dtype(nm.op, "x", as_array(nm.op, "x", x_));
    py::array xa = raw("x", x_), wi = raw("w_ih", w_ih_), wh = raw("w_hh", w_hh_);
    dims(shape_of(xa), shape_of(wi), shape_of(wh));
    x = contiguous("x", xa), w_ih = contiguous("w_ih", wi), w_hh = contiguous("w_hh", wh);
  }

  // A state (B, H), read: h0/c0 of a sequence, h/c of a cell.
  const void* state(const char* name, py::handle h) {
    if (gpu) {
      CudaArray a = cuda_arg(name, h);
      state_dims(name, a.shape);
      return a.data;
    }
    py::array a = raw(name, h);
    state_dims(name, shape_of(a));
    return contiguous(name, a);
  }

  // A read-only array of a fixed shape, or None (nullptr).
  template <class T>
  const T* optional(const char* name, py::handle h, const std::vector<int64_t>& shape) {
    if (h.is_none()) return nullptr;
    if (gpu) {
      CudaArray a = cuda_arg(name, h);
      need_shape(name, a.shape, shape);
      return static_cast<const T*>(a.data);
    }
    py::array a = raw(name, h);
    need_shape(name, shape_of(a), shape);
    return static_cast<const T*>(contiguous(name, a));
  }

  template <class T>
  const T* read(const char* name, py::handle h, const std::vector<int64_t>& shape) {
    if (h.is_none())
      type_error(nm.op, std::string(name) + (gpu ? " must be a CUDA array" : " must be a numpy array") + ", got None");
    return optional<T>(name, h, shape);
  }

  // An array written in place, of a fixed shape (None: nullptr when allowed).
  template <class T>
  T* write(const char* name, py::handle h, const std::vector<int64_t>& shape, bool may_be_none = false) {
    if (may_be_none && h.is_none()) return nullptr;
    if (gpu) {
      CudaArray a = cuda_arg(name, h, true);
      need_shape(name, a.shape, shape);
      return static_cast<T*>(a.data);
    }
    py::array a = output(nm.op, name, h, dt);
    need_shape(name, shape_of(a), shape);
    keep.push_back(a);
    return out_ptr<T>(a);
  }

  template <class T>
  RnnWeights<T> weights(py::handle b_ih, py::handle b_hh) {
    const int64_t gh = gates * p.hidden;
    return {static_cast<const T*>(w_ih), static_cast<const T*>(w_hh), optional<T>("b_ih", b_ih, {gh}),
            optional<T>("b_hh", b_hh, {gh})};
  }

  template <class T>
  RnnGrads<T> grads(py::handle dw_ih, py::handle dw_hh, py::handle db_ih, py::handle db_hh) {
    const int64_t gh = gates * p.hidden;
    return {write<T>("dw_ih", dw_ih, {gh, p.input}), write<T>("dw_hh", dw_hh, {gh, p.hidden}),
            write<T>("db_ih", db_ih, {gh}, true), write<T>("db_hh", db_hh, {gh}, true)};
  }
};

// The kernel call of the device the arguments are on (without the GIL); the
// CUDA call compiles only into a CUDA build, where alone r.gpu can be true.
#ifdef DK_WITH_CUDA
#define DK_RNN_CALL(r, cpu_call, cuda_call) \
  if ((r).gpu) cuda_call;                   \
  else cpu_call
#else
#define DK_RNN_CALL(r, cpu_call, cuda_call) cpu_call
#endif

void lstm_forward(bool cell, py::handle x_, py::handle h0_, py::handle c0_, py::handle w_ih_, py::handle w_hh_,
                  py::handle b_ih_, py::handle b_hh_, py::handle hs_, py::handle cs_, py::handle gates_) {
  Rnn r(true, cell, false);
  r.inputs(x_, w_ih_, w_hh_);
  const void *h0 = r.state(r.nm.h0, h0_), *c0 = r.state(r.nm.c0, c0_);
  by_dtype(r.dt, [&](auto tag) {
    using T = decltype(tag);
    const auto w = r.weights<T>(b_ih_, b_hh_);
    const int64_t H = r.p.hidden;
    T *hs = r.write<T>(r.nm.hs, hs_, r.seq(H)), *cs = r.write<T>(r.nm.cs, cs_, r.seq(H)),
      *gates = r.write<T>(r.nm.gates, gates_, r.seq(4 * H));
    const T *px = static_cast<const T*>(r.x), *ph = static_cast<const T*>(h0), *pc = static_cast<const T*>(c0);
    py::gil_scoped_release nogil;
    DK_RNN_CALL(r, cpu::rnn_kernels<T>().lstm_forward(r.p, px, ph, pc, w, hs, cs, gates),
                cuda::lstm_forward<T>(r.p, px, ph, pc, w, hs, cs, gates, r.stream));
  });
}

void lstm_backward(bool cell, py::handle dy_, py::handle dh_n_, py::handle dc_n_, py::handle x_, py::handle h0_,
                   py::handle c0_, py::handle w_ih_, py::handle w_hh_, py::handle hs_, py::handle cs_,
                   py::handle gates_, py::handle dx_, py::handle dh0_, py::handle dc0_, py::handle dw_ih_,
                   py::handle dw_hh_, py::handle db_ih_, py::handle db_hh_, bool state_grads) {
  Rnn r(true, cell, true);
  r.inputs(x_, w_ih_, w_hh_);
  r.p.state_grads = state_grads;
  const void *h0 = r.state(r.nm.h0, h0_), *c0 = r.state(r.nm.c0, c0_);
  by_dtype(r.dt, [&](auto tag) {
    using T = decltype(tag);
    const int64_t B = r.p.batch, H = r.p.hidden;
    const T* dy = r.optional<T>(r.nm.dy, dy_, r.seq(H));
    const T* dh_n = cell ? nullptr : r.optional<T>(r.nm.dh_n, dh_n_, {B, H});
    const T* dc_n = r.optional<T>(r.nm.dc_n, dc_n_, {B, H});
    // A cell's backward reads no hs (that is only the states between steps).
    const T* hs = cell ? nullptr : r.read<T>(r.nm.hs, hs_, r.seq(H));
    const T *cs = r.read<T>(r.nm.cs, cs_, r.seq(H)), *gates = r.read<T>(r.nm.gates, gates_, r.seq(4 * H));
    T* dx = r.write<T>("dx", dx_, r.seq(r.p.input));
    T *dh0 = r.write<T>(r.nm.dh0, dh0_, {B, H}), *dc0 = r.write<T>(r.nm.dc0, dc0_, {B, H});
    const auto g = r.grads<T>(dw_ih_, dw_hh_, db_ih_, db_hh_);
    const RnnWeights<T> w{static_cast<const T*>(r.w_ih), static_cast<const T*>(r.w_hh), nullptr, nullptr};
    const T *px = static_cast<const T*>(r.x), *ph = static_cast<const T*>(h0), *pc = static_cast<const T*>(c0);
    py::gil_scoped_release nogil;
    DK_RNN_CALL(
        r, cpu::rnn_kernels<T>().lstm_backward(r.p, px, ph, pc, w, hs, cs, gates, dy, dh_n, dc_n, dx, dh0, dc0, g),
        cuda::lstm_backward<T>(r.p, px, ph, pc, w, hs, cs, gates, dy, dh_n, dc_n, dx, dh0, dc0, g, r.stream));
  });
}

void gru_forward(bool cell, py::handle x_, py::handle h0_, py::handle w_ih_, py::handle w_hh_, py::handle b_ih_,
                 py::handle b_hh_, py::handle hs_, py::handle saved_) {
  Rnn r(false, cell, false);
  r.inputs(x_, w_ih_, w_hh_);
  const void* h0 = r.state(r.nm.h0, h0_);
  by_dtype(r.dt, [&](auto tag) {
    using T = decltype(tag);
    const auto w = r.weights<T>(b_ih_, b_hh_);
    const int64_t H = r.p.hidden;
    T *hs = r.write<T>(r.nm.hs, hs_, r.seq(H)), *saved = r.write<T>(r.nm.gates, saved_, r.seq(4 * H));
    const T *px = static_cast<const T*>(r.x), *ph = static_cast<const T*>(h0);
    py::gil_scoped_release nogil;
    DK_RNN_CALL(r, cpu::rnn_kernels<T>().gru_forward(r.p, px, ph, w, hs, saved),
                cuda::gru_forward<T>(r.p, px, ph, w, hs, saved, r.stream));
  });
}

void gru_backward(bool cell, py::handle dy_, py::handle dh_n_, py::handle x_, py::handle h0_, py::handle w_ih_,
                  py::handle w_hh_, py::handle hs_, py::handle saved_, py::handle dx_, py::handle dh0_,
                  py::handle dw_ih_, py::handle dw_hh_, py::handle db_ih_, py::handle db_hh_, bool state_grads) {
  Rnn r(false, cell, true);
  r.inputs(x_, w_ih_, w_hh_);
  r.p.state_grads = state_grads;
  const void* h0 = r.state(r.nm.h0, h0_);
  by_dtype(r.dt, [&](auto tag) {
    using T = decltype(tag);
    const int64_t B = r.p.batch, H = r.p.hidden;
    const T* dy = r.optional<T>(r.nm.dy, dy_, r.seq(H));
    const T* dh_n = cell ? nullptr : r.optional<T>(r.nm.dh_n, dh_n_, {B, H});
    const T* hs = cell ? nullptr : r.read<T>(r.nm.hs, hs_, r.seq(H));
    const T* saved = r.read<T>(r.nm.gates, saved_, r.seq(4 * H));
    T* dx = r.write<T>("dx", dx_, r.seq(r.p.input));
    T* dh0 = r.write<T>(r.nm.dh0, dh0_, {B, H});
    const auto g = r.grads<T>(dw_ih_, dw_hh_, db_ih_, db_hh_);
    const RnnWeights<T> w{static_cast<const T*>(r.w_ih), static_cast<const T*>(r.w_hh), nullptr, nullptr};
    const T *px = static_cast<const T*>(r.x), *ph = static_cast<const T*>(h0);
    py::gil_scoped_release nogil;
    DK_RNN_CALL(r, cpu::rnn_kernels<T>().gru_backward(r.p, px, ph, w, hs, saved, dy, dh_n, dx, dh0, g),
                cuda::gru_backward<T>(r.p, px, ph, w, hs, saved, dy, dh_n, dx, dh0, g, r.stream));
  });
}

#undef DK_RNN_CALL

}  // namespace

void bind_rnn(py::module_& m) {
  using py::arg;
  for (bool cell : {true, false}) {
    const std::string lstm = cell ? "lstm_cell" : "lstm", gru = cell ? "gru_cell" : "gru";
    const char* h0 = cell ? "h" : "h0";
    const char* c0 = cell ? "c" : "c0";
    m.def(
        lstm.c_str(),
        [cell](py::handle x, py::handle h0, py::handle c0, py::handle w_ih, py::handle w_hh, py::handle b_ih,
               py::handle b_hh, py::handle hs, py::handle cs, py::handle gates) {
          lstm_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, hs, cs, gates);
        },
        arg("x"), arg(h0), arg(c0), arg("w_ih"), arg("w_hh"), arg("b_ih"), arg("b_hh"), arg(cell ? "h_new" : "hs"),
        arg(cell ? "c_new" : "cs"), arg("gates"),
        cell ? "One LSTM step in place: h_new, c_new (B, H) and the activated gates (B, 4H) i, f, g, o."
             : "An LSTM layer over x (T, B, I) in place: hs, cs (T, B, H), the activated gates (T, B, 4H).");
    m.def(
        (lstm + "_backward").c_str(),
        [cell](py::handle dy, py::handle dh_n, py::handle dc_n, py::handle x, py::handle h0, py::handle c0,
               py::handle w_ih, py::handle w_hh, py::handle hs, py::handle cs, py::handle gates, py::handle dx,
               py::handle dh0, py::handle dc0, py::handle dw_ih, py::handle dw_hh, py::handle db_ih,
               py::handle db_hh, bool state_grads) {
          lstm_backward(cell, dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, hs, cs, gates, dx, dh0, dc0, dw_ih, dw_hh,
                        db_ih, db_hh, state_grads);
        },
        arg(cell ? "dh_new" : "dy"), arg("dh_n"), arg(cell ? "dc_new" : "dc_n"), arg("x"), arg(h0), arg(c0),
        arg("w_ih"), arg("w_hh"), arg(cell ? "h_new" : "hs"), arg(cell ? "c_new" : "cs"), arg("gates"), arg("dx"),
        arg(cell ? "dh" : "dh0"), arg(cell ? "dc" : "dc0"), arg("dw_ih"), arg("dw_hh"), arg("db_ih"), arg("db_hh"),
        arg("state_grads") = true,
        "Gradients of the LSTM forward in place (incoming gradients and bias gradients may be None; a cell "
        "ignores dh_n and h_new; state_grads=False leaves dh0 undefined and skips its product).");
    m.def(
        gru.c_str(),
        [cell](py::handle x, py::handle h0, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh,
               py::handle hs, py::handle saved) { gru_forward(cell, x, h0, w_ih, w_hh, b_ih, b_hh, hs, saved); },
        arg("x"), arg(h0), arg("w_ih"), arg("w_hh"), arg("b_ih"), arg("b_hh"), arg(cell ? "h_new" : "hs"),
        arg("saved"),
        cell ? "One GRU step in place: h_new (B, H) and saved (B, 4H): r, z, n and hn = h W_hn^T + b_hn."
             : "A GRU layer over x (T, B, I) in place: hs (T, B, H) and saved (T, B, 4H).");
    m.def(
        (gru + "_backward").c_str(),
        [cell](py::handle dy, py::handle dh_n, py::handle x, py::handle h0, py::handle w_ih, py::handle w_hh,
               py::handle hs, py::handle saved, py::handle dx, py::handle dh0, py::handle dw_ih, py::handle dw_hh,
               py::handle db_ih, py::handle db_hh, bool state_grads) {
          gru_backward(cell, dy, dh_n, x, h0, w_ih, w_hh, hs, saved, dx, dh0, dw_ih, dw_hh, db_ih, db_hh, state_grads);
        },
        arg(cell ? "dh_new" : "dy"), arg("dh_n"), arg("x"), arg(h0), arg("w_ih"), arg("w_hh"),
        arg(cell ? "h_new" : "hs"), arg("saved"), arg("dx"), arg(cell ? "dh" : "dh0"), arg("dw_ih"), arg("dw_hh"),
        arg("db_ih"), arg("db_hh"), arg("state_grads") = true,
        "Gradients of the GRU forward in place (incoming gradients and bias gradients may be None; a cell "
        "ignores dh_n and h_new; state_grads=False leaves dh0 undefined and skips its product).");
  }
}

}  // namespace dk::bind
