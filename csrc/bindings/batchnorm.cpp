// Batch norm forward and backward over x (N, C, *): (N, C), (N, C, L), (N, C, H, W)
// (any number of trailing dimensions, as torch's functional batch_norm).
// running_mean / running_var are updated in place: C-contiguous, writeable,
// the input's dtype, never copied. Outputs are allocated by deepkern.ops.
// numpy arrays run the CPU kernels, CUDA arrays the GPU kernels, after the same checks.
#include <cmath>
#include <optional>

#include "bindings/operand.h"
#include "cpu/batchnorm.h"
#include "cuda/batchnorm.h"

namespace dk::bind {

// x viewed as (n, c, inner).
static BatchNormParams view(const char* op, const Operand& x) {
  if (x.ndim() < 2)
    value_error(op, "x must be (N, C, *) with at least 2 dimensions, got shape " + shape_str(x.shape));
  BatchNormParams p;
  p.n = x.dim(0);
  p.c = x.dim(1);
  p.inner = 1;
  for (int64_t a = 2; a < x.ndim(); ++a) p.inner *= x.dim(a);
  return p;
}

// A per-channel array that may be None: nothing, or a checked (C,) array.
static std::optional<Operand> optional_channels(Args& a, const char* name, py::handle h, DType dt, int64_t c,
                                                bool written) {
  if (h.is_none()) return std::nullopt;
  Operand o = written ? a.out(name, h, dt) : a.in(name, h, dt);
  a.check_shape(name, o, {c});
  return o;
}

template <class T>
static T* ptr_or_null(const std::optional<Operand>& a) {
  return a ? a->ptr<T>() : nullptr;
}

void bind_batchnorm(py::module_& m) {
  m.def(
      "batch_norm",
      [](py::handle x_, py::handle weight_, py::handle bias_, py::handle running_mean_, py::handle running_var_,
         py::handle y_, py::handle save_mean_, py::handle save_invstd_, bool training, double momentum,
         double eps) {
        const char* op = "batch_norm";
        Args a(op, on_gpu(op, {{"x", x_}, {"weight", weight_}, {"bias", bias_}, {"running_mean", running_mean_},
                                    {"running_var", running_var_}, {"y", y_}, {"save_mean", save_mean_},
                                    {"save_invstd", save_invstd_}}));
        DType dt = a.dtype_of("x", x_);
        Operand x = a.in("x", x_, dt);
        BatchNormParams p = view(op, x);
        p.training = training;
        p.momentum = momentum;
        p.eps = eps;
        if (!(eps >= 0) || !std::isfinite(eps)) value_error(op, "eps must be finite and >= 0, got " + std::to_string(eps));
        if (!(momentum >= 0 && momentum <= 1))
          value_error(op, "momentum must be in [0, 1], got " + std::to_string(momentum));
        auto w = optional_channels(a, "weight", weight_, dt, p.c, false);
        auto b = optional_channels(a, "bias", bias_, dt, p.c, false);
        auto rm = optional_channels(a, "running_mean", running_mean_, dt, p.c, true);
        auto rv = optional_channels(a, "running_var", running_var_, dt, p.c, true);
        if (rm.has_value() != rv.has_value())
          value_error(op, "running_mean and running_var must be both given or both None");
        if (!training && !rm) value_error(op, "running_mean and running_var are needed when training is False");
        if (training && p.n * p.inner == 1)
          value_error(op, "expected more than 1 value per channel when training, got input shape " + shape_str(x.shape));
        Operand y = a.out("y", y_, dt);
        a.check_shape("y", y, x.shape);
        Operand sm = a.out("save_mean", save_mean_, dt), si = a.out("save_invstd", save_invstd_, dt);
        a.check_shape("save_mean", sm, {p.c});
        a.check_shape("save_invstd", si, {p.c});
        by_dtype(dt, [&](auto tag) {
          using T = decltype(tag);
          const T *px = x.ptr<const T>(), *pw = ptr_or_null<const T>(w), *pb = ptr_or_null<const T>(b);
          T *prm = ptr_or_null<T>(rm), *prv = ptr_or_null<T>(rv);
          py::gil_scoped_release nogil;
          if (a.gpu())
            DK_CUDA(cuda::batchnorm_forward<T>(p, px, pw, pb, prm, prv, y.ptr<T>(), sm.ptr<T>(), si.ptr<T>(),
                                               a.stream()));
          else cpu::batchnorm_kernels<T>().forward(p, px, pw, pb, prm, prv, y.ptr<T>(), sm.ptr<T>(), si.ptr<T>());
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
        Args a(op, on_gpu(op, {{"x", x_}, {"dy", dy_}, {"weight", weight_}, {"save_mean", save_mean_},
                                    {"save_invstd", save_invstd_}, {"dx", dx_}, {"dweight", dweight_},
                                    {"dbias", dbias_}}));
        DType dt = a.dtype_of("x", x_);
        Operand x = a.in("x", x_, dt), dy = a.in("dy", dy_, dt);
        BatchNormParams p = view(op, x);
        p.training = training;
        a.check_shape("dy", dy, x.shape);
        auto w = optional_channels(a, "weight", weight_, dt, p.c, false);
        Operand sm = a.in("save_mean", save_mean_, dt), si = a.in("save_invstd", save_invstd_, dt);
        a.check_shape("save_mean", sm, {p.c});
        a.check_shape("save_invstd", si, {p.c});
        Operand dx = a.out("dx", dx_, dt);
        a.check_shape("dx", dx, x.shape);
        auto dw = optional_channels(a, "dweight", dweight_, dt, p.c, true);
        auto db = optional_channels(a, "dbias", dbias_, dt, p.c, true);
        by_dtype(dt, [&](auto tag) {
          using T = decltype(tag);
          const T *pdy = dy.ptr<const T>(), *px = x.ptr<const T>(), *psm = sm.ptr<const T>(), *psi = si.ptr<const T>();
          const T* pw = ptr_or_null<const T>(w);
          T *pdw = ptr_or_null<T>(dw), *pdb = ptr_or_null<T>(db);
          py::gil_scoped_release nogil;
          if (a.gpu())
            DK_CUDA(cuda::batchnorm_backward<T>(p, pdy, px, pw, psm, psi, dx.ptr<T>(), pdw, pdb, a.stream()));
          else cpu::batchnorm_kernels<T>().backward(p, pdy, px, pw, psm, psi, dx.ptr<T>(), pdw, pdb);
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("save_mean"), py::arg("save_invstd"), py::arg("dx"),
      py::arg("dweight"), py::arg("dbias"), py::arg("training"),
      "dx (and dweight, dbias when given) of batch norm, in place; training: the statistics were the batch's.");
}

}  // namespace dk::bind
