// GPU arrays seen through __cuda_array_interface__ (version 2 and 3: CuPy,
// PyTorch CUDA tensors, Numba): data pointer, shape, dtype, C-contiguity and
// the producer's stream. Pure Python-object parsing, so it builds without CUDA;
// whether the pointer really is device memory is checked by the CUDA side.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "bindings/common.h"

namespace dk::bind {

struct CudaArray {
  void* data = nullptr;
  std::vector<int64_t> shape;
  DType dtype = DType::f32;
  bool readonly = false;
  // The stream the producer works on: the interface's "stream" entry
  // (1 = legacy default stream, 2 = per-thread default stream, else a
  // cudaStream_t), 0 (the default stream) when absent or None.
  std::uintptr_t stream = 0;

  int64_t size() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
};

// numpy arrays are answered first: a failed attribute lookup costs an exception.
inline bool is_cuda_array(py::handle h) {
  return !py::isinstance<py::array>(h) && py::hasattr(h, "__cuda_array_interface__");
}

// The CUDA array's typestr (e.g. "<f4"); ValueError when the interface is not a
// dict with shape, typestr and data.
inline std::string cuda_typestr(const char* op, const char* name, py::handle h) {
  const std::string n(name);
  py::object iface_obj = h.attr("__cuda_array_interface__");
  if (!py::isinstance<py::dict>(iface_obj))
    value_error(op, n + ".__cuda_array_interface__ is not a dict");
  py::dict iface = iface_obj;
  for (const char* key : {"shape", "typestr", "data"})
    if (!iface.contains(key)) value_error(op, n + ".__cuda_array_interface__ has no '" + key + "'");
  return py::str(iface["typestr"]);
}

// The rest of the interface of an array whose typestr was accepted, with
// `itemsize`-byte elements: shape, data, contiguity, stream.
inline CudaArray cuda_array_parse(const char* op, const char* name, py::handle h, int64_t itemsize) {
  const std::string n(name);
  py::dict iface = h.attr("__cuda_array_interface__");
  CudaArray a;
  int64_t bytes = itemsize;
  for (py::handle s : py::tuple(iface["shape"])) {
    int64_t extent = s.cast<int64_t>();
    if (extent < 0) value_error(op, n + " has a negative extent in its CUDA array interface");
    if (__builtin_mul_overflow(bytes, extent, &bytes))
      value_error(op, n + " has a shape whose size overflows 64 bits");
    a.shape.push_back(extent);
  }

  py::tuple data = iface["data"];
  if (data.size() != 2) value_error(op, n + ".__cuda_array_interface__['data'] must be (pointer, readonly)");
  a.data = reinterpret_cast<void*>(data[0].cast<std::uintptr_t>());
  a.readonly = data[1].cast<bool>();
  if (a.data == nullptr && a.size() > 0) value_error(op, n + " has a null data pointer");

  if (iface.contains("mask") && !iface["mask"].is_none())
    value_error(op, n + " is a masked CUDA array, which is not supported");

  // C-contiguous: strides absent/None, or equal to the packed ones wherever
  // the extent is > 1 (a stride over a single element is never used).
  if (iface.contains("strides") && !iface["strides"].is_none() && a.size() > 0) {
    py::tuple strides = iface["strides"];
    if (strides.size() != a.shape.size())
      value_error(op, n + ".__cuda_array_interface__ has " + std::to_string(strides.size()) +
                          " strides for " + std::to_string(a.shape.size()) + " dimensions");
    int64_t expect = itemsize;
    for (size_t i = a.shape.size(); i-- > 0;) {
      if (a.shape[i] > 1 && strides[i].cast<int64_t>() != expect)
        value_error(op, n + " must be a C-contiguous CUDA array (make a contiguous copy first)");
      expect *= a.shape[i];
    }
  }

  if (iface.contains("stream") && !iface["stream"].is_none()) {
    auto s = iface["stream"].cast<std::uintptr_t>();
    if (s == 0) value_error(op, n + ".__cuda_array_interface__['stream'] is 0, which the interface disallows");
    a.stream = s;
  }
  return a;
}

// Describes a float32/float64 C-contiguous CUDA array; raises TypeError for
// another dtype and ValueError for strided or masked arrays or a bad interface.
inline CudaArray cuda_array(const char* op, const char* name, py::handle h) {
  const std::string n(name), typestr = cuda_typestr(op, name, h);
  DType dtype = DType::f32;
  if (typestr == "<f8") dtype = DType::f64;
  else if (typestr != "<f4")
    type_error(op, n + " must be float32 or float64, got a CUDA array of typestr '" + typestr + "'");
  CudaArray a = cuda_array_parse(op, name, h, dtype == DType::f32 ? 4 : 8);
  a.dtype = dtype;
  return a;
}

// A C-contiguous CUDA array of one non-float element type: `typestr` "<i8"
// (int64 indices and labels) or "|b1" (bool masks). TypeError for another type,
// with "`name` must be `what`, got ..." (data.dtype is then meaningless).
inline CudaArray cuda_array_of(const char* op, const char* name, py::handle h, const std::string& typestr,
                               const char* what) {
  const std::string got = cuda_typestr(op, name, h);
  if (got != typestr)
    type_error(op, std::string(name) + " must be " + what + ", got a CUDA array of typestr '" + got + "'");
  return cuda_array_parse(op, name, h, typestr == "|b1" ? 1 : 8);
}

// An array the op writes: also must not be read-only.
inline CudaArray cuda_output(const char* op, const char* name, py::handle h) {
  CudaArray a = cuda_array(op, name, h);
  if (a.readonly) value_error(op, std::string(name) + " is written in place and must be writeable");
  return a;
}

// Every array of a call on the same kind of device: TypeError otherwise.
inline void check_same_device(const char* op, const char* name, py::handle h, bool cuda, const char* first) {
  if (is_cuda_array(h) != cuda)
    type_error(op, std::string(name) + (cuda ? " is not a CUDA array but " : " is a CUDA array but ") + first +
                       (cuda ? " is" : " is not") + ": the arrays of one call must be on the same device");
}

// True when the call's arrays are CUDA arrays: the first one that is not None
// decides, the others that are not None (optional arguments) must agree;
// TypeError without a CUDA build.
inline bool on_gpu(const char* op, std::initializer_list<std::pair<const char*, py::handle>> arrays) {
  const std::pair<const char*, py::handle>* first = nullptr;
  for (const auto& a : arrays)
    if (!a.second.is_none()) {
      first = &a;
      break;
    }
  if (!first) return false;
  const bool cuda = is_cuda_array(first->second);
  for (auto [name, h] : arrays)
    if (!h.is_none()) check_same_device(op, name, h, cuda, first->first);
#ifndef DK_WITH_CUDA
  if (cuda) type_error(op, std::string(first->first) + " is a CUDA array, but deepkern was built without CUDA");
#endif
  return cuda;
}

inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// The same shape check as common.h's check_shape, on a shape (CPU and GPU arguments alike).
inline void check_shape(const char* op, const char* name, const std::vector<int64_t>& got,
                        const std::vector<int64_t>& want) {
  if (got != want) value_error(op, std::string(name) + " must have shape " + shape_str(want) + ", got " + shape_str(got));
}

// A CUDA array the op reads, of dtype `want`: the CUDA twin of common.h's input().
inline CudaArray cuda_input(const char* op, const char* name, py::handle h, DType want) {
  CudaArray a = cuda_array(op, name, h);
  if (a.dtype != want)
    type_error(op, std::string(name) + " has dtype " + (a.dtype == DType::f32 ? "float32" : "float64") +
                       ", expected " + (want == DType::f32 ? "float32" : "float64") + " like the other arguments");
  return a;
}

// A CUDA array the op writes, of dtype `want`: the CUDA twin of common.h's output().
inline CudaArray cuda_output(const char* op, const char* name, py::handle h, DType want) {
  CudaArray a = cuda_input(op, name, h, want);
  if (a.readonly) value_error(op, std::string(name) + " is written in place and must be writeable");
  return a;
}

}  // namespace dk::bind
