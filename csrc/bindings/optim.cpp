// Optimizer steps: lists of arrays in, updated in place in one native call.
// Everything is checked before anything is written: no half-updated state.
#include "bindings/common.h"
#include "cpu/optim.h"

namespace dk::bind {

// The arrays of one step, checked and kept alive for the duration of the call.
struct StepArrays {
  DType dtype = DType::f32;
  std::vector<py::array> params, grads;
  std::vector<std::vector<py::array>> states;
  std::vector<int64_t> sizes;

  // params and each state list: C-contiguous, writeable; grads: read only.
  StepArrays(const char* op, const py::list& p, const py::list& g,
             const std::vector<std::pair<const char*, py::list>>& state_lists) {
    if (p.size() != g.size())
      value_error(op, "got " + std::to_string(p.size()) + " params but " + std::to_string(g.size()) + " grads");
    if (p.size() > 0) dtype = float_dtype(op, "params[0]", as_array(op, "params[0]", p[0]));
    for (size_t i = 0; i < p.size(); ++i) {
      std::string pi = "params[" + std::to_string(i) + "]", gi = "grads[" + std::to_string(i) + "]";
      params.push_back(output(op, pi.c_str(), p[i], dtype));
      grads.push_back(input(op, gi.c_str(), g[i], dtype));
      if (shape_of(grads.back()) != shape_of(params.back()))
        value_error(op, gi + " has shape " + shape_str(grads.back()) + " but " + pi + " has " +
                            shape_str(params.back()));
      sizes.push_back(static_cast<int64_t>(params.back().size()));
    }
    for (const auto& [name, list] : state_lists) {
      if (list.size() != p.size())
        value_error(op, "got " + std::to_string(list.size()) + " " + name + " for " +
                            std::to_string(p.size()) + " params");
      std::vector<py::array> s;
      for (size_t i = 0; i < list.size(); ++i) {
        std::string si = std::string(name) + "[" + std::to_string(i) + "]";
        s.push_back(output(op, si.c_str(), list[i], dtype));
        if (shape_of(s.back()) != shape_of(params[i]))
          value_error(op, si + " has shape " + shape_str(s.back()) + " but params[" + std::to_string(i) +
                              "] has " + shape_str(params[i]));
      }
      states.push_back(std::move(s));
    }
  }

  template <class T>
  std::vector<T*> mutable_ptrs(std::vector<py::array>& arrays) {
    std::vector<T*> out;
    for (auto& a : arrays) out.push_back(out_ptr<T>(a));
    return out;
  }
  template <class T>
  std::vector<const T*> const_ptrs(const std::vector<py::array>& arrays) {
    std::vector<const T*> out;
    for (const auto& a : arrays) out.push_back(in_ptr<T>(a));
    return out;
  }
};

void bind_optim(py::module_& m) {
  m.def(
      "sgd_step",
      [](py::list params, py::list grads, py::list momentum_buffers, double lr, double momentum,
         double dampening, double weight_decay, bool nesterov, bool maximize, bool first_step) {
        const char* op = "sgd_step";
        std::vector<std::pair<const char*, py::list>> state;
        if (momentum != 0.0) state.emplace_back("momentum_buffers", momentum_buffers);
        StepArrays s(op, params, grads, state);
        SgdParams p{lr, momentum, dampening, weight_decay, nesterov, maximize, first_step};
        by_dtype(s.dtype, [&](auto tag) {
          using T = decltype(tag);
          auto w = s.mutable_ptrs<T>(s.params);
          auto g = s.const_ptrs<T>(s.grads);
          std::vector<T*> buf;
          if (!s.states.empty()) buf = s.mutable_ptrs<T>(s.states[0]);
          cpu::TensorList<T> t{static_cast<int64_t>(w.size()), w.data(), g.data(), s.sizes.data()};
          py::gil_scoped_release nogil;
          cpu::optim_kernels<T>().sgd(p, t, buf.empty() ? nullptr : buf.data());
        });
      },
      py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("lr"), py::arg("momentum"),
      py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("maximize"),
      py::arg("first_step"),
      "torch.optim.SGD's update of every param in place; momentum_buffers (ignored when momentum is 0) "
      "are updated in place too.");
}

}  // namespace dk::bind
