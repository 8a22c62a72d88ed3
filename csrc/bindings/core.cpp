// Build and machine facts, threads, and the host memory of ops.py's outputs.
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "core/cpu_features.h"
#include "cpu/gemm.h"

#ifndef DK_VERSION
#define DK_VERSION "0.0.0"
#endif

namespace dk::bind {
namespace {

// Blocks of host memory for large output arrays, kept when their array dies
// and handed to the next array of the same size. Training calls the same ops
// on the same shapes every step; from the allocator, an output of a few MiB
// came back as fresh pages whenever glibc had returned the memory to the
// kernel in between (it trims its heap as it likes, and unmaps large blocks),
// and the kernels writing it paid the page faults: 2-layer LSTM (32, 512, 512)
// T=50 forward + backward, 2 Zen 5 cores, beside torch in one process: 5 MiB
// of faults and 5 ms of system time a call, 1.04x faster with its outputs
// reused. Blocks come from cpu::aligned_bytes (64-byte aligned; from 4 MiB,
// huge pages) and stay in this process; at most kMaxKeptBytes of them wait for
// reuse (the rest go back to the allocator), and release() hands back all of
// those. A library beside deepkern in the process no longer gets the heap
// memory deepkern's outputs freed: torch's LSTM at (32, 512, 512), in
// bench/compare.py's process, took 5-10% longer than alone, where beside
// np.empty outputs it took as long or less; blocks mapped straight from the
// kernel instead of malloc'd made no difference to that.
class HostCache {
 public:
  static constexpr size_t kMaxKeptBytes = size_t(1) << 30;

  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (auto it = free_.find(bytes); it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        kept_ -= bytes;
        return p;
      }
    }
    void* p = cpu::aligned_bytes(bytes);
    if (!p) {  // the kept blocks first, then fail
      release();
      p = cpu::aligned_bytes(bytes);
      if (!p) throw std::bad_alloc();
    }
    return p;
  }
  void give_back(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (kept_ + bytes > kMaxKeptBytes) return std::free(p);
    free_.emplace(bytes, p);
    kept_ += bytes;
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& block : free_) std::free(block.second);
    free_.clear();
    kept_ = 0;
  }
  size_t kept() {
    std::lock_guard<std::mutex> lock(mutex_);
    return kept_;
  }

 private:
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;  // by size
  size_t kept_ = 0;
};

// Never destroyed: arrays may outlive the module's static objects at exit.
HostCache& host_cache() {
  static HostCache* cache = new HostCache;
  return *cache;
}

struct HostBlock {
  void* data;
  size_t bytes;
};

}  // namespace

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
  m.def("host_buffer", [](size_t nbytes) {
        // Whole pages, so that arrays of nearly the same size share blocks.
        const size_t bytes = (std::max<size_t>(nbytes, 1) + 4095) / 4096 * 4096;
        auto* block = new HostBlock{host_cache().take(bytes), bytes};
        py::capsule owner(block, [](void* b) {
          auto* blk = static_cast<HostBlock*>(b);
          host_cache().give_back(blk->data, blk->bytes);
          delete blk;
        });
        return py::array(py::dtype::of<uint8_t>(), {static_cast<py::ssize_t>(nbytes)}, {py::ssize_t(1)},
                         static_cast<uint8_t*>(block->data), owner);
      }, py::arg("nbytes"),
      "nbytes of uninitialised host memory as a uint8 array, from blocks kept between arrays.");
  m.def("host_cache_bytes", [] { return host_cache().kept(); }, "Bytes of freed blocks kept for reuse.");
  m.def("release_host_cache", [] { host_cache().release(); }, "Hand the kept blocks back to the allocator.");
}

}  // namespace dk::bind
