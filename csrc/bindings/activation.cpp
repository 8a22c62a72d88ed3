// Activations and softmax: numpy arrays run the CPU kernels; arrays with
// __cuda_array_interface__ (CuPy, torch CUDA tensors) run the CUDA kernels on
// the stream their interface names. Outputs are allocated by the caller
// (deepkern.ops) and written in place.
#include <string>

#include "bindings/common.h"
#include "bindings/cuda_array.h"
#include "core/activation_math.h"
#include "cpu/activation.h"

#ifdef DK_WITH_CUDA
#include "cuda/activation.h"
#endif

namespace dk::bind {

namespace {

void check_coef(const char* op, Activation kind, double alpha) {
  if (kind == Activation::softplus && alpha == 0.0) value_error(op, "beta must be nonzero");
}

// dim in [-ndim, ndim) (0-D arrays take 0 or -1, as torch) -> the (outer, dim,
// inner) view of a C-contiguous array of this shape.
SoftmaxParams softmax_view(const char* op, const std::vector<int64_t>& shape, int64_t dim, bool log) {
  const int64_t ndim = static_cast<int64_t>(shape.size());
  const int64_t rank = ndim == 0 ? 1 : ndim;
  if (dim < -rank || dim >= rank)
    value_error(op, "dim " + std::to_string(dim) + " is out of range for a " + std::to_string(ndim) + "-D array");
  if (dim < 0) dim += rank;
  SoftmaxParams p;
  p.outer = 1, p.dim = 1, p.inner = 1, p.log = log;
  for (int64_t i = 0; i < ndim; ++i) (i < dim ? p.outer : i == dim ? p.dim : p.inner) *= shape[i];
  return p;
}

// The CPU path's arrays: read-only inputs, then outputs, all one dtype and the
// first input's shape.
struct CpuArrays {
  DType dtype;
  std::vector<py::array> in, out;
  CpuArrays(const char* op, std::initializer_list<std::pair<const char*, py::handle>> inputs,
            std::initializer_list<std::pair<const char*, py::handle>> outputs) {
    auto first = *inputs.begin();
    dtype = float_dtype(op, first.first, as_array(op, first.first, first.second));
    for (auto [name, h] : inputs) in.push_back(input(op, name, h, dtype));
    for (auto [name, h] : outputs) out.push_back(output(op, name, h, dtype));
    const auto shape = shape_of(in[0]);
    size_t i = 1;
    for (auto it = inputs.begin() + 1; it != inputs.end(); ++it, ++i) check_shape(op, it->first, in[i], shape);
    i = 0;
    for (auto [name, h] : outputs) check_shape(op, name, out[i++], shape);
  }
};

#ifdef DK_WITH_CUDA
// The CUDA path's arrays, checked the same way.
struct GpuArrays {
  DType dtype;
  std::vector<CudaArray> in, out;
  GpuArrays(const char* op, std::initializer_list<std::pair<const char*, py::handle>> inputs,
            std::initializer_list<std::pair<const char*, py::handle>> outputs) {
    for (auto [name, h] : inputs) in.push_back(cuda_array(op, name, h));
    for (auto [name, h] : outputs) out.push_back(cuda_output(op, name, h));
    dtype = in[0].dtype;
    size_t i = 0;
    auto check = [&](const char* name, const CudaArray& a) {
      if (a.dtype != dtype)
        type_error(op, std::string(name) + " has dtype " + (a.dtype == DType::f32 ? "float32" : "float64") +
                           ", expected " + (dtype == DType::f32 ? "float32" : "float64") +
                           " like the other arguments");
      if (a.shape != in[0].shape)
        value_error(op, std::string(name) + " must have shape " + shape_str(in[0].shape) + ", got " +
                            shape_str(a.shape));
    };
    for (auto [name, h] : inputs) check(name, in[i++]);
    i = 0;
    for (auto [name, h] : outputs) check(name, out[i++]);
  }
  std::uintptr_t stream() const { return in[0].stream; }
};
#endif

void activation(Activation kind, py::handle x, py::handle y, double alpha, double threshold) {
  const char* op = activation_name(kind);
  check_coef(op, kind, alpha);
  ActivationParams p{kind, 0, alpha, threshold};
  if (on_gpu(op, {{"x", x}, {"y", y}})) {
#ifdef DK_WITH_CUDA
    GpuArrays a(op, {{"x", x}}, {{"y", y}});
    p.n = a.in[0].size();
    by_dtype(a.dtype, [&](auto tag) {
      using T = decltype(tag);
      py::gil_scoped_release nogil;
      cuda::activation_forward<T>(p, static_cast<const T*>(a.in[0].data), static_cast<T*>(a.out[0].data),
                                  a.stream());
    });
#endif
    return;
  }
  CpuArrays a(op, {{"x", x}}, {{"y", y}});
  p.n = static_cast<int64_t>(a.in[0].size());
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = in_ptr<T>(a.in[0]);
    T* yp = out_ptr<T>(a.out[0]);
    py::gil_scoped_release nogil;
    cpu::activation_kernels<T>().forward(p, xp, yp);
  });
}

void activation_backward(Activation kind, py::handle dy, py::handle saved, py::handle dx, double alpha,
                         double threshold) {
  const char* op = activation_name(kind);
  const char* saved_name = backward_uses_output(kind) ? "y" : "x";
  check_coef(op, kind, alpha);
  ActivationParams p{kind, 0, alpha, threshold};
  if (on_gpu(op, {{"dy", dy}, {saved_name, saved}, {"dx", dx}})) {
#ifdef DK_WITH_CUDA
    GpuArrays a(op, {{"dy", dy}, {saved_name, saved}}, {{"dx", dx}});
    p.n = a.in[0].size();
    by_dtype(a.dtype, [&](auto tag) {
      using T = decltype(tag);
      py::gil_scoped_release nogil;
      cuda::activation_backward<T>(p, static_cast<const T*>(a.in[0].data), static_cast<const T*>(a.in[1].data),
                                   static_cast<T*>(a.out[0].data), a.stream());
    });
#endif
    return;
  }
  CpuArrays a(op, {{"dy", dy}, {saved_name, saved}}, {{"dx", dx}});
  p.n = static_cast<int64_t>(a.in[0].size());
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* g = in_ptr<T>(a.in[0]);
    const T* s = in_ptr<T>(a.in[1]);
    T* d = out_ptr<T>(a.out[0]);
    py::gil_scoped_release nogil;
    cpu::activation_kernels<T>().backward(p, g, s, d);
  });
}

void softmax(py::handle x, py::handle y, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  if (on_gpu(op, {{"x", x}, {"y", y}})) {
#ifdef DK_WITH_CUDA
    GpuArrays a(op, {{"x", x}}, {{"y", y}});
    SoftmaxParams p = softmax_view(op, a.in[0].shape, dim, log);
    by_dtype(a.dtype, [&](auto tag) {
      using T = decltype(tag);
      py::gil_scoped_release nogil;
      cuda::softmax_forward<T>(p, static_cast<const T*>(a.in[0].data), static_cast<T*>(a.out[0].data),
                               a.stream());
    });
#endif
    return;
  }
  CpuArrays a(op, {{"x", x}}, {{"y", y}});
  SoftmaxParams p = softmax_view(op, shape_of(a.in[0]), dim, log);
  if (a.in[0].size() == 0) return;
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = in_ptr<T>(a.in[0]);
    T* yp = out_ptr<T>(a.out[0]);
    py::gil_scoped_release nogil;
    cpu::activation_kernels<T>().softmax(p, xp, yp);
  });
}

void softmax_backward(py::handle dy, py::handle y, py::handle dx, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  if (on_gpu(op, {{"dy", dy}, {"y", y}, {"dx", dx}})) {
#ifdef DK_WITH_CUDA
    GpuArrays a(op, {{"dy", dy}, {"y", y}}, {{"dx", dx}});
    SoftmaxParams p = softmax_view(op, a.in[0].shape, dim, log);
    by_dtype(a.dtype, [&](auto tag) {
      using T = decltype(tag);
      py::gil_scoped_release nogil;
      cuda::softmax_backward<T>(p, static_cast<const T*>(a.in[0].data), static_cast<const T*>(a.in[1].data),
                                static_cast<T*>(a.out[0].data), a.stream());
    });
#endif
    return;
  }
  CpuArrays a(op, {{"dy", dy}, {"y", y}}, {{"dx", dx}});
  SoftmaxParams p = softmax_view(op, shape_of(a.in[0]), dim, log);
  if (a.in[0].size() == 0) return;
  by_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* g = in_ptr<T>(a.in[0]);
    const T* yp = in_ptr<T>(a.in[1]);
    T* d = out_ptr<T>(a.out[0]);
    py::gil_scoped_release nogil;
    cpu::activation_kernels<T>().softmax_backward(p, g, yp, d);
  });
}

}  // namespace

void bind_activation(py::module_& m) {
  py::enum_<Activation>(m, "Activation", "The elementwise activations of _C.activation")
      .value("relu", Activation::relu)
      .value("leaky_relu", Activation::leaky_relu)
      .value("elu", Activation::elu)
      .value("sigmoid", Activation::sigmoid)
      .value("tanh", Activation::tanh)
      .value("softplus", Activation::softplus)
      .value("silu", Activation::silu);

  m.def("activation", &activation, py::arg("kind"), py::arg("x"), py::arg("y"), py::arg("alpha") = 0.0,
        py::arg("threshold") = 20.0,
        "y = f(x) elementwise, y written in place (may be x). alpha: leaky_relu's negative_slope, elu's "
        "alpha, softplus's beta; threshold: softplus's. numpy arrays run on the CPU, CUDA arrays on the GPU.");
  m.def("activation_backward", &activation_backward, py::arg("kind"), py::arg("dy"), py::arg("saved"),
        py::arg("dx"), py::arg("alpha") = 0.0, py::arg("threshold") = 20.0,
        "dx = dy * f'(.), dx written in place; saved is the forward input x, or the output y for sigmoid "
        "and tanh.");
  m.def("softmax", &softmax, py::arg("x"), py::arg("y"), py::arg("dim"), py::arg("log"),
        "y = softmax(x, dim), or log_softmax when log; y written in place.");
  m.def("softmax_backward", &softmax_backward, py::arg("dy"), py::arg("y"), py::arg("dx"), py::arg("dim"),
        py::arg("log"), "dx from dy and the forward output y of softmax (log_softmax when log).");
}

}  // namespace dk::bind
