// deepkern.cuda's native side. Built without CUDA, it says so instead of failing.
#include "bindings/common.h"

#ifdef DK_WITH_CUDA
#include "cuda/device.h"
#endif

namespace dk::bind {

void bind_cuda(py::module_& m) {
#ifdef DK_WITH_CUDA
  m.attr("cuda_built") = true;
  m.attr("cuda_runtime_version") = dk::cuda::runtime_version();
  m.def("cuda_device_count", &dk::cuda::device_count);
  m.def("cuda_device_name", &dk::cuda::device_name, py::arg("device") = 0);
#else
  m.attr("cuda_built") = false;
  m.attr("cuda_runtime_version") = 0;
  m.def("cuda_device_count", [] { return 0; });
  m.def("cuda_device_name", [](int device) -> std::string {
    throw std::runtime_error("[cuda] deepkern was built without CUDA (DEEPKERN_CUDA=OFF or no nvcc)");
  }, py::arg("device") = 0);
#endif
}

}  // namespace dk::bind
