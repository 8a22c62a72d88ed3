// Device queries. Plain C++ declarations, so code built without nvcc can call them.
#pragma once
#include <string>

namespace dk::cuda {

// Number of usable GPUs; 0 when there is no driver or no device (never throws).
int device_count();
// The device's name, e.g. "NVIDIA H100 80GB HBM3"; throws std::invalid_argument for a bad index.
std::string device_name(int device);
// The CUDA runtime version this module was built against, e.g. 13000.
int runtime_version();

}  // namespace dk::cuda
