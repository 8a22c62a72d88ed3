// Build and machine facts, threads.
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/common.h"
#include "core/cpu_features.h"

#ifndef DK_VERSION
#define DK_VERSION "0.0.0"
#endif

namespace dk::bind {

void bind_core(py::module_& m) {
  active_isa();  // a bad DEEPKERN_ISA fails the import, not the first kernel call
  m.attr("__version__") = DK_VERSION;
  m.def("isa", [] { return std::string(isa_name(active_isa())); },
        "The instruction set the CPU kernels run with (DEEPKERN_ISA lowers it).");
  m.def("best_isa", [] { return std::string(isa_name(best_isa())); },
        "The best instruction set this CPU and build support.");
  m.def("compiled_isas", [] {
        std::vector<std::string> names;
        for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512})
          if (isa_compiled(isa)) names.push_back(isa_name(isa));
        return names;
      }, "The instruction-set variants this build compiled, lowest first.");
  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
}

}  // namespace dk::bind
