// Pooling: max_pool2d, avg_pool2d, global_avg_pool2d and their backwards.
// x is (N, C, H, W) (N may be 0) or unbatched (C, H, W), as torch; outputs are
// allocated by deepkern.ops with pool2d_output_shape and checked here.
// The window arguments are (h, w) pairs; every rule torch enforces is checked
// here with its own message before any kernel runs.
#include <pybind11/stl.h>

#include <array>

#include "bindings/common.h"
#include "cpu/pool.h"

namespace dk::bind {

using Pair = std::array<int64_t, 2>;

static std::string pair_str(const Pair& v) { return "(" + std::to_string(v[0]) + ", " + std::to_string(v[1]) + ")"; }

// The windows of one call, checked: kernel, stride, dilation >= 1, 0 <= padding <= kernel / 2,
// all below 2^31 (so the kernels' window arithmetic cannot overflow int64).
struct Window {
  Pair k, s, p, d;
  bool ceil_mode;

  Window(const char* op, const Pair& kernel, const Pair& stride, const Pair& padding, const Pair& dilation,
         bool ceil)
      : k(kernel), s(stride), p(padding), d(dilation), ceil_mode(ceil) {
    for (int a = 0; a < 2; ++a) {
      if (k[a] < 1) value_error(op, "kernel_size must be >= 1, got " + pair_str(k));
      if (s[a] < 1) value_error(op, "stride must be >= 1, got " + pair_str(s));
      if (d[a] < 1) value_error(op, "dilation must be >= 1, got " + pair_str(d));
      if (p[a] < 0) value_error(op, "padding must be >= 0, got " + pair_str(p));
      if (p[a] > k[a] / 2)
        value_error(op, "padding " + pair_str(p) + " must be at most half of kernel_size " + pair_str(k));
    }
    const int64_t most = (int64_t(1) << 31) - 1;  // keeps every window product in int64
    for (const auto& [name, v] : {std::pair<const char*, const Pair*>{"kernel_size", &k}, {"stride", &s},
                                  {"padding", &p}, {"dilation", &d}})
      if ((*v)[0] > most || (*v)[1] > most) value_error(op, std::string(name) + " must be < 2^31, got " + pair_str(*v));
  }

  // torch's pooling_output_shape along axis a; 0 when the window does not fit.
  // With ceil_mode the last window must start inside the input or the left padding.
  // In 128 bits: Python may pass sizes whose products overflow int64. < 1 when the
  // window (extent d * (k - 1) + 1) does not fit the padded input, which ceil_mode
  // relaxes by up to s - 1 positions past its end (as torch).
  int64_t out(int a, int64_t in) const {
    using I = __int128;
    I num = I(in) + 2 * I(p[a]) - I(d[a]) * (k[a] - 1) - 1 + (ceil_mode ? s[a] - 1 : 0);
    I o = (num >= 0 ? num / s[a] : -((-num + s[a] - 1) / s[a])) + 1;  // floor division
    if (ceil_mode && o >= 1 && (o - 1) * s[a] >= I(in) + p[a]) --o;
    return o < 1 ? 0 : static_cast<int64_t>(o);
  }

  // `name`: the input's argument, named in the message.
  Pair out_shape(const char* op, const char* name, int64_t ih, int64_t iw) const {
    Pair o{out(0, ih), out(1, iw)};
    if (o[0] < 1 || o[1] < 1)
      value_error(op, std::string(name) + " of size (H, W) = " + pair_str({ih, iw}) + " with kernel_size " + pair_str(k) + ", dilation " +
                          pair_str(d) + " and padding " + pair_str(p) +
                          " gives an empty output: the window is larger than the padded input");
    return o;
  }

  PoolParams params(int64_t planes, int64_t ih, int64_t iw, const Pair& o) const {
    PoolParams q;
    q.planes = planes;
    q.ih = ih;
    q.iw = iw;
    q.oh = o[0];
    q.ow = o[1];
    q.kh = k[0];
    q.kw = k[1];
    q.sh = s[0];
    q.sw = s[1];
    q.ph = p[0];
    q.pw = p[1];
    q.dh = d[0];
    q.dw = d[1];
    return q;
  }
};

// x: (N, C, H, W) with N >= 0, or (C, H, W); C, H, W >= 1 (torch's rule).
static void check_planes(const char* op, const char* name, const std::vector<int64_t>& shape) {
  std::string got = "(";
  for (size_t a = 0; a < shape.size(); ++a) got += (a ? ", " : "") + std::to_string(shape[a]);
  got += shape.size() == 1 ? ",)" : ")";
  if (shape.size() != 3 && shape.size() != 4)
    value_error(op, std::string(name) + " must be (N, C, H, W) or (C, H, W), got shape " + got);
  for (size_t a = shape.size() - 3; a < shape.size(); ++a)
    if (shape[a] < 1)
      value_error(op, std::string(name) + " must have non-empty C, H and W (only the batch may be 0), got shape " + got);
  if (shape[0] < 0) value_error(op, std::string(name) + " has a negative size: " + got);
}
static void check_planes(const char* op, const char* name, const py::array& x) { check_planes(op, name, shape_of(x)); }

// x's shape with the last two sizes replaced.
static std::vector<int64_t> with_hw(const py::array& x, int64_t h, int64_t w) {
  std::vector<int64_t> s = shape_of(x);
  s[s.size() - 2] = h;
  s[s.size() - 1] = w;
  return s;
}

static int64_t planes_of(const py::array& x) { return x.ndim() == 4 ? x.shape(0) * x.shape(1) : x.shape(0); }

// indices: written in place, so int64, C-contiguous, aligned and writeable.
static py::array index_output(const char* op, py::handle h) {
  py::array a = as_array(op, "indices", h);
  if (!a.dtype().is(py::dtype::of<int64_t>())) type_error(op, "indices must be int64, got " + dtype_name(a));
  check_writable(op, "indices", a);
  return a;
}

void bind_pool(py::module_& m) {
  m.def(
      "pool2d_check_input",
      [](const std::string& op, const std::string& name, const std::vector<int64_t>& shape) {
        check_planes(op.c_str(), name.c_str(), shape);
      },
      py::arg("op"), py::arg("name"), py::arg("shape"),
      "ValueError (naming op and name) unless shape is (N, C, H, W) with N >= 0 or (C, H, W), C, H, W >= 1.");

  m.def(
      "pool2d_output_shape",
      [](const std::string& op, const std::string& name, const std::vector<int64_t>& shape, Pair kernel, Pair stride,
         Pair padding, Pair dilation, bool ceil_mode) {
        check_planes(op.c_str(), name.c_str(), shape);
        Window w(op.c_str(), kernel, stride, padding, dilation, ceil_mode);
        return w.out_shape(op.c_str(), name.c_str(), shape[shape.size() - 2], shape[shape.size() - 1]);
      },
      py::arg("op"), py::arg("name"), py::arg("shape"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("ceil_mode"),
      "(oh, ow) of pooling an input of `shape` (named `name`), as torch; ValueError (naming op) when invalid.");

  m.def(
      "max_pool2d",
      [](py::handle x_, py::handle y_, py::handle idx_, Pair kernel, Pair stride, Pair padding, Pair dilation,
         bool ceil_mode) {
        const char* op = "max_pool2d";
        py::array x0 = as_array(op, "x", x_);
        DType dt = float_dtype(op, "x", x0);
        py::array x = input(op, "x", x0, dt);
        check_planes(op, "x", x);
        Window w(op, kernel, stride, padding, dilation, ceil_mode);
        int64_t ih = x.shape(x.ndim() - 2), iw = x.shape(x.ndim() - 1);
        Pair o = w.out_shape(op, "x", ih, iw);
        py::array y = output(op, "y", y_, dt), idx = index_output(op, idx_);
        check_shape(op, "y", y, with_hw(x, o[0], o[1]));
        check_shape(op, "indices", idx, with_hw(x, o[0], o[1]));
        PoolParams p = w.params(planes_of(x), ih, iw, o);
        by_dtype(dt, [&](auto tag) {
          using T = decltype(tag);
          const T* px = in_ptr<T>(x);
          T* py_ = out_ptr<T>(y);
          int64_t* pi = out_ptr<int64_t>(idx);
          py::gil_scoped_release nogil;
          cpu::pool_kernels<T>().max_pool2d(p, px, py_, pi);
        });
      },
      py::arg("x"), py::arg("y"), py::arg("indices"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("ceil_mode"), "y and indices (flat within each plane) of max pooling, in place.");

  m.def(
      "max_pool2d_backward",
      [](py::handle dy_, py::handle idx_, py::handle dx_) {
        const char* op = "max_pool2d_backward";
        py::array dy0 = as_array(op, "dy", dy_);
        DType dt = float_dtype(op, "dy", dy0);
        py::array dy = input(op, "dy", dy0, dt), dx = output(op, "dx", dx_, dt);
        py::array_t<int64_t> idx = labels(op, "indices", idx_);
        check_planes(op, "dx", dx);
        check_shape(op, "dy", dy, with_hw(dx, dy.ndim() >= 2 ? dy.shape(dy.ndim() - 2) : -1,
                                          dy.ndim() >= 2 ? dy.shape(dy.ndim() - 1) : -1));
        check_shape(op, "indices", idx, shape_of(dy));
        PoolParams p;
        p.planes = planes_of(dx);
        p.ih = dx.shape(dx.ndim() - 2);
        p.iw = dx.shape(dx.ndim() - 1);
        p.oh = dy.shape(dy.ndim() - 2);
        p.ow = dy.shape(dy.ndim() - 1);
        int64_t bad = by_dtype(dt, [&](auto tag) {
          using T = decltype(tag);
          const T* pdy = in_ptr<T>(dy);
          const int64_t* pi = idx.data();
          T* pdx = out_ptr<T>(dx);
          py::gil_scoped_release nogil;
          return cpu::pool_kernels<T>().max_pool2d_backward(p, pdy, pi, pdx);
        });
        if (bad > 0)
          value_error(op, "indices has " + std::to_string(bad) + " entries outside [0, H * W) = [0, " +
                              std::to_string(p.ih * p.iw) + ") (other than -1)");
      },
      py::arg("dy"), py::arg("indices"), py::arg("dx"),
      "dx (written in place) of max pooling: dy scattered to the input elements named by indices.");

  m.def(
      "avg_pool2d",
      [](py::handle x_, py::handle y_, Pair kernel, Pair stride, Pair padding, bool ceil_mode,
         bool count_include_pad) {
        const char* op = "avg_pool2d";
        py::array x0 = as_array(op, "x", x_);
        DType dt = float_dtype(op, "x", x0);
        py::array x = input(op, "x", x0, dt);
        check_planes(op, "x", x);
        Window w(op, kernel, stride, padding, {1, 1}, ceil_mode);
        int64_t ih = x.shape(x.ndim() - 2), iw = x.shape(x.ndim() - 1);
        Pair o = w.out_shape(op, "x", ih, iw);
        py::array y = output(op, "y", y_, dt);
        check_shape(op, "y", y, with_hw(x, o[0], o[1]));
        PoolParams p = w.params(planes_of(x), ih, iw, o);
        p.count_include_pad = count_include_pad;
        by_dtype(dt, [&](auto tag) {
          using T = decltype(tag);
          const T* px = in_ptr<T>(x);
          T* py_ = out_ptr<T>(y);
          py::gil_scoped_release nogil;
          cpu::pool_kernels<T>().avg_pool2d(p, px, py_);
        });
      },
      py::arg("x"), py::arg("y"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("ceil_mode"), py::arg("count_include_pad"), "y of average pooling, in place.");

  m.def(
      "avg_pool2d_backward",
      [](py::handle dy_, py::handle dx_, Pair kernel, Pair stride, Pair padding, bool ceil_mode,
         bool count_include_pad) {
        const char* op = "avg_pool2d_backward";
        py::array dy0 = as_array(op, "dy", dy_);
        DType dt = float_dtype(op, "dy", dy0);
        py::array dy = input(op, "dy", dy0, dt), dx = output(op, "dx", dx_, dt);
        check_planes(op, "dx", dx);
        Window w(op, kernel, stride, padding, {1, 1}, ceil_mode);
        int64_t ih = dx.shape(dx.ndim() - 2), iw = dx.shape(dx.ndim() - 1);
        Pair o = w.out_shape(op, "dx", ih, iw);
        check_shape(op, "dy", dy, with_hw(dx, o[0], o[1]));
        PoolParams p = w.params(planes_of(dx), ih, iw, o);
        p.count_include_pad = count_include_pad;
        by_dtype(dt, [&](auto tag) {
          using T = decltype(tag);
          const T* pdy = in_ptr<T>(dy);
          T* pdx = out_ptr<T>(dx);
          py::gil_scoped_release nogil;
          cpu::pool_kernels<T>().avg_pool2d_backward(p, pdy, pdx);
        });
      },
      py::arg("dy"), py::arg("dx"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("ceil_mode"), py::arg("count_include_pad"), "dx (written in place) of average pooling.");

  m.def(
      "global_avg_pool2d",
      [](py::handle x_, py::handle y_) {
        const char* op = "global_avg_pool2d";
        py::array x0 = as_array(op, "x", x_);
        DType dt = float_dtype(op, "x", x0);
        py::array x = input(op, "x", x0, dt);
        check_planes(op, "x", x);
        py::array y = output(op, "y", y_, dt);
        check_shape(op, "y", y, with_hw(x, 1, 1));
        int64_t planes = planes_of(x), hw = x.shape(x.ndim() - 2) * x.shape(x.ndim() - 1);
        by_dtype(dt, [&](auto tag) {
          using T = decltype(tag);
          const T* px = in_ptr<T>(x);
          T* py_ = out_ptr<T>(y);
          py::gil_scoped_release nogil;
          cpu::pool_kernels<T>().global_avg_pool2d(planes, hw, px, py_);
        });
      },
      py::arg("x"), py::arg("y"), "y (..., 1, 1) = the mean of each (h, w) plane of x, in place.");

  m.def(
      "global_avg_pool2d_backward",
      [](py::handle dy_, py::handle dx_) {
        const char* op = "global_avg_pool2d_backward";
        py::array dy0 = as_array(op, "dy", dy_);
        DType dt = float_dtype(op, "dy", dy0);
        py::array dy = input(op, "dy", dy0, dt), dx = output(op, "dx", dx_, dt);
        check_planes(op, "dx", dx);
        check_shape(op, "dy", dy, with_hw(dx, 1, 1));
        int64_t planes = planes_of(dx), hw = dx.shape(dx.ndim() - 2) * dx.shape(dx.ndim() - 1);
        by_dtype(dt, [&](auto tag) {
          using T = decltype(tag);
          const T* pdy = in_ptr<T>(dy);
          T* pdx = out_ptr<T>(dx);
          py::gil_scoped_release nogil;
          cpu::pool_kernels<T>().global_avg_pool2d_backward(planes, hw, pdy, pdx);
        });
      },
      py::arg("dy"), py::arg("dx"), "dx (written in place) of global average pooling.");
}

}  // namespace dk::bind
