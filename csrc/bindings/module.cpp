// deepkern._C: one module, one bind_<family> per file in this folder.
#include "bindings/common.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "deepkern native kernels";
  dk::bind::bind_core(m);
  dk::bind::bind_cuda(m);
  dk::bind::bind_roofline(m);
  dk::bind::bind_gemm(m);
  dk::bind::bind_activation(m);
  dk::bind::bind_loss(m);
  dk::bind::bind_optim(m);
  dk::bind::bind_pool(m);
  dk::bind::bind_batchnorm(m);
  dk::bind::bind_conv(m);
  dk::bind::bind_rnn(m);
  dk::bind::bind_dropout(m);
}
