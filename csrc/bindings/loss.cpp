// Losses: cross_entropy and multi_margin over integer labels, mse and
// binary_cross_entropy_with_logits over targets of the prediction's shape,
// forward and backward.
// Reduced results (mean, sum) and their upstream gradient are one-element
// arrays of shape () or (1,); per-item ones (none) have the items' shape.
// Every label is checked against [0, C) before anything is written. numpy
// arrays run the CPU kernels, CUDA arrays the GPU kernels, after the same checks
// (on the GPU the labels are checked by a kernel, read back to raise).
#include <cmath>
#include <optional>
#include <string>

#include "bindings/operand.h"
#include "cpu/loss.h"
#include "cuda/loss.h"

namespace dk::bind {

namespace {

// The upstream gradient: `dout` here, `grad` in deepkern.ops; messages name both.
constexpr const char* kDout = "dout (grad)";

// A _C.Reduction, or its name as a string.
Reduction reduction_of(const char* op, py::handle r) {
  if (py::isinstance<Reduction>(r)) return r.cast<Reduction>();
  if (py::isinstance<py::str>(r)) {
    std::string s = r.cast<std::string>();
    if (s == "none") return Reduction::none;
    if (s == "mean") return Reduction::mean;
    if (s == "sum") return Reduction::sum;
    value_error(op, "reduction must be 'none', 'mean' or 'sum', got '" + s + "'");
  }
  type_error(op, "reduction must be a string or _C.Reduction, got " +
                     py::str(py::type::handle_of(r).attr("__name__")).cast<std::string>());
}

// For Reduction::none: `per_item` shape; else a single value, shape () or (1,).
void check_reduced(const char* op, const char* name, const Operand& a, Reduction r,
                   const std::vector<int64_t>& per_item) {
  if (r == Reduction::none) {
    if (a.shape != per_item)
      value_error(op, std::string(name) + " must have shape " + shape_str(per_item) + ", got " + shape_str(a.shape));
    return;
  }
  if (!(a.ndim() == 0 || (a.ndim() == 1 && a.dim(0) == 1)))
    value_error(op, std::string(name) + " must have shape () or (1,) for a reduced loss, got " + shape_str(a.shape));
}

// logits (N, C) and labels (N,) with every label in [0, C).
struct ClassArrays {
  DType dtype;
  Operand logits, labels;
  int64_t n = 0, c = 0;

  // range false: the caller checks its other shapes first, then calls check_range.
  ClassArrays(Args& a, const char* op, py::handle logits_h, py::handle labels_h, const char* name = "logits",
              bool range = true) {
    dtype = a.dtype_of(name, logits_h);
    logits = a.in(name, logits_h, dtype);
    if (logits.ndim() != 2)
      value_error(op, std::string(name) + " must be 2-D, got shape " + shape_str(logits.shape));
    n = logits.dim(0), c = logits.dim(1);
    labels = a.index_in("labels", labels_h);
    a.check_shape("labels", labels, {n});
    if (range) check_range(a, op);
  }

  void check_range(const Args& a, const char* op) const {
    const int64_t* l = labels.ptr<const int64_t>();
    int64_t row = -1, label = 0;
    if (a.gpu()) {
      py::gil_scoped_release nogil;  // the check waits for the GPU
      DK_CUDA(row = cuda::first_bad_label(op, n, c, l, &label, a.stream()));
    } else {
      for (int64_t i = 0; i < n && row < 0; ++i)
        if (l[i] < 0 || l[i] >= c) row = i, label = l[i];
    }
    if (row >= 0)
      value_error(op, "labels[" + std::to_string(row) + "] = " + std::to_string(label) + " is not a class in [0, " +
                          std::to_string(c) + ")");
  }
};

Args args_for(const char* op, std::initializer_list<std::pair<const char*, py::handle>> arrays) {
  return Args(op, on_gpu(op, arrays));
}

void cross_entropy(py::handle logits, py::handle labels, py::handle out, py::handle reduction) {
  const char* op = "cross_entropy";
  const Reduction r = reduction_of(op, reduction);
  Args g = args_for(op, {{"logits", logits}, {"labels", labels}, {"out", out}});
  ClassArrays a(g, op, logits, labels);
  Operand o = g.out("out", out, a.dtype);
  check_reduced(op, "out", o, r, {a.n});
  LossParams p{a.n, a.c, r};
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = a.logits.ptr<const T>();
    const int64_t* l = a.labels.ptr<const int64_t>();
    py::gil_scoped_release nogil;
    if (g.gpu()) DK_CUDA(cuda::cross_entropy<T>(p, x, l, o.ptr<T>(), g.stream()));
    else cpu::loss_kernels<T>().cross_entropy(p, x, l, o.ptr<T>());
  });
}

void cross_entropy_backward(py::handle logits, py::handle labels, py::handle dout, py::handle dlogits,
                            py::handle reduction) {
  const char* op = "cross_entropy_backward";
  const Reduction r = reduction_of(op, reduction);
  Args g = args_for(op, {{"logits", logits}, {"labels", labels}, {kDout, dout}, {"dlogits", dlogits}});
  ClassArrays a(g, op, logits, labels);
  Operand go = g.in(kDout, dout, a.dtype);
  check_reduced(op, kDout, go, r, {a.n});
  Operand d = g.out("dlogits", dlogits, a.dtype);
  g.check_shape("dlogits", d, {a.n, a.c});
  if (a.n == 0) return;
  LossParams p{a.n, a.c, r};
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = a.logits.ptr<const T>();
    const int64_t* l = a.labels.ptr<const int64_t>();
    py::gil_scoped_release nogil;
    if (g.gpu()) DK_CUDA(cuda::cross_entropy_backward<T>(p, x, l, go.ptr<const T>(), d.ptr<T>(), g.stream()));
    else cpu::loss_kernels<T>().cross_entropy_backward(p, x, l, go.ptr<const T>(), d.ptr<T>());
  });
}

// pred and target: one dtype, one shape.
struct PairArrays {
  DType dtype;
  Operand pred, target;
  PairArrays(Args& a, py::handle pred_h, py::handle target_h, const char* name = "pred") {
    dtype = a.dtype_of(name, pred_h);
    pred = a.in(name, pred_h, dtype);
    target = a.in("target", target_h, dtype);
    a.check_shape("target", target, pred.shape);
  }
};

void mse(py::handle pred, py::handle target, py::handle out, py::handle reduction) {
  const char* op = "mse";
  const Reduction r = reduction_of(op, reduction);
  Args g = args_for(op, {{"pred", pred}, {"target", target}, {"out", out}});
  PairArrays a(g, pred, target);
  Operand o = g.out("out", out, a.dtype);
  check_reduced(op, "out", o, r, a.pred.shape);
  LossParams p{a.pred.size(), 1, r};
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T *x = a.pred.ptr<const T>(), *t = a.target.ptr<const T>();
    py::gil_scoped_release nogil;
    if (g.gpu()) DK_CUDA(cuda::mse<T>(p, x, t, o.ptr<T>(), g.stream()));
    else cpu::loss_kernels<T>().mse(p, x, t, o.ptr<T>());
  });
}

void mse_backward(py::handle pred, py::handle target, py::handle dout, py::handle dpred, py::handle reduction) {
  const char* op = "mse_backward";
  const Reduction r = reduction_of(op, reduction);
  Args g = args_for(op, {{"pred", pred}, {"target", target}, {kDout, dout}, {"dpred", dpred}});
  PairArrays a(g, pred, target);
  Operand go = g.in(kDout, dout, a.dtype);
  check_reduced(op, kDout, go, r, a.pred.shape);
  Operand d = g.out("dpred", dpred, a.dtype);
  g.check_shape("dpred", d, a.pred.shape);
  if (a.pred.size() == 0) return;
  LossParams p{a.pred.size(), 1, r};
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T *x = a.pred.ptr<const T>(), *t = a.target.ptr<const T>(), *gp = go.ptr<const T>();
    py::gil_scoped_release nogil;
    if (g.gpu()) DK_CUDA(cuda::mse_backward<T>(p, x, t, gp, d.ptr<T>(), g.stream()));
    else cpu::loss_kernels<T>().mse_backward(p, x, t, gp, d.ptr<T>());
  });
}

// Rows of the last axis: (rows, c) for any shape (a 0-D array is one row of one).
LossParams rows_of(const Operand& a, Reduction r) {
  const int64_t c = a.ndim() == 0 ? 1 : a.dim(-1);
  return LossParams{c == 0 ? 0 : a.size() / c, c, r};
}

// An optional (c,) array: None, or pos_weight over the last axis, or a class weight.
std::optional<Operand> optional_vector(Args& a, const char* name, py::handle h, DType dt, int64_t c) {
  if (h.is_none()) return std::nullopt;
  Operand w = a.in(name, h, dt);
  a.check_shape(name, w, {c});
  return w;
}

template <class T>
const T* data_or_null(const std::optional<Operand>& a) {
  return a ? a->ptr<const T>() : nullptr;
}

void bce_with_logits(py::handle logits, py::handle target, py::handle pos_weight, py::handle out,
                     py::handle reduction) {
  const char* op = "binary_cross_entropy_with_logits";
  const Reduction r = reduction_of(op, reduction);
  Args g = args_for(op, {{"logits", logits}, {"target", target}, {"pos_weight", pos_weight}, {"out", out}});
  PairArrays a(g, logits, target, "logits");
  LossParams p = rows_of(a.pred, r);
  auto w = optional_vector(g, "pos_weight", pos_weight, a.dtype, p.c);
  Operand o = g.out("out", out, a.dtype);
  check_reduced(op, "out", o, r, a.pred.shape);
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T *x = a.pred.ptr<const T>(), *t = a.target.ptr<const T>(), *wp = data_or_null<T>(w);
    py::gil_scoped_release nogil;
    if (g.gpu()) DK_CUDA(cuda::bce_with_logits<T>(p, x, t, wp, o.ptr<T>(), g.stream()));
    else cpu::loss_kernels<T>().bce_with_logits(p, x, t, wp, o.ptr<T>());
  });
}

void bce_with_logits_backward(py::handle logits, py::handle target, py::handle pos_weight, py::handle dout,
                              py::handle dlogits, py::handle reduction) {
  const char* op = "binary_cross_entropy_with_logits_backward";
  const Reduction r = reduction_of(op, reduction);
  Args g = args_for(op, {{"logits", logits}, {"target", target}, {"pos_weight", pos_weight}, {kDout, dout},
                         {"dlogits", dlogits}});
  PairArrays a(g, logits, target, "logits");
  LossParams p = rows_of(a.pred, r);
  auto w = optional_vector(g, "pos_weight", pos_weight, a.dtype, p.c);
  Operand go = g.in(kDout, dout, a.dtype);
  check_reduced(op, kDout, go, r, a.pred.shape);
  Operand d = g.out("dlogits", dlogits, a.dtype);
  g.check_shape("dlogits", d, a.pred.shape);
  if (a.pred.size() == 0) return;
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T *x = a.pred.ptr<const T>(), *t = a.target.ptr<const T>(), *wp = data_or_null<T>(w);
    const T* gp = go.ptr<const T>();
    py::gil_scoped_release nogil;
    if (g.gpu()) DK_CUDA(cuda::bce_with_logits_backward<T>(p, x, t, wp, gp, d.ptr<T>(), g.stream()));
    else cpu::loss_kernels<T>().bce_with_logits_backward(p, x, t, wp, gp, d.ptr<T>());
  });
}

MarginParams margin_params(const char* op, const ClassArrays& a, Reduction r, int64_t p_norm, double margin) {
  if (p_norm != 1 && p_norm != 2) value_error(op, "p must be 1 or 2, got " + std::to_string(p_norm));
  if (!std::isfinite(margin)) value_error(op, "margin must be finite");
  return MarginParams{a.n, a.c, r, static_cast<int>(p_norm), margin};
}

void multi_margin(py::handle x, py::handle labels, py::handle weight, py::handle out, py::handle reduction,
                  int64_t p_norm, double margin) {
  const char* op = "multi_margin";
  const Reduction r = reduction_of(op, reduction);
  Args g = args_for(op, {{"x", x}, {"labels", labels}, {"weight", weight}, {"out", out}});
  ClassArrays a(g, op, x, labels, "x", false);
  MarginParams p = margin_params(op, a, r, p_norm, margin);
  auto w = optional_vector(g, "weight", weight, a.dtype, a.c);
  a.check_range(g, op);
  Operand o = g.out("out", out, a.dtype);
  check_reduced(op, "out", o, r, {a.n});
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T *xp = a.logits.ptr<const T>(), *wp = data_or_null<T>(w);
    const int64_t* l = a.labels.ptr<const int64_t>();
    py::gil_scoped_release nogil;
    if (g.gpu()) DK_CUDA(cuda::multi_margin<T>(p, xp, l, wp, o.ptr<T>(), g.stream()));
    else cpu::loss_kernels<T>().multi_margin(p, xp, l, wp, o.ptr<T>());
  });
}

void multi_margin_backward(py::handle x, py::handle labels, py::handle weight, py::handle dout, py::handle dx,
                           py::handle reduction, int64_t p_norm, double margin) {
  const char* op = "multi_margin_backward";
  const Reduction r = reduction_of(op, reduction);
  Args g = args_for(op, {{"x", x}, {"labels", labels}, {"weight", weight}, {kDout, dout}, {"dx", dx}});
  ClassArrays a(g, op, x, labels, "x", false);
  MarginParams p = margin_params(op, a, r, p_norm, margin);
  auto w = optional_vector(g, "weight", weight, a.dtype, a.c);
  a.check_range(g, op);
  Operand go = g.in(kDout, dout, a.dtype);
  check_reduced(op, kDout, go, r, {a.n});
  Operand d = g.out("dx", dx, a.dtype);
  g.check_shape("dx", d, {a.n, a.c});
  if (a.n == 0) return;
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T *xp = a.logits.ptr<const T>(), *wp = data_or_null<T>(w), *gp = go.ptr<const T>();
    const int64_t* l = a.labels.ptr<const int64_t>();
    py::gil_scoped_release nogil;
    if (g.gpu()) DK_CUDA(cuda::multi_margin_backward<T>(p, xp, l, wp, gp, d.ptr<T>(), g.stream()));
    else cpu::loss_kernels<T>().multi_margin_backward(p, xp, l, wp, gp, d.ptr<T>());
  });
}

}  // namespace

void bind_loss(py::module_& m) {
  py::enum_<Reduction>(m, "Reduction", "How a loss reduces its per-item values")
      .value("none", Reduction::none)
      .value("mean", Reduction::mean)
      .value("sum", Reduction::sum);

  m.def("cross_entropy", &cross_entropy, py::arg("logits"), py::arg("labels"), py::arg("out"),
        py::arg("reduction"),
        "Fused log-softmax + NLL of logits (N, C) against integer labels (N,), written to out: (N,) for "
        "reduction 'none', shape () or (1,) for 'mean' / 'sum'.");
  m.def("cross_entropy_backward", &cross_entropy_backward, py::arg("logits"), py::arg("labels"), py::arg("dout"),
        py::arg("dlogits"), py::arg("reduction"),
        "dlogits (N, C) = (softmax(logits) - onehot(labels)) * dout (/ N for 'mean'); dout (N,) for 'none', "
        "else one value.");
  m.def("mse", &mse, py::arg("pred"), py::arg("target"), py::arg("out"), py::arg("reduction"),
        "(pred - target)^2, per element ('none', out has pred's shape) or reduced to one value.");
  m.def("mse_backward", &mse_backward, py::arg("pred"), py::arg("target"), py::arg("dout"), py::arg("dpred"),
        py::arg("reduction"),
        "dpred = 2 (pred - target) * dout (/ pred.size for 'mean'); dout has pred's shape for 'none', else "
        "one value.");
  m.def("binary_cross_entropy_with_logits", &bce_with_logits, py::arg("logits"), py::arg("target"),
        py::arg("pos_weight"), py::arg("out"), py::arg("reduction"),
        "Sigmoid + binary cross-entropy of logits against targets of the same shape, pos_weight (C,) over "
        "the last axis or None; out as for mse.");
  m.def("binary_cross_entropy_with_logits_backward", &bce_with_logits_backward, py::arg("logits"),
        py::arg("target"), py::arg("pos_weight"), py::arg("dout"), py::arg("dlogits"), py::arg("reduction"),
        "dlogits = ((1 - t) - l sigmoid(-x)) * dout, l = 1 + (pos_weight - 1) t (/ size for 'mean').");
  m.def("multi_margin", &multi_margin, py::arg("x"), py::arg("labels"), py::arg("weight"), py::arg("out"),
        py::arg("reduction"), py::arg("p"), py::arg("margin"),
        "Multi-class hinge loss (torch.nn.MultiMarginLoss) of x (N, C) against labels (N,), weight (C,) or "
        "None, p 1 or 2; out (N,) for 'none', else one value.");
  m.def("multi_margin_backward", &multi_margin_backward, py::arg("x"), py::arg("labels"), py::arg("weight"),
        py::arg("dout"), py::arg("dx"), py::arg("reduction"), py::arg("p"), py::arg("margin"),
        "dx (N, C) of multi_margin times dout (N,) for 'none', else one value.");
}

}  // namespace dk::bind
