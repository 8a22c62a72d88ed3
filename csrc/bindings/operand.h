// The arrays of one call on either device, checked once: a binding picks the
// device with on_gpu (cuda_array.h), takes each argument through an Args
// (numpy arrays: common.h's checks and contiguous copies of read-only inputs;
// CUDA arrays: cuda_array.h's), checks shapes on the Operands and dispatches to
// dk::cpu or dk::cuda. So the CPU and the GPU path of an op share every check
// and every message.
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "bindings/cuda_array.h"

// dk::cuda is linked only into CUDA builds; elsewhere on_gpu has already
// raised for a CUDA array, so a branch holding DK_CUDA is never taken.
#ifdef DK_WITH_CUDA
#define DK_CUDA(...) __VA_ARGS__
#else
#define DK_CUDA(...) throw std::logic_error("deepkern was built without CUDA")
#endif

namespace dk::bind {

struct Operand {
  std::vector<int64_t> shape;
  void* data = nullptr;
  DType dtype = DType::f32;
  std::uintptr_t stream = 0;  // CUDA arrays: the producer's stream
  py::object keep;            // numpy arrays: the (possibly copied) array holding data

  int64_t ndim() const { return static_cast<int64_t>(shape.size()); }
  int64_t size() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  // Extent of axis a, counted from the end when a < 0.
  int64_t dim(int64_t a) const { return shape[a < 0 ? a + ndim() : a]; }
  template <class T>
  T* ptr() const { return static_cast<T*>(data); }
};

inline const char* dtype_str(DType d) { return d == DType::f32 ? "float32" : "float64"; }

class Args {
 public:
  Args(const char* op, bool gpu) : op_(op), gpu_(gpu) {}
  bool gpu() const { return gpu_; }
  // The stream of the call: the first CUDA operand's.
  std::uintptr_t stream() const { return stream_; }

  // The float dtype of `name` (the call's first float argument), before any copy.
  DType dtype_of(const char* name, py::handle h) const {
    if (gpu_) return cuda_array(op_, name, h).dtype;
    return float_dtype(op_, name, as_array(op_, name, h));
  }

  // A float array the op reads, of dtype `want`.
  Operand in(const char* name, py::handle h, DType want) {
    if (gpu_) return from_cuda(name, cuda_array(op_, name, h), want);
    return from_numpy(input(op_, name, h, want), want);
  }
  // A float array the op writes: C-contiguous and writeable, never copied.
  Operand out(const char* name, py::handle h, DType want) {
    if (gpu_) return from_cuda(name, cuda_output(op_, name, h), want);
    return from_numpy(output(op_, name, h, want), want);
  }
  // Integer labels or indices the op reads, as int64 (numpy: any integer dtype,
  // converted; CUDA: int64, which deepkern.ops converts to).
  Operand index_in(const char* name, py::handle h) {
    if (gpu_) return from_cuda(name, cuda_array_of(op_, name, h, "<i8", "an int64 array"), std::nullopt);
    return from_numpy(labels(op_, name, h), std::nullopt);
  }
  // int64 indices the op writes: C-contiguous, writeable, never copied.
  Operand index_out(const char* name, py::handle h) {
    const std::string n(name);
    if (gpu_) {
      CudaArray a = cuda_array_of(op_, name, h, "<i8", "int64");
      if (a.readonly) value_error(op_, n + " is written in place and must be writeable");
      return from_cuda(name, a, std::nullopt);
    }
    py::array a = as_array(op_, name, h);
    if (!a.dtype().is(py::dtype::of<int64_t>())) type_error(op_, n + " must be int64, got " + dtype_name(a));
    check_writable(op_, name, a);
    return from_numpy(a, std::nullopt);
  }
  // A bool array (one byte per element, 0 or 1): written, or read (numpy: any
  // integer dtype is converted, nonzero meaning true; CUDA: bool, which
  // deepkern.ops converts to).
  Operand mask(const char* name, py::handle h, bool written) {
    const std::string n(name);
    if (gpu_) {
      CudaArray a = cuda_array_of(op_, name, h, "|b1", written ? "a bool array" : "a bool (or integer) array");
      if (written && a.readonly) value_error(op_, n + " is written in place and must be writeable");
      return from_cuda(name, a, std::nullopt);
    }
    py::array m = as_array(op_, name, h);
    const char kind = m.dtype().kind();
    const bool is_bool = m.dtype().is(py::dtype::of<bool>());
    if (written) {
      if (!is_bool) type_error(op_, n + " is written in place and must be a bool array, got " + dtype_name(m));
      check_writable(op_, name, m);
    } else if (!is_bool && kind != 'i' && kind != 'u') {
      type_error(op_, n + " must be a bool (or integer) array, got " + dtype_name(m));
    } else if (!is_bool || !(m.flags() & py::array::c_style)) {
      m = c_contiguous(m, py::dtype::of<bool>());
    }
    return from_numpy(m, std::nullopt);
  }

  // ValueError "`name` must have shape (...), got (...)" unless a has shape `want`.
  void check_shape(const char* name, const Operand& a, const std::vector<int64_t>& want) const {
    if (a.shape != want)
      value_error(op_, std::string(name) + " must have shape " + shape_str(want) + ", got " + shape_str(a.shape));
  }

 private:
  Operand from_numpy(const py::array& a, std::optional<DType> dtype) {
    Operand o;
    o.shape = shape_of(a);
    o.data = const_cast<void*>(a.data());
    if (dtype) o.dtype = *dtype;
    o.keep = a;
    return o;
  }
  Operand from_cuda(const char* name, const CudaArray& a, std::optional<DType> want) {
    if (want && a.dtype != *want)
      type_error(op_, std::string(name) + " has dtype " + dtype_str(a.dtype) + ", expected " + dtype_str(*want) +
                          " like the other arguments");
    if (!have_stream_) stream_ = a.stream, have_stream_ = true;
    Operand o;
    o.shape = a.shape;
    o.data = a.size() > 0 ? a.data : nullptr;  // the CUDA side never queries an empty array's pointer
    if (want) o.dtype = *want;
    o.stream = a.stream;
    return o;
  }

  const char* op_;
  bool gpu_;
  bool have_stream_ = false;
  std::uintptr_t stream_ = 0;
};

}  // namespace dk::bind
