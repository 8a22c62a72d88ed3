// Optimizer steps: lists of arrays in, updated in place in one native call; and
// the gradient utilities (finiteness, clipping by norm and by value).
// Everything is checked before anything is written: no half-updated state.
// Each step takes check_finite: when set, a read-only pre-pass over the grads
// runs first and the step returns False, writing nothing, if any is NaN/Inf.
// Lists of numpy arrays run the CPU kernels; lists of CUDA arrays
// (__cuda_array_interface__) run the fused CUDA launches on the stream of the
// first array's interface, with the same checks and messages (an empty list
// runs on the CPU, where it does nothing).
#include <algorithm>
#include <cstdint>
#include <tuple>
#include <utility>

#include "bindings/common.h"
#include "bindings/cuda_array.h"
#include "core/optim_math.h"
#include "cpu/optim.h"

#ifdef DK_WITH_CUDA
#include "cuda/optim.h"
#endif

namespace dk::bind {

// Steps run every training iteration, on up to hundreds of tensors, so the
// checks have a fast path: an array that is already fine costs a few pointer
// reads; only a failing one goes through common.h's checks, which build the
// message naming it (or, for a strided read-only array, make the copy).

// The name of array i of list `list` ("grads[3]"), built only for a message.
static std::string item(const char* list, size_t i) { return std::string(list) + "[" + std::to_string(i) + "]"; }

static PyObject* descr_of(DType d) {
  static PyObject* f32 = py::dtype::of<float>().release().ptr();
  static PyObject* f64 = py::dtype::of<double>().release().ptr();
  return d == DType::f32 ? f32 : f64;
}

// True when h is an array of dtype d, C-contiguous, aligned, and writeable when written.
static bool fast_ok(py::handle h, DType d, bool written) {
  if (!py::isinstance<py::array>(h)) return false;
  const auto* a = py::detail::array_proxy(h.ptr());
  using npy = py::detail::npy_api;
  int need = npy::NPY_ARRAY_C_CONTIGUOUS_ | npy::NPY_ARRAY_ALIGNED_ | (written ? npy::NPY_ARRAY_WRITEABLE_ : 0);
  return a->descr == descr_of(d) && (a->flags & need) == need;
}

// list[i] checked: fast, or through common.h (raises, or copies a strided or misaligned
// read-only array).
static py::array checked(const char* op, const char* list, const py::list& l, size_t i, DType d, bool written) {
  py::handle h = l[i];
  if (fast_ok(h, d, written)) return py::reinterpret_borrow<py::array>(h);
  std::string name = item(list, i);
  return written ? output(op, name.c_str(), h, d) : input(op, name.c_str(), h, d);
}

static bool same_shape(const py::array& a, const py::array& b) {
  return a.ndim() == b.ndim() && std::equal(a.shape(), a.shape() + a.ndim(), b.shape());
}

// The messages both devices give for lists that do not match.
static void check_count(const char* op, size_t params, size_t grads) {
  if (params != grads)
    value_error(op, "got " + std::to_string(params) + " params but " + std::to_string(grads) + " grads");
}
static void check_state_count(const char* op, const char* name, size_t got, size_t params) {
  if (got != params)
    value_error(op, "got " + std::to_string(got) + " " + name + " for " + std::to_string(params) + " params");
}
[[noreturn]] static void shape_mismatch(const char* op, const char* list, size_t i, const std::string& shape,
                                        const std::string& param_shape) {
  value_error(op, item(list, i) + " has shape " + shape + " but " + item("params", i) + " has " + param_shape);
}

// (name, list, used): the state lists of a step; an unused list is ignored.
using StateLists = std::vector<std::tuple<const char*, py::list, bool>>;

// Arrays written in place must not overlap each other or the arrays read with
// them: threads would race on the shared memory. An overlap is found by sorting
// the arrays' byte ranges; names are built only for the message.
struct Spans {
  struct Span {
    uintptr_t lo, hi;
    const char* list;
    size_t i;
  };
  std::vector<Span> spans;
  void add(const void* data, int64_t nbytes, const char* list, size_t i) {
    if (nbytes == 0) return;
    auto lo = reinterpret_cast<uintptr_t>(data);
    spans.push_back({lo, lo + static_cast<uintptr_t>(nbytes), list, i});
  }
  void add(const py::array& a, const char* list, size_t i) { add(a.data(), a.nbytes(), list, i); }
  void check(const char* op) {
    std::sort(spans.begin(), spans.end(), [](const Span& x, const Span& y) { return x.lo < y.lo; });
    for (size_t k = 1; k < spans.size(); ++k)
      if (spans[k].lo < spans[k - 1].hi)
        value_error(op, item(spans[k].list, spans[k].i) + " and " + item(spans[k - 1].list, spans[k - 1].i) +
                            " share memory; every array of a step must be distinct");
  }
};

// The arrays of one step, checked and kept alive for the duration of the call.
struct StepArrays {
  DType dtype = DType::f32;
  std::vector<py::array> params, grads;
  std::vector<std::vector<py::array>> states;  // one list per state kind; empty when not used
  std::vector<int64_t> sizes;

  // params and each used state list: C-contiguous, writeable; grads: read only.
  // state_lists: (name, list, used); an unused list is ignored and stays empty.
  StepArrays(const char* op, const py::list& p, const py::list& g, const StateLists& state_lists) {
    const size_t n = p.size();
    check_count(op, n, g.size());
    if (n > 0) dtype = float_dtype(op, "params[0]", as_array(op, "params[0]", p[0]));
    Spans spans;
    spans.spans.reserve(n * (2 + state_lists.size()));
    params.reserve(n);
    grads.reserve(n);
    sizes.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      params.push_back(checked(op, "params", p, i, dtype, true));
      grads.push_back(checked(op, "grads", g, i, dtype, false));
      if (!same_shape(grads[i], params[i])) shape_mismatch(op, "grads", i, shape_str(grads[i]), shape_str(params[i]));
      sizes.push_back(static_cast<int64_t>(params[i].size()));
      spans.add(params[i], "params", i);
      spans.add(grads[i], "grads", i);
    }
    for (const auto& [name, list, used] : state_lists) {
      auto& s = states.emplace_back();
      if (!used) continue;
      check_state_count(op, name, list.size(), n);
      s.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        s.push_back(checked(op, name, list, i, dtype, true));
        if (!same_shape(s[i], params[i])) shape_mismatch(op, name, i, shape_str(s[i]), shape_str(params[i]));
        spans.add(s[i], name, i);
      }
    }
    spans.check(op);
  }

  template <class T>
  static std::vector<T*> ptrs(const std::vector<py::array>& arrays) {
    std::vector<T*> out;
    out.reserve(arrays.size());
    // Written lists were checked writeable; grads are passed on as const T*.
    for (const auto& a : arrays) out.push_back(static_cast<T*>(const_cast<void*>(a.data())));
    return out;
  }

  // Calls f(kernels, tensor list, state(k)) for this dtype without the GIL, where
  // state(k) is the k-th state list's pointers (nullptr when unused). With
  // check_finite, all_finite runs first and a non-finite grad means no write
  // and a false return.
  template <class F>
  bool run(bool check_finite, F&& f) {
    return by_dtype(dtype, [&](auto tag) -> bool {
      using T = decltype(tag);
      auto w = ptrs<T>(params);
      auto g = ptrs<T>(grads);
      std::vector<std::vector<T*>> st;
      for (const auto& list : states) st.push_back(ptrs<T>(list));
      auto state = [&](size_t k) -> T* const* { return st[k].empty() ? nullptr : st[k].data(); };
      cpu::TensorList<T> t{static_cast<int64_t>(w.size()), w.data(), const_cast<const T* const*>(g.data()),
                           sizes.data()};
      const auto& kernels = cpu::optim_kernels<T>();
      py::gil_scoped_release nogil;
      if (check_finite && !kernels.all_finite({t.count, t.grads, t.sizes})) return false;
      f(kernels, t, state);
      return true;
    });
  }
};

static void check_step(const char* op, int64_t step) {
  if (step < 1) value_error(op, "step counts from 1 (torch's state['step'] after the increment), got " +
                                    std::to_string(step));
}

// A list of arrays of one dtype: read only (copied when strided) or written in place.
struct ArrayListArg {
  DType dtype = DType::f32;
  std::vector<py::array> arrays;
  std::vector<int64_t> sizes;

  ArrayListArg(const char* op, const char* name, const py::list& list, bool written) {
    if (list.size() > 0) dtype = float_dtype(op, item(name, 0).c_str(), as_array(op, item(name, 0).c_str(), list[0]));
    Spans spans;
    arrays.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      arrays.push_back(checked(op, name, list, i, dtype, written));
      sizes.push_back(static_cast<int64_t>(arrays.back().size()));
      spans.add(arrays.back(), name, i);
    }
    if (written) spans.check(op);
  }

  template <class T, class F>
  auto run(F&& f) {
    // Read-only lists reach only the kernels that take const T (all_finite, the norm alone).
    auto ptrs = StepArrays::ptrs<T>(arrays);
    cpu::ArrayList<T> l{static_cast<int64_t>(ptrs.size()), ptrs.data(), sizes.data()};
    py::gil_scoped_release nogil;
    return f(cpu::optim_kernels<T>(), l);
  }
};

// True when the list's arrays are CUDA arrays: its first array decides (an
// empty list runs on the CPU); TypeError without a CUDA build.
static bool list_on_gpu(const char* op, const py::list& l, const char* name) {
  if (l.size() == 0) return false;
  const std::string first = item(name, 0);
  return on_gpu(op, {{first.c_str(), l[0]}});
}

#ifdef DK_WITH_CUDA
// list[i] as a CUDA array of dtype d (C-contiguous; writeable when written),
// with the CPU path's messages for another device or dtype.
static CudaArray gpu_item(const char* op, const char* list, const py::list& l, size_t i, DType d, bool written,
                          const std::string& first) {
  const std::string name = item(list, i);
  check_same_device(op, name.c_str(), l[i], true, first.c_str());
  CudaArray a = written ? cuda_output(op, name.c_str(), l[i]) : cuda_array(op, name.c_str(), l[i]);
  if (a.dtype != d)
    type_error(op, name + " has dtype " + (a.dtype == DType::f32 ? "float32" : "float64") + ", expected " +
                       (d == DType::f32 ? "float32" : "float64") + " like the other arguments");
  return a;
}

static int64_t gpu_nbytes(const CudaArray& a) { return a.size() * (a.dtype == DType::f32 ? 4 : 8); }

// StepArrays for CUDA arrays: the same checks, then the pointer lists for cuda/optim.h.
struct GpuStepArrays {
  DType dtype = DType::f32;
  std::vector<CudaArray> params, grads;
  std::vector<std::vector<CudaArray>> states;
  std::vector<int64_t> sizes;

  GpuStepArrays(const char* op, const py::list& p, const py::list& g, const StateLists& state_lists) {
    const size_t n = p.size();
    check_count(op, n, g.size());
    const std::string first = item("params", 0);
    dtype = cuda_array(op, first.c_str(), p[0]).dtype;
    Spans spans;
    for (size_t i = 0; i < n; ++i) {
      params.push_back(gpu_item(op, "params", p, i, dtype, true, first));
      grads.push_back(gpu_item(op, "grads", g, i, dtype, false, first));
      if (grads[i].shape != params[i].shape)
        shape_mismatch(op, "grads", i, shape_str(grads[i].shape), shape_str(params[i].shape));
      sizes.push_back(params[i].size());
      spans.add(params[i].data, gpu_nbytes(params[i]), "params", i);
      spans.add(grads[i].data, gpu_nbytes(grads[i]), "grads", i);
    }
    for (const auto& [name, list, used] : state_lists) {
      auto& s = states.emplace_back();
      if (!used) continue;
      check_state_count(op, name, list.size(), n);
      for (size_t i = 0; i < n; ++i) {
        s.push_back(gpu_item(op, name, list, i, dtype, true, first));
        if (s[i].shape != params[i].shape) shape_mismatch(op, name, i, shape_str(s[i].shape), shape_str(params[i].shape));
        spans.add(s[i].data, gpu_nbytes(s[i]), name, i);
      }
    }
    spans.check(op);
  }

  template <class T>
  static std::vector<T*> ptrs(const std::vector<CudaArray>& arrays) {
    std::vector<T*> out;
    out.reserve(arrays.size());
    for (const auto& a : arrays) out.push_back(static_cast<T*>(a.data));
    return out;
  }

  // f(tensor lists, stream) -> bool for this dtype, without the GIL.
  template <class F>
  bool run(F&& f) {
    return by_dtype(dtype, [&](auto tag) -> bool {
      using T = decltype(tag);
      auto w = ptrs<T>(params);
      auto g = ptrs<T>(grads);
      std::vector<std::vector<T*>> st;
      for (const auto& list : states) st.push_back(ptrs<T>(list));
      cuda::TensorLists<T> t;
      t.count = static_cast<int64_t>(w.size());
      t.params = w.data();
      t.grads = const_cast<const T* const*>(g.data());
      t.sizes = sizes.data();
      for (size_t k = 0; k < st.size() && k < 3; ++k) t.state[k] = st[k].empty() ? nullptr : st[k].data();
      const std::uintptr_t stream = params[0].stream;
      py::gil_scoped_release nogil;
      return f(t, stream);
    });
  }
};

// ArrayListArg for CUDA arrays.
struct GpuArrayListArg {
  DType dtype = DType::f32;
  std::vector<CudaArray> arrays;
  std::vector<int64_t> sizes;

  GpuArrayListArg(const char* op, const char* name, const py::list& list, bool written) {
    const std::string first = item(name, 0);
    dtype = cuda_array(op, first.c_str(), list[0]).dtype;
    Spans spans;
    for (size_t i = 0; i < list.size(); ++i) {
      arrays.push_back(gpu_item(op, name, list, i, dtype, written, first));
      sizes.push_back(arrays.back().size());
      spans.add(arrays.back().data, gpu_nbytes(arrays.back()), name, i);
    }
    if (written) spans.check(op);
  }

  // f(array lists, stream) for this dtype, without the GIL.
  template <class T, class F>
  auto run(F&& f) {
    auto ptrs = GpuStepArrays::ptrs<T>(arrays);
    cuda::ArrayLists<T> l{static_cast<int64_t>(ptrs.size()), ptrs.data(), sizes.data()};
    const std::uintptr_t stream = arrays[0].stream;
    py::gil_scoped_release nogil;
    return f(l, stream);
  }
};

#endif

// One step on the device of the params: the CUDA launch for CUDA lists, else
// cpu(kernels, tensor list, state) on the checked numpy lists.
template <class P, class F>
static bool run_step(const char* op, const py::list& params, const py::list& grads, const StateLists& lists,
                     const P& p, bool check_finite, F&& cpu) {
  if (list_on_gpu(op, params, "params")) {
#ifdef DK_WITH_CUDA
    return GpuStepArrays(op, params, grads, lists).run([&](const auto& t, std::uintptr_t stream) {
      return cuda::optim_step(p, t, check_finite, stream);
    });
#else
    (void)p;  // only the CUDA path reads p here; list_on_gpu raised without CUDA
#endif
  }
  return StepArrays(op, params, grads, lists).run(check_finite, cpu);
}

void bind_optim(py::module_& m) {
  m.def(
      "sgd_step",
      [](py::list params, py::list grads, py::list momentum_buffers, double lr, double momentum,
         double dampening, double weight_decay, bool nesterov, bool maximize, bool first_step, bool check_finite) {
        const StateLists lists{{"momentum_buffers", momentum_buffers, momentum != 0.0}};
        SgdParams p{lr, momentum, dampening, weight_decay, nesterov, maximize, first_step};
        return run_step("sgd_step", params, grads, lists, p, check_finite,
                        [&](const auto& k, const auto& t, auto state) { k.sgd(p, t, state(0)); });
      },
      py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("lr"), py::arg("momentum"),
      py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("maximize"),
      py::arg("first_step"), py::arg("check_finite") = false,
      "torch.optim.SGD's update of every param in place; momentum_buffers (ignored when momentum is 0) "
      "are updated in place too. Returns False, writing nothing, when check_finite and a grad is not finite.");

  m.def(
      "adagrad_step",
      [](py::list params, py::list grads, py::list sums, double lr, double lr_decay, double weight_decay, double eps,
         int64_t step, bool maximize, bool check_finite) {
        check_step("adagrad_step", step);
        const StateLists lists{{"sums", sums, true}};
        AdagradParams p{lr, lr_decay, weight_decay, eps, step, maximize};
        return run_step("adagrad_step", params, grads, lists, p, check_finite,
                        [&](const auto& k, const auto& t, auto state) { k.adagrad(p, t, state(0)); });
      },
      py::arg("params"), py::arg("grads"), py::arg("sums"), py::arg("lr"), py::arg("lr_decay"),
      py::arg("weight_decay"), py::arg("eps"), py::arg("step"), py::arg("maximize"), py::arg("check_finite") = false,
      "torch.optim.Adagrad's update in place (sums: state['sum']).");

  m.def(
      "adadelta_step",
      [](py::list params, py::list grads, py::list square_avgs, py::list acc_deltas, double lr, double rho,
         double eps, double weight_decay, bool maximize, bool check_finite) {
        const StateLists lists{{"square_avgs", square_avgs, true}, {"acc_deltas", acc_deltas, true}};
        AdadeltaParams p{lr, rho, eps, weight_decay, maximize};
        return run_step("adadelta_step", params, grads, lists, p, check_finite,
                        [&](const auto& k, const auto& t, auto state) { k.adadelta(p, t, state(0), state(1)); });
      },
      py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("acc_deltas"), py::arg("lr"),
      py::arg("rho"), py::arg("eps"), py::arg("weight_decay"), py::arg("maximize"), py::arg("check_finite") = false,
      "torch.optim.Adadelta's update in place.");

  m.def(
      "rmsprop_step",
      [](py::list params, py::list grads, py::list square_avgs, py::list grad_avgs, py::list momentum_buffers,
         double lr, double alpha, double eps, double weight_decay, double momentum, bool centered, bool maximize,
         bool check_finite) {
        const StateLists lists{{"square_avgs", square_avgs, true},
                               {"grad_avgs", grad_avgs, centered},
                               {"momentum_buffers", momentum_buffers, momentum > 0.0}};
        RmspropParams p{lr, alpha, eps, weight_decay, momentum, centered, maximize};
        return run_step("rmsprop_step", params, grads, lists, p, check_finite,
                        [&](const auto& k, const auto& t, auto state) {
                          k.rmsprop(p, t, state(0), state(1), state(2));
                        });
      },
      py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("grad_avgs"),
      py::arg("momentum_buffers"), py::arg("lr"), py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"),
      py::arg("momentum"), py::arg("centered"), py::arg("maximize"), py::arg("check_finite") = false,
      "torch.optim.RMSprop's update in place; grad_avgs are used when centered, momentum_buffers when "
      "momentum > 0 (ignored otherwise).");

  m.def(
      "adam_step",
      [](py::list params, py::list grads, py::list exp_avgs, py::list exp_avg_sqs, py::list max_exp_avg_sqs,
         double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step, bool amsgrad,
         bool decoupled_weight_decay, bool maximize, bool check_finite) {
        check_step("adam_step", step);
        const StateLists lists{{"exp_avgs", exp_avgs, true},
                               {"exp_avg_sqs", exp_avg_sqs, true},
                               {"max_exp_avg_sqs", max_exp_avg_sqs, amsgrad}};
        AdamParams p{lr, beta1, beta2, eps, weight_decay, step, amsgrad, decoupled_weight_decay, maximize};
        return run_step("adam_step", params, grads, lists, p, check_finite,
                        [&](const auto& k, const auto& t, auto state) { k.adam(p, t, state(0), state(1), state(2)); });
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"),
      py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("step"),
      py::arg("amsgrad"), py::arg("decoupled_weight_decay"), py::arg("maximize"), py::arg("check_finite") = false,
      "torch.optim.Adam's update in place (AdamW with decoupled_weight_decay); max_exp_avg_sqs are used "
      "when amsgrad (ignored otherwise).");

  m.def(
      "adamax_step",
      [](py::list params, py::list grads, py::list exp_avgs, py::list exp_infs, double lr, double beta1,
         double beta2, double eps, double weight_decay, int64_t step, bool maximize, bool check_finite) {
        check_step("adamax_step", step);
        const StateLists lists{{"exp_avgs", exp_avgs, true}, {"exp_infs", exp_infs, true}};
        AdamaxParams p{lr, beta1, beta2, eps, weight_decay, step, maximize};
        return run_step("adamax_step", params, grads, lists, p, check_finite,
                        [&](const auto& k, const auto& t, auto state) { k.adamax(p, t, state(0), state(1)); });
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_infs"), py::arg("lr"),
      py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("step"),
      py::arg("maximize"), py::arg("check_finite") = false, "torch.optim.Adamax's update in place.");

  m.def(
      "nadam_step",
      [](py::list params, py::list grads, py::list exp_avgs, py::list exp_avg_sqs, double lr, double beta1,
         double beta2, double eps, double weight_decay, double momentum_decay, double mu_product, int64_t step,
         bool decoupled_weight_decay, bool maximize, bool check_finite) {
        check_step("nadam_step", step);
        const StateLists lists{{"exp_avgs", exp_avgs, true}, {"exp_avg_sqs", exp_avg_sqs, true}};
        NadamParams p{lr, beta1, beta2, eps, weight_decay, momentum_decay, mu_product, step,
                      decoupled_weight_decay, maximize};
        return run_step("nadam_step", params, grads, lists, p, check_finite,
                        [&](const auto& k, const auto& t, auto state) { k.nadam(p, t, state(0), state(1)); });
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("lr"),
      py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("momentum_decay"),
      py::arg("mu_product"), py::arg("step"), py::arg("decoupled_weight_decay"), py::arg("maximize"),
      py::arg("check_finite") = false,
      "torch.optim.NAdam's update in place; mu_product is the product of nadam_mu(1..step), this step's included.");

  m.def(
      "nadam_mu",
      [](double beta1, double momentum_decay, int64_t step) { return nadam_mu(beta1, momentum_decay, step); },
      py::arg("beta1"), py::arg("momentum_decay"), py::arg("step"),
      "NAdam's momentum coefficient of a step: beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay)).");

  m.def(
      "all_finite",
      [](py::list arrays) {
        if (list_on_gpu("all_finite", arrays, "arrays")) {
#ifdef DK_WITH_CUDA
          GpuArrayListArg a("all_finite", "arrays", arrays, false);
          return by_dtype(a.dtype, [&](auto tag) {
            using T = decltype(tag);
            return a.run<T>([](const cuda::ArrayLists<T>& l, std::uintptr_t stream) {
              return cuda::all_finite<T>(cuda::ArrayLists<const T>{l.count, l.data, l.sizes}, stream);
            });
          });
#endif
        }
        ArrayListArg a("all_finite", "arrays", arrays, false);
        return by_dtype(a.dtype, [&](auto tag) {
          using T = decltype(tag);
          return a.run<T>([](const auto& k, const cpu::ArrayList<T>& l) {
            return k.all_finite(cpu::ArrayList<const T>{l.count, l.data, l.sizes});
          });
        });
      },
      py::arg("arrays"), "True when no element of any array (one dtype) is NaN or infinite.");

  m.def(
      "clip_grad_norm",
      [](py::list grads, double max_norm, double norm_type, bool scale_nonfinite) {
        const char* op = "clip_grad_norm";
        if (norm_type != norm_type) value_error(op, "norm_type must not be NaN");
        ClipParams p{norm_type, max_norm, scale_nonfinite};
        if (list_on_gpu(op, grads, "grads")) {
#ifdef DK_WITH_CUDA
          GpuArrayListArg a(op, "grads", grads, max_norm >= 0);
          return by_dtype(a.dtype, [&](auto tag) {
            using T = decltype(tag);
            return a.run<T>([&](const cuda::ArrayLists<T>& l, std::uintptr_t stream) {
              return cuda::clip_grad_norm<T>(p, l, stream);
            });
          });
#endif
        }
        ArrayListArg a(op, "grads", grads, max_norm >= 0);
        return by_dtype(a.dtype, [&](auto tag) {
          using T = decltype(tag);
          return a.run<T>([&](const auto& k, const cpu::ArrayList<T>& l) { return k.clip_grad_norm(p, l); });
        });
      },
      py::arg("grads"), py::arg("max_norm"), py::arg("norm_type"), py::arg("scale_nonfinite"),
      "The norm_type-norm of all grads together (float64 accumulation); when max_norm >= 0 the grads are "
      "then scaled in place by min(1, max_norm / (norm + 1e-6)), except for a non-finite norm when "
      "scale_nonfinite is False. max_norm < 0: the norm only (grads are read, may be strided).");

  m.def(
      "clip_grad_value",
      [](py::list grads, double clip_value) {
        if (clip_value != clip_value) value_error("clip_grad_value", "clip_value must not be NaN");
        if (list_on_gpu("clip_grad_value", grads, "grads")) {
#ifdef DK_WITH_CUDA
          GpuArrayListArg a("clip_grad_value", "grads", grads, true);
          by_dtype(a.dtype, [&](auto tag) {
            using T = decltype(tag);
            a.run<T>([&](const cuda::ArrayLists<T>& l, std::uintptr_t stream) {
              cuda::clip_grad_value<T>(T(clip_value), l, stream);
            });
          });
          return;
#endif
        }
        ArrayListArg a("clip_grad_value", "grads", grads, true);
        by_dtype(a.dtype, [&](auto tag) {
          using T = decltype(tag);
          a.run<T>([&](const auto& k, const cpu::ArrayList<T>& l) { k.clip_grad_value(T(clip_value), l); });
        });
      },
      py::arg("grads"), py::arg("clip_value"), "Clamps every grad element to [-clip_value, clip_value] in place.");
}

}  // namespace dk::bind
