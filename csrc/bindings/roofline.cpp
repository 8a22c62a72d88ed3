// The machine's measured limits, for the benchmarks' "% of peak" columns.
#include "bindings/common.h"
#include "core/cpu_features.h"
#include "cpu/roofline.h"

namespace dk::bind {

void bind_roofline(py::module_& m) {
  m.def(
      "triad_gbps",
      [](int64_t n, int threads, int repeats) {
        if (n < 1) value_error("triad_gbps", "n must be >= 1, got " + std::to_string(n));
        if (threads < 0) value_error("triad_gbps", "threads must be >= 0, got " + std::to_string(threads));
        if (threads == 0) threads = get_num_threads();
        py::gil_scoped_release nogil;
        return cpu::roofline_kernels<float>().triad_gbps(n, threads, repeats);
      },
      py::arg("n") = int64_t(1) << 25, py::arg("threads") = 0, py::arg("repeats") = 10,
      "STREAM triad bandwidth in GB/s over three float32 arrays of n elements (threads 0: all).");
}

}  // namespace dk::bind
