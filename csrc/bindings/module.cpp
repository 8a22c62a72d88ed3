// deepkern._C: one module, one bind_<family> per file in this folder.
#include "bindings/common.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "deepkern native kernels";
  dk::bind::bind_core(m);
  dk::bind::bind_cuda(m);
  dk::bind::bind_roofline(m);
#ifdef DK_FAMILY_gemm
  dk::bind::bind_gemm(m);
#endif
#ifdef DK_FAMILY_activation
  dk::bind::bind_activation(m);
#endif
#ifdef DK_FAMILY_loss
  dk::bind::bind_loss(m);
#endif
#ifdef DK_FAMILY_optim
  dk::bind::bind_optim(m);
#endif
}
