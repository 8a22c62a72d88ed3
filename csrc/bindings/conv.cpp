// conv2d and conv2d_backward: checks, then the conv kernels (csrc/cpu/conv.h).
// x is (N, C, H, W) (N may be 0) or unbatched (C, H, W), w (K, C / groups, R, S),
// as torch. stride, padding and dilation are (h, w) pairs; `same` asks for
// torch's padding="same" (stride 1; total padding d * (k - 1) per axis, the
// odd one out at the bottom / right), which then replaces `padding`.
// Outputs are allocated by deepkern.ops with conv2d_output_shape and checked here.
// numpy arrays run the CPU kernels, CUDA arrays (__cuda_array_interface__) the
// CUDA ones on the stream of x (dy); both go through the same checks (Side).
#include <pybind11/stl.h>

#include <array>

#include "bindings/common.h"
#include "bindings/cuda_array.h"
#include "cpu/conv.h"

#ifdef DK_WITH_CUDA
#include "cuda/conv.h"
#endif

namespace dk::bind {

namespace {

using Pair = std::array<int64_t, 2>;

std::string pair_str(const Pair& v) { return "(" + std::to_string(v[0]) + ", " + std::to_string(v[1]) + ")"; }

// One call's geometry, checked as torch checks it; `params` for the kernels.
struct ConvCall {
  ConvParams params;
  bool batched = true;
  std::vector<int64_t> y_shape;

  ConvCall(const char* op, const std::vector<int64_t>& x, const std::vector<int64_t>& w, const Pair& stride,
           const Pair& padding, const Pair& dilation, int64_t groups, bool same) {
    if (x.size() != 3 && x.size() != 4)
      value_error(op, "x must be (N, C, H, W) or (C, H, W), got shape " + shape_str(x));
    batched = x.size() == 4;
    const size_t o = batched ? 1 : 0;
    if (x[0] < 0 || x[o] < 1 || x[o + 1] < 1 || x[o + 2] < 1)
      value_error(op, "x must have non-empty C, H and W (only the batch may be 0), got shape " + shape_str(x));
    if (w.size() != 4)
      value_error(op, "w must be 4-D (out_channels, in_channels / groups, kH, kW), got shape " + shape_str(w));
    for (int64_t v : w)
      if (v < 1) value_error(op, "w must have non-empty dimensions, got shape " + shape_str(w));
    if (groups < 1) value_error(op, "groups must be >= 1, got " + std::to_string(groups));
    const int64_t c = x[o], k = w[0];
    if (c % groups != 0)
      value_error(op, "groups=" + std::to_string(groups) + " must divide x's " + std::to_string(c) + " input channels");
    if (k % groups != 0)
      value_error(op, "groups=" + std::to_string(groups) + " must divide w's " + std::to_string(k) + " output channels");
    if (w[1] != c / groups)
      value_error(op, "w has " + std::to_string(w[1]) + " input channels per group, x has " +
                          std::to_string(c / groups) +
                          (groups > 1 ? " (" + std::to_string(c) + " over groups=" + std::to_string(groups) + ")" : ""));
    const int64_t most = (int64_t(1) << 31) - 1;  // keeps every window product in int64
    for (int a = 0; a < 2; ++a) {
      if (stride[a] < 1 || stride[a] > most) value_error(op, "stride must be in [1, 2^31), got " + pair_str(stride));
      if (dilation[a] < 1 || dilation[a] > most)
        value_error(op, "dilation must be in [1, 2^31), got " + pair_str(dilation));
      if (!same && (padding[a] < 0 || padding[a] > most))
        value_error(op, "padding must be in [0, 2^31), got " + pair_str(padding));
    }
    if (same && (stride[0] != 1 || stride[1] != 1))
      value_error(op, "padding='same' needs stride 1 (as torch), got stride " + pair_str(stride));
    // In 128 bits: kernel extents (d * (k - 1) + 1) of array-sized kernels may pass int64.
    using I = __int128;
    const int64_t in[2] = {x[o + 1], x[o + 2]}, ks[2] = {w[2], w[3]};
    Pair before{}, out{};
    for (int a = 0; a < 2; ++a) {
      const I extent = I(dilation[a]) * (ks[a] - 1) + 1;
      I total = same ? extent - 1 : 2 * I(padding[a]);  // padding on both sides together
      before[a] = same ? static_cast<int64_t>(total / 2) : padding[a];
      const I span = I(in[a]) + total - extent;
      if (span < 0)
        value_error(op, "x of size (H, W) = " + pair_str({in[0], in[1]}) + " padded by " +
                            (same ? std::string("'same'") : pair_str(padding)) + " is smaller than the kernel " +
                            pair_str({ks[0], ks[1]}) + " dilated by " + pair_str(dilation));
      out[a] = static_cast<int64_t>(span / stride[a] + 1);
    }
    ConvParams& p = params;
    p.n = batched ? x[0] : 1, p.c = c, p.h = in[0], p.w = in[1];
    p.k = k, p.r = ks[0], p.s = ks[1], p.groups = groups;
    p.oh = out[0], p.ow = out[1];
    p.sh = stride[0], p.sw = stride[1], p.ph = before[0], p.pw = before[1], p.dh = dilation[0], p.dw = dilation[1];
    y_shape = batched ? std::vector<int64_t>{p.n, k, p.oh, p.ow} : std::vector<int64_t>{k, p.oh, p.ow};
  }
};

// How each device's arrays are read and its kernels called; the checks in
// conv2d / conv2d_backward are written once over a Side.
struct CpuSide {
  using Array = py::array;
  static DType dtype(const char* op, const char* name, py::handle h) { return float_dtype(op, name, as_array(op, name, h)); }
  static Array in(const char* op, const char* name, py::handle h, DType dt) { return input(op, name, h, dt); }
  static Array out(const char* op, const char* name, py::handle h, DType dt) { return output(op, name, h, dt); }
  static std::vector<int64_t> shape(const Array& a) { return shape_of(a); }
  static std::uintptr_t stream(const Array&) { return 0; }
  template <class T>
  static const T* cptr(const Array& a) { return in_ptr<T>(a); }
  template <class T>
  static T* mptr(Array& a) { return out_ptr<T>(a); }
  template <class T>
  static void forward(const ConvParams& p, const T* x, const T* w, const T* b, T* y, std::uintptr_t, bool) {
    cpu::conv_kernels<T>().forward(p, x, w, b, y);
  }
  template <class T>
  static void backward(const ConvParams& p, const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, std::uintptr_t,
                       bool) {
    const auto& k = cpu::conv_kernels<T>();
    if (dx) k.backward_data(p, dy, w, dx);
    if (dw || db) k.backward_weight(p, dy, x, dw, db);
  }
};

#ifdef DK_WITH_CUDA
struct GpuSide {
  using Array = CudaArray;
  static DType dtype(const char* op, const char* name, py::handle h) { return cuda_array(op, name, h).dtype; }
  static Array in(const char* op, const char* name, py::handle h, DType dt) { return cuda_input(op, name, h, dt); }
  static Array out(const char* op, const char* name, py::handle h, DType dt) { return cuda_output(op, name, h, dt); }
  static std::vector<int64_t> shape(const Array& a) { return a.shape; }
  static std::uintptr_t stream(const Array& a) { return a.stream; }
  template <class T>
  static const T* cptr(const Array& a) { return static_cast<const T*>(a.data); }
  template <class T>
  static T* mptr(Array& a) { return static_cast<T*>(a.data); }
  template <class T>
  static void forward(const ConvParams& p, const T* x, const T* w, const T* b, T* y, std::uintptr_t s, bool tf32) {
    cuda::conv_forward<T>(p, x, w, b, y, s, tf32);
  }
  template <class T>
  static void backward(const ConvParams& p, const T* dy, const T* x, const T* w, T* dx, T* dw, T* db,
                       std::uintptr_t s, bool tf32) {
    if (dx) cuda::conv_backward_data<T>(p, dy, w, dx, s, tf32);
    if (dw || db) cuda::conv_backward_weight<T>(p, dy, x, dw, db, s, tf32);
  }
};
#endif

template <class Side>
void conv2d(py::handle x_, py::handle w_, py::handle b_, py::handle y_, const Pair& stride, const Pair& padding,
            const Pair& dilation, int64_t groups, bool same, bool tf32) {
  const char* op = "conv2d";
  using Array = typename Side::Array;
  DType dt = Side::dtype(op, "x", x_);
  Array x = Side::in(op, "x", x_, dt), w = Side::in(op, "w", w_, dt);
  ConvCall call(op, Side::shape(x), Side::shape(w), stride, padding, dilation, groups, same);
  const bool has_b = !b_.is_none();
  Array b = has_b ? Side::in(op, "b", b_, dt) : Array();
  if (has_b) check_shape(op, "b", Side::shape(b), {call.params.k});
  Array y = Side::out(op, "y", y_, dt);
  check_shape(op, "y", Side::shape(y), call.y_shape);
  by_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    const T *px = Side::template cptr<T>(x), *pw = Side::template cptr<T>(w);
    const T* pb = has_b ? Side::template cptr<T>(b) : nullptr;
    T* py_ = Side::template mptr<T>(y);
    py::gil_scoped_release nogil;
    Side::template forward<T>(call.params, px, pw, pb, py_, Side::stream(x), tf32);
  });
}

template <class Side>
void conv2d_backward(py::handle dy_, py::handle x_, py::handle w_, py::handle dx_, py::handle dw_, py::handle db_,
                     const Pair& stride, const Pair& padding, const Pair& dilation, int64_t groups, bool same,
                     bool tf32) {
  const char* op = "conv2d_backward";
  using Array = typename Side::Array;
  DType dt = Side::dtype(op, "dy", dy_);
  Array dy = Side::in(op, "dy", dy_, dt), x = Side::in(op, "x", x_, dt), w = Side::in(op, "w", w_, dt);
  ConvCall call(op, Side::shape(x), Side::shape(w), stride, padding, dilation, groups, same);
  check_shape(op, "dy", Side::shape(dy), call.y_shape);
  const bool has_dx = !dx_.is_none(), has_dw = !dw_.is_none(), has_db = !db_.is_none();
  Array dx = has_dx ? Side::out(op, "dx", dx_, dt) : Array();
  Array dw = has_dw ? Side::out(op, "dw", dw_, dt) : Array();
  Array db = has_db ? Side::out(op, "db", db_, dt) : Array();
  if (has_dx) check_shape(op, "dx", Side::shape(dx), Side::shape(x));
  if (has_dw) check_shape(op, "dw", Side::shape(dw), Side::shape(w));
  if (has_db) check_shape(op, "db", Side::shape(db), {call.params.k});
  by_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    const T *pdy = Side::template cptr<T>(dy), *px = Side::template cptr<T>(x), *pw = Side::template cptr<T>(w);
    T* pdx = has_dx ? Side::template mptr<T>(dx) : nullptr;
    T* pdw = has_dw ? Side::template mptr<T>(dw) : nullptr;
    T* pdb = has_db ? Side::template mptr<T>(db) : nullptr;
    py::gil_scoped_release nogil;
    Side::template backward<T>(call.params, pdy, px, pw, pdx, pdw, pdb, Side::stream(dy), tf32);
  });
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def(
      "conv2d_output_shape",
      [](const std::string& op, const std::vector<int64_t>& x, const std::vector<int64_t>& w, Pair stride,
         Pair padding, Pair dilation, int64_t groups, bool same) {
        return ConvCall(op.c_str(), x, w, stride, padding, dilation, groups, same).y_shape;
      },
      py::arg("op"), py::arg("x_shape"), py::arg("w_shape"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("same"),
      "The output shape of conv2d, as torch; ValueError (naming op) when the arguments are invalid.");

  m.def(
      "conv2d",
      [](py::handle x, py::handle w, py::handle b, py::handle y, Pair stride, Pair padding, Pair dilation,
         int64_t groups, bool same, bool tf32) {
        const char* op = "conv2d";
        const bool gpu = on_gpu(op, {{"x", x}, {"w", w}, {"b", b}, {"y", y}});  // b may be None
#ifdef DK_WITH_CUDA
        if (gpu) return conv2d<GpuSide>(x, w, b, y, stride, padding, dilation, groups, same, tf32);
#endif
        conv2d<CpuSide>(x, w, b, y, stride, padding, dilation, groups, same, tf32);
      },
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("y"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("same"), py::arg("tf32") = false,
      "y = conv2d(x, w) + b in place (torch.nn.functional.conv2d); b may be None. numpy arrays run on the "
      "CPU, CUDA arrays on the GPU; tf32: tensor-core products on the GPU (float32), ignored on the CPU.");

  m.def(
      "conv2d_backward",
      [](py::handle dy, py::handle x, py::handle w, py::handle dx, py::handle dw, py::handle db, Pair stride,
         Pair padding, Pair dilation, int64_t groups, bool same, bool tf32) {
        const char* op = "conv2d_backward";
        const bool gpu = on_gpu(op, {{"dy", dy}, {"x", x}, {"w", w}, {"dx", dx}, {"dw", dw}, {"db", db}});
#ifdef DK_WITH_CUDA
        if (gpu) return conv2d_backward<GpuSide>(dy, x, w, dx, dw, db, stride, padding, dilation, groups, same, tf32);
#endif
        conv2d_backward<CpuSide>(dy, x, w, dx, dw, db, stride, padding, dilation, groups, same, tf32);
      },
      py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("dx"), py::arg("dw"), py::arg("db"), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("same"), py::arg("tf32") = false,
      "Gradients of conv2d in place: dx (x's shape), dw (w's shape), db (K,); any of them may be None.");
}

}  // namespace dk::bind
