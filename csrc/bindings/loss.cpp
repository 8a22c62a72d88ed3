// Losses: cross_entropy and multi_margin over integer labels, mse and
// binary_cross_entropy_with_logits over targets of the prediction's shape,
// forward and backward.
// Reduced results (mean, sum) and their upstream gradient are one-element
// arrays of shape () or (1,); per-item ones (none) have the items' shape.
// Every label is checked against [0, C) before anything is written.
#include <cmath>
#include <optional>
#include <string>

#include "bindings/common.h"
#include "cpu/loss.h"

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
void check_reduced(const char* op, const char* name, const py::array& a, Reduction r,
                   const std::vector<int64_t>& per_item) {
  if (r == Reduction::none) return check_shape(op, name, a, per_item);
  if (!(a.ndim() == 0 || (a.ndim() == 1 && a.shape(0) == 1)))
    value_error(op, std::string(name) + " must have shape () or (1,) for a reduced loss, got " + shape_str(a));
}

// logits (N, C) and labels (N,) with every label in [0, C).
struct ClassArrays {
  DType dtype;
  py::array logits;
  py::array_t<int64_t> labels;
  int64_t n = 0, c = 0;

  // range false: the caller checks its other shapes first, then calls check_range.
  ClassArrays(const char* op, py::handle logits_h, py::handle labels_h, const char* name = "logits",
              bool range = true) {
    dtype = float_dtype(op, name, as_array(op, name, logits_h));
    logits = input(op, name, logits_h, dtype);
    check_ndim(op, name, logits, 2);
    n = logits.shape(0), c = logits.shape(1);
    labels = bind::labels(op, "labels", labels_h);
    check_shape(op, "labels", labels, {n});
    if (range) check_range(op);
  }

  void check_range(const char* op) const {
    const int64_t* l = labels.data();
    for (int64_t i = 0; i < n; ++i)
      if (l[i] < 0 || l[i] >= c)
        value_error(op, "labels[" + std::to_string(i) + "] = " + std::to_string(l[i]) + " is not a class in [0, " +
                            std::to_string(c) + ")");
  }
};

void cross_entropy(py::handle logits, py::handle labels, py::handle out, py::handle reduction) {
  const char* op = "cross_entropy";
  const Reduction r = reduction_of(op, reduction);
  ClassArrays a(op, logits, labels);
  py::array o = output(op, "out", out, a.dtype);
  check_reduced(op, "out", o, r, {a.n});
  LossParams p{a.n, a.c, r};
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = in_ptr<T>(a.logits);
    const int64_t* l = a.labels.data();
    T* y = out_ptr<T>(o);
    py::gil_scoped_release nogil;
    cpu::loss_kernels<T>().cross_entropy(p, x, l, y);
  });
}

void cross_entropy_backward(py::handle logits, py::handle labels, py::handle dout, py::handle dlogits,
                            py::handle reduction) {
  const char* op = "cross_entropy_backward";
  const Reduction r = reduction_of(op, reduction);
  ClassArrays a(op, logits, labels);
  py::array g = input(op, kDout, dout, a.dtype);
  check_reduced(op, kDout, g, r, {a.n});
  py::array d = output(op, "dlogits", dlogits, a.dtype);
  check_shape(op, "dlogits", d, {a.n, a.c});
  if (a.n == 0) return;
  LossParams p{a.n, a.c, r};
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = in_ptr<T>(a.logits);
    const int64_t* l = a.labels.data();
    const T* gp = in_ptr<T>(g);
    T* dp = out_ptr<T>(d);
    py::gil_scoped_release nogil;
    cpu::loss_kernels<T>().cross_entropy_backward(p, x, l, gp, dp);
  });
}

// pred and target: one dtype, one shape.
struct PairArrays {
  DType dtype;
  py::array pred, target;
  PairArrays(const char* op, py::handle pred_h, py::handle target_h, const char* name = "pred") {
    dtype = float_dtype(op, name, as_array(op, name, pred_h));
    pred = input(op, name, pred_h, dtype);
    target = input(op, "target", target_h, dtype);
    check_shape(op, "target", target, shape_of(pred));
  }
};

void mse(py::handle pred, py::handle target, py::handle out, py::handle reduction) {
  const char* op = "mse";
  const Reduction r = reduction_of(op, reduction);
  PairArrays a(op, pred, target);
  py::array o = output(op, "out", out, a.dtype);
  check_reduced(op, "out", o, r, shape_of(a.pred));
  LossParams p{static_cast<int64_t>(a.pred.size()), 1, r};
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = in_ptr<T>(a.pred);
    const T* t = in_ptr<T>(a.target);
    T* y = out_ptr<T>(o);
    py::gil_scoped_release nogil;
    cpu::loss_kernels<T>().mse(p, x, t, y);
  });
}

void mse_backward(py::handle pred, py::handle target, py::handle dout, py::handle dpred, py::handle reduction) {
  const char* op = "mse_backward";
  const Reduction r = reduction_of(op, reduction);
  PairArrays a(op, pred, target);
  py::array g = input(op, kDout, dout, a.dtype);
  check_reduced(op, kDout, g, r, shape_of(a.pred));
  py::array d = output(op, "dpred", dpred, a.dtype);
  check_shape(op, "dpred", d, shape_of(a.pred));
  if (a.pred.size() == 0) return;
  LossParams p{static_cast<int64_t>(a.pred.size()), 1, r};
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = in_ptr<T>(a.pred);
    const T* t = in_ptr<T>(a.target);
    const T* gp = in_ptr<T>(g);
    T* dp = out_ptr<T>(d);
    py::gil_scoped_release nogil;
    cpu::loss_kernels<T>().mse_backward(p, x, t, gp, dp);
  });
}

// Rows of the last axis: (rows, c) for any shape (a 0-D array is one row of one).
LossParams rows_of(const py::array& a, Reduction r) {
  const int64_t c = a.ndim() == 0 ? 1 : a.shape(a.ndim() - 1);
  const int64_t size = static_cast<int64_t>(a.size());
  return LossParams{c == 0 ? 0 : size / c, c, r};
}

// An optional (c,) array: None, or pos_weight over the last axis, or a class weight.
// (A default py::array is an empty array, not a null one: hence std::optional.)
std::optional<py::array> optional_vector(const char* op, const char* name, py::handle h, DType dt, int64_t c) {
  if (h.is_none()) return std::nullopt;
  py::array w = input(op, name, h, dt);
  check_shape(op, name, w, {c});
  return w;
}

template <class T>
const T* data_or_null(const std::optional<py::array>& a) {
  return a ? in_ptr<T>(*a) : nullptr;
}

void bce_with_logits(py::handle logits, py::handle target, py::handle pos_weight, py::handle out,
                     py::handle reduction) {
  const char* op = "binary_cross_entropy_with_logits";
  const Reduction r = reduction_of(op, reduction);
  PairArrays a(op, logits, target, "logits");
  LossParams p = rows_of(a.pred, r);
  auto w = optional_vector(op, "pos_weight", pos_weight, a.dtype, p.c);
  py::array o = output(op, "out", out, a.dtype);
  check_reduced(op, "out", o, r, shape_of(a.pred));
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = in_ptr<T>(a.pred);
    const T* t = in_ptr<T>(a.target);
    const T* wp = data_or_null<T>(w);
    T* y = out_ptr<T>(o);
    py::gil_scoped_release nogil;
    cpu::loss_kernels<T>().bce_with_logits(p, x, t, wp, y);
  });
}

void bce_with_logits_backward(py::handle logits, py::handle target, py::handle pos_weight, py::handle dout,
                              py::handle dlogits, py::handle reduction) {
  const char* op = "binary_cross_entropy_with_logits_backward";
  const Reduction r = reduction_of(op, reduction);
  PairArrays a(op, logits, target, "logits");
  LossParams p = rows_of(a.pred, r);
  auto w = optional_vector(op, "pos_weight", pos_weight, a.dtype, p.c);
  py::array g = input(op, kDout, dout, a.dtype);
  check_reduced(op, kDout, g, r, shape_of(a.pred));
  py::array d = output(op, "dlogits", dlogits, a.dtype);
  check_shape(op, "dlogits", d, shape_of(a.pred));
  if (a.pred.size() == 0) return;
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = in_ptr<T>(a.pred);
    const T* t = in_ptr<T>(a.target);
    const T* wp = data_or_null<T>(w);
    const T* gp = in_ptr<T>(g);
    T* dp = out_ptr<T>(d);
    py::gil_scoped_release nogil;
    cpu::loss_kernels<T>().bce_with_logits_backward(p, x, t, wp, gp, dp);
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
  ClassArrays a(op, x, labels, "x", false);
  MarginParams p = margin_params(op, a, r, p_norm, margin);
  auto w = optional_vector(op, "weight", weight, a.dtype, a.c);
  a.check_range(op);
  py::array o = output(op, "out", out, a.dtype);
  check_reduced(op, "out", o, r, {a.n});
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = in_ptr<T>(a.logits);
    const int64_t* l = a.labels.data();
    const T* wp = data_or_null<T>(w);
    T* y = out_ptr<T>(o);
    py::gil_scoped_release nogil;
    cpu::loss_kernels<T>().multi_margin(p, xp, l, wp, y);
  });
}

void multi_margin_backward(py::handle x, py::handle labels, py::handle weight, py::handle dout, py::handle dx,
                           py::handle reduction, int64_t p_norm, double margin) {
  const char* op = "multi_margin_backward";
  const Reduction r = reduction_of(op, reduction);
  ClassArrays a(op, x, labels, "x", false);
  MarginParams p = margin_params(op, a, r, p_norm, margin);
  auto w = optional_vector(op, "weight", weight, a.dtype, a.c);
  a.check_range(op);
  py::array g = input(op, kDout, dout, a.dtype);
  check_reduced(op, kDout, g, r, {a.n});
  py::array d = output(op, "dx", dx, a.dtype);
  check_shape(op, "dx", d, {a.n, a.c});
  if (a.n == 0) return;
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = in_ptr<T>(a.logits);
    const int64_t* l = a.labels.data();
    const T* wp = data_or_null<T>(w);
    const T* gp = in_ptr<T>(g);
    T* dp = out_ptr<T>(d);
    py::gil_scoped_release nogil;
    cpu::loss_kernels<T>().multi_margin_backward(p, xp, l, wp, gp, dp);
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
