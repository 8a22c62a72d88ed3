// Dropout: y and the keep mask (numpy bool, one byte per element) are written in
// place (backward also reads an integer mask: nonzero is kept); p in [0, 1]; the seed picks the counter-based stream (core/random.h).
#include <cmath>
#include <string>

#include "bindings/common.h"
#include "cpu/dropout.h"

namespace dk::bind {

namespace {

void check_p(const char* op, double p) {
  if (!(p >= 0.0 && p <= 1.0)) value_error(op, "p must be a probability in [0, 1], got " + std::to_string(p));
}

// The mask: numpy bool of x's shape, and C-contiguous and writeable when written.
py::array mask_array(const char* op, py::handle h, const std::vector<int64_t>& shape, bool written) {
  py::array m = as_array(op, "mask", h);
  const char kind = m.dtype().kind();
  const bool is_bool = m.dtype().is(py::dtype::of<bool>());
  if (written) {
    if (!is_bool) type_error(op, "mask is written in place and must be a bool array, got " + dtype_name(m));
    check_writable(op, "mask", m);
  } else if (!is_bool && kind != 'i' && kind != 'u') {
    type_error(op, "mask must be a bool (or integer) array, got " + dtype_name(m));
  } else if (!is_bool || !(m.flags() & py::array::c_style)) {
    m = c_contiguous(m, py::dtype::of<bool>());  // read only: integers mean kept when nonzero
  }
  check_shape(op, "mask", m, shape);
  return m;
}

void dropout(py::handle x, py::handle y, py::handle mask, double p, uint64_t seed) {
  const char* op = "dropout";
  check_p(op, p);
  const DType dt = float_dtype(op, "x", as_array(op, "x", x));
  py::array xa = input(op, "x", x, dt), ya = output(op, "y", y, dt);
  check_shape(op, "y", ya, shape_of(xa));
  py::array ma = mask_array(op, mask, shape_of(xa), true);
  DropoutParams prm{static_cast<int64_t>(xa.size()), p, seed};
  by_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = in_ptr<T>(xa);
    T* yp = out_ptr<T>(ya);
    auto* mp = static_cast<uint8_t*>(ma.mutable_data());
    py::gil_scoped_release nogil;
    cpu::dropout_kernels<T>().forward(prm, xp, yp, mp);
  });
}

void dropout_backward(py::handle dy, py::handle mask, py::handle dx, double p) {
  const char* op = "dropout_backward";
  check_p(op, p);
  const DType dt = float_dtype(op, "dy", as_array(op, "dy", dy));
  py::array ga = input(op, "dy", dy, dt), da = output(op, "dx", dx, dt);
  check_shape(op, "dx", da, shape_of(ga));
  py::array ma = mask_array(op, mask, shape_of(ga), false);
  DropoutParams prm{static_cast<int64_t>(ga.size()), p, 0};
  by_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* gp = in_ptr<T>(ga);
    const auto* mp = static_cast<const uint8_t*>(ma.data());
    T* dp = out_ptr<T>(da);
    py::gil_scoped_release nogil;
    cpu::dropout_kernels<T>().backward(prm, gp, mp, dp);
  });
}

}  // namespace

void bind_dropout(py::module_& m) {
  m.def("dropout", &dropout, py::arg("x"), py::arg("y"), py::arg("mask"), py::arg("p"), py::arg("seed"),
        "y = x * mask / (1 - p) with mask[i] kept with probability 1 - p by the counter-based stream `seed`; "
        "y and mask (bool) written in place.");
  m.def("dropout_backward", &dropout_backward, py::arg("dy"), py::arg("mask"), py::arg("dx"), py::arg("p"),
        "dx = dy * mask / (1 - p), written in place.");
}

}  // namespace dk::bind
