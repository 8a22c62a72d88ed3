// Batch norm forward and backward over x (N, C, *): (N, C), (N, C, L), (N, C, H, W)
// (any number of trailing dimensions, as torch's functional batch_norm).
// running_mean / running_var are updated in place: C-contiguous, writeable,
// the input's dtype, never copied. Outputs are allocated by deepkern.ops.
#include <cmath>

#include "bindings/common.h"
#include "cpu/batchnorm.h"

namespace dk::bind {

// x viewed as (n, c, inner).
static BatchNormParams view(const char* op, const py::array& x) {
  if (x.ndim() < 2) value_error(op, "x must be (N, C, *) with at least 2 dimensions, got shape " + shape_str(x));
  BatchNormParams p;
  p.n = x.shape(0);
  p.c = x.shape(1);
  p.inner = 1;
  for (py::ssize_t a = 2; a < x.ndim(); ++a) p.inner *= x.shape(a);
  return p;
}

// A per-channel array that may be None: nullptr, or a checked (C,) array kept in `keep`.
static bool optional_channels(const char* op, const char* name, py::handle h, DType dt, int64_t c, bool written,
                              py::array& keep) {
  if (h.is_none()) return false;
  keep = written ? output(op, name, h, dt) : input(op, name, h, dt);
  check_shape(op, name, keep, {c});
  return true;
}

template <class T>
static T* ptr_or_null(py::array& a, bool present) {
  return present ? out_ptr<T>(a) : nullptr;
}

void bind_batchnorm(py::module_& m) {
  m.def(
      "batch_norm",
      [](py::handle x_, py::handle weight_, py::handle bias_, py::handle running_mean_, py::handle running_var_,
         py::handle y_, py::handle save_mean_, py::handle save_invstd_, bool training, double momentum,
         double eps) {
        const char* op = "batch_norm";
        py::array x0 = as_array(op, "x", x_);
        DType dt = float_dtype(op, "x", x0);
        py::array x = input(op, "x", x0, dt);
        BatchNormParams p = view(op, x);
        p.training = training;
        p.momentum = momentum;
        p.eps = eps;
        if (!(eps >= 0) || !std::isfinite(eps)) value_error(op, "eps must be finite and >= 0, got " + std::to_string(eps));
        if (!(momentum >= 0 && momentum <= 1))
          value_error(op, "momentum must be in [0, 1], got " + std::to_string(momentum));
        py::array w, b, rm, rv;
        bool has_w = optional_channels(op, "weight", weight_, dt, p.c, false, w);
        bool has_b = optional_channels(op, "bias", bias_, dt, p.c, false, b);
        bool has_rm = optional_channels(op, "running_mean", running_mean_, dt, p.c, true, rm);
        bool has_rv = optional_channels(op, "running_var", running_var_, dt, p.c, true, rv);
        if (has_rm != has_rv) value_error(op, "running_mean and running_var must be both given or both None");
        if (!training && !has_rm) value_error(op, "running_mean and running_var are needed when training is False");
        if (training && p.n * p.inner == 1)
          value_error(op, "expected more than 1 value per channel when training, got input shape " + shape_str(x));
        py::array y = output(op, "y", y_, dt);
        check_shape(op, "y", y, shape_of(x));
        py::array sm = output(op, "save_mean", save_mean_, dt), si = output(op, "save_invstd", save_invstd_, dt);
        check_shape(op, "save_mean", sm, {p.c});
        check_shape(op, "save_invstd", si, {p.c});
        by_dtype(dt, [&](auto tag) {
          using T = decltype(tag);
          const T* px = in_ptr<T>(x);
          const T* pw = has_w ? in_ptr<T>(w) : nullptr;
          const T* pb = has_b ? in_ptr<T>(b) : nullptr;
          T *prm = ptr_or_null<T>(rm, has_rm), *prv = ptr_or_null<T>(rv, has_rv);
          T *py_ = out_ptr<T>(y), *psm = out_ptr<T>(sm), *psi = out_ptr<T>(si);
          py::gil_scoped_release nogil;
          cpu::batchnorm_kernels<T>().forward(p, px, pw, pb, prm, prv, py_, psm, psi);
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"), py::arg("running_var"),
      py::arg("y"), py::arg("save_mean"), py::arg("save_invstd"), py::arg("training"), py::arg("momentum"),
      py::arg("eps"),
      "y, save_mean, save_invstd of batch norm, in place; running statistics updated in place when training.");

  m.def(
      "batch_norm_backward",
      [](py::handle dy_, py::handle x_, py::handle weight_, py::handle save_mean_, py::handle save_invstd_,
         py::handle dx_, py::handle dweight_, py::handle dbias_, bool training) {
        const char* op = "batch_norm_backward";
        py::array x0 = as_array(op, "x", x_);
        DType dt = float_dtype(op, "x", x0);
        py::array x = input(op, "x", x0, dt), dy = input(op, "dy", dy_, dt);
        BatchNormParams p = view(op, x);
        p.training = training;
        check_shape(op, "dy", dy, shape_of(x));
        py::array w, sm, si, dw, db;
        bool has_w = optional_channels(op, "weight", weight_, dt, p.c, false, w);
        sm = input(op, "save_mean", save_mean_, dt);
        si = input(op, "save_invstd", save_invstd_, dt);
        check_shape(op, "save_mean", sm, {p.c});
        check_shape(op, "save_invstd", si, {p.c});
        py::array dx = output(op, "dx", dx_, dt);
        check_shape(op, "dx", dx, shape_of(x));
        bool has_dw = optional_channels(op, "dweight", dweight_, dt, p.c, true, dw);
        bool has_db = optional_channels(op, "dbias", dbias_, dt, p.c, true, db);
        by_dtype(dt, [&](auto tag) {
          using T = decltype(tag);
          const T *pdy = in_ptr<T>(dy), *px = in_ptr<T>(x), *psm = in_ptr<T>(sm), *psi = in_ptr<T>(si);
          const T* pw = has_w ? in_ptr<T>(w) : nullptr;
          T *pdx = out_ptr<T>(dx), *pdw = ptr_or_null<T>(dw, has_dw), *pdb = ptr_or_null<T>(db, has_db);
          py::gil_scoped_release nogil;
          cpu::batchnorm_kernels<T>().backward(p, pdy, px, pw, psm, psi, pdx, pdw, pdb);
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("save_mean"), py::arg("save_invstd"), py::arg("dx"),
      py::arg("dweight"), py::arg("dbias"), py::arg("training"),
      "dx (and dweight, dbias when given) of batch norm, in place; training: the statistics were the batch's.");
}

}  // namespace dk::bind
