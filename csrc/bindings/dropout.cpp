// Dropout: y and the keep mask (bool, one byte per element) are written in
// place (backward also reads an integer numpy mask: nonzero is kept); p in
// [0, 1]; the seed picks the counter-based stream (core/random.h), so numpy
// arrays (CPU kernels) and CUDA arrays (GPU kernels) get the same mask.
#include <cmath>
#include <string>

#include "bindings/operand.h"
#include "cpu/dropout.h"
#include "cuda/dropout.h"

namespace dk::bind {

namespace {

void check_p(const char* op, double p) {
  if (!(p >= 0.0 && p <= 1.0)) value_error(op, "p must be a probability in [0, 1], got " + std::to_string(p));
}

void dropout(py::handle x, py::handle y, py::handle mask, double p, uint64_t seed) {
  const char* op = "dropout";
  check_p(op, p);
  Args a(op, on_gpu(op, {{"x", x}, {"y", y}, {"mask", mask}}));
  const DType dt = a.dtype_of("x", x);
  Operand xa = a.in("x", x, dt), ya = a.out("y", y, dt);
  a.check_shape("y", ya, xa.shape);
  Operand ma = a.mask("mask", mask, true);
  a.check_shape("mask", ma, xa.shape);
  DropoutParams prm{xa.size(), p, seed};
  by_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    if (a.gpu()) DK_CUDA(cuda::dropout_forward<T>(prm, xa.ptr<T>(), ya.ptr<T>(), ma.ptr<uint8_t>(), a.stream()));
    else cpu::dropout_kernels<T>().forward(prm, xa.ptr<T>(), ya.ptr<T>(), ma.ptr<uint8_t>());
  });
}

void dropout_backward(py::handle dy, py::handle mask, py::handle dx, double p) {
  const char* op = "dropout_backward";
  check_p(op, p);
  Args a(op, on_gpu(op, {{"dy", dy}, {"mask", mask}, {"dx", dx}}));
  const DType dt = a.dtype_of("dy", dy);
  Operand ga = a.in("dy", dy, dt), da = a.out("dx", dx, dt);
  a.check_shape("dx", da, ga.shape);
  Operand ma = a.mask("mask", mask, false);
  a.check_shape("mask", ma, ga.shape);
  DropoutParams prm{ga.size(), p, 0};
  by_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    if (a.gpu()) DK_CUDA(cuda::dropout_backward<T>(prm, ga.ptr<T>(), ma.ptr<const uint8_t>(), da.ptr<T>(), a.stream()));
    else cpu::dropout_kernels<T>().backward(prm, ga.ptr<T>(), ma.ptr<const uint8_t>(), da.ptr<T>());
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
