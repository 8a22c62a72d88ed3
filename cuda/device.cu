#include <cuda_runtime.h>

#include <stdexcept>

#include "cuda/device.h"

namespace dk::cuda {

int device_count() {
  int n = 0;
  // No driver, or a driver without devices, is an error code here: it means
  // "not available", so it is swallowed and cleared rather than raised.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string device_name(int device) {
  int n = device_count();
  if (device < 0 || device >= n)
    throw std::invalid_argument("[cuda] device " + std::to_string(device) + " does not exist (" +
                                std::to_string(n) + " available)");
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess)
    throw std::runtime_error("[cuda] cannot read the properties of device " + std::to_string(device));
  return prop.name;
}

int runtime_version() { return CUDART_VERSION; }

}  // namespace dk::cuda
