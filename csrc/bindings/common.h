// What every binding needs: argument checks that raise TypeError / ValueError
// with "[op] ..." messages, dtype dispatch, and raw pointers out of arrays.
// Bindings check everything a kernel trusts (dtype, shapes, contiguity,
// writeability) before any native work; they do no arithmetic.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace dk::bind {

namespace py = pybind11;

enum class DType { f32, f64 };

[[noreturn]] inline void type_error(const char* op, const std::string& msg) {
  throw py::type_error(std::string("[") + op + "] " + msg);
}
[[noreturn]] inline void value_error(const char* op, const std::string& msg) {
  throw py::value_error(std::string("[") + op + "] " + msg);
}

inline std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

inline py::array as_array(const char* op, const char* name, py::handle h) {
  if (!py::isinstance<py::array>(h))
    type_error(op, std::string(name) + " must be a numpy array, got " +
                       py::str(py::type::handle_of(h).attr("__name__")).cast<std::string>());
  return py::reinterpret_borrow<py::array>(h);
}

inline DType float_dtype(const char* op, const char* name, const py::array& a) {
  if (a.dtype().is(py::dtype::of<float>())) return DType::f32;
  if (a.dtype().is(py::dtype::of<double>())) return DType::f64;
  type_error(op, std::string(name) + " must be float32 or float64, got " + dtype_name(a));
}

// numpy's ALIGNED flag: the data pointer (and every stride) is a multiple of the
// dtype's alignment. Kernels read and write elements as T, and a misaligned T
// access is undefined behaviour (UBSan reports it; some CPUs fault), so a
// pointer handed to a kernel must be aligned, not merely C-contiguous: a view
// into a byte buffer at an odd offset is C-contiguous but not aligned.
inline bool is_aligned(const py::array& a) {
  return (a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0;
}

// a's data in a C-contiguous, aligned array of dtype `dtype` (None: a's):
// numpy.asarray(a, dtype, order="C"), which keeps 0-D arrays 0-D and returns a
// itself when it already fits, then a copy (numpy.array, always fresh, so
// aligned) when the result is still misaligned, which asarray does not fix. A
// copy's MemoryError propagates, where py::array::ensure would clear it and
// return null.
inline py::array c_contiguous(const py::array& a, py::object dtype = py::none()) {
  py::module_ np = py::module_::import("numpy");
  py::array c = np.attr("asarray")(a, dtype, "C");
  if (!is_aligned(c)) c = np.attr("array")(c, py::arg("order") = "C");
  return c;
}

// An array the op only reads: any float array; strided or misaligned views are
// copied to C-contiguous, aligned memory. Its dtype must be `want` (mixing dtypes
// is a TypeError).
inline py::array input(const char* op, const char* name, py::handle h, DType want) {
  py::array a = as_array(op, name, h);
  if (float_dtype(op, name, a) != want)
    type_error(op, std::string(name) + " has dtype " + dtype_name(a) + ", expected " +
                       (want == DType::f32 ? "float32" : "float64") + " like the other arguments");
  if (!(a.flags() & py::array::c_style) || !is_aligned(a)) a = c_contiguous(a);
  return a;
}

// The checks every array written in place passes (see output()); the caller has
// checked its dtype.
inline void check_writable(const char* op, const char* name, const py::array& a) {
  if (!(a.flags() & py::array::c_style))
    value_error(op, std::string(name) + " is written in place and must be C-contiguous");
  if (!is_aligned(a))
    value_error(op, std::string(name) + " is written in place and must be aligned to its dtype (" +
                        dtype_name(a) + "); a view at an odd byte offset cannot be written by the kernels");
  if (!a.writeable()) value_error(op, std::string(name) + " is written in place and must be writeable");
}

// An array the op writes: must already be C-contiguous, aligned, writeable and of
// dtype `want`. Never copied: a silent copy would lose the write.
inline py::array output(const char* op, const char* name, py::handle h, DType want) {
  py::array a = as_array(op, name, h);
  if (float_dtype(op, name, a) != want)
    type_error(op, std::string(name) + " has dtype " + dtype_name(a) + ", expected " +
                       (want == DType::f32 ? "float32" : "float64") + " like the other arguments");
  check_writable(op, name, a);
  return a;
}

// Integer labels: any integer dtype, converted to contiguous int64.
inline py::array_t<int64_t> labels(const char* op, const char* name, py::handle h) {
  py::array a = as_array(op, name, h);
  if (a.dtype().kind() != 'i' && a.dtype().kind() != 'u')
    type_error(op, std::string(name) + " must be an integer array, got " + dtype_name(a));
  return py::reinterpret_borrow<py::array_t<int64_t>>(c_contiguous(a, py::dtype::of<int64_t>()));
}

inline void check_ndim(const char* op, const char* name, const py::array& a, py::ssize_t ndim) {
  if (a.ndim() != ndim)
    value_error(op, std::string(name) + " must be " + std::to_string(ndim) + "-D, got shape " + shape_str(a));
}

inline void check_shape(const char* op, const char* name, const py::array& a,
                        const std::vector<int64_t>& want) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(want.size());
  for (size_t i = 0; ok && i < want.size(); ++i) ok = a.shape(i) == want[i];
  if (!ok) {
    std::string w = "(";
    for (size_t i = 0; i < want.size(); ++i) w += (i ? ", " : "") + std::to_string(want[i]);
    value_error(op, std::string(name) + " must have shape " + w + (want.size() == 1 ? ",)" : ")") +
                        ", got " + shape_str(a));
  }
}

inline std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

template <class T>
const T* in_ptr(const py::array& a) {
  return static_cast<const T*>(a.data());
}
template <class T>
T* out_ptr(py::array& a) {
  return static_cast<T*>(a.mutable_data());
}

// Calls f(T{}) with T = float or double.
template <class F>
decltype(auto) by_dtype(DType d, F&& f) {
  if (d == DType::f32) return f(float{});
  return f(double{});
}

// The families register their functions on the module through these.
void bind_core(py::module_& m);
void bind_cuda(py::module_& m);
void bind_roofline(py::module_& m);
void bind_gemm(py::module_& m);
void bind_activation(py::module_& m);
void bind_loss(py::module_& m);
void bind_optim(py::module_& m);
void bind_pool(py::module_& m);
void bind_batchnorm(py::module_& m);
void bind_conv(py::module_& m);
void bind_rnn(py::module_& m);
void bind_dropout(py::module_& m);

}  // namespace dk::bind
