#include "core/cpu_features.h"

#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace dk {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

Isa best_isa() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
#if defined(DK_HAVE_AVX512)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return Isa::avx512;
#endif
#if defined(DK_HAVE_AVX2)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
#endif
  return Isa::generic;
}

bool isa_compiled(Isa isa) {
  switch (isa) {
#if defined(DK_HAVE_AVX512)
    case Isa::avx512: return true;
#endif
#if defined(DK_HAVE_AVX2)
    case Isa::avx2: return true;
#endif
    case Isa::generic: return true;
    default: return false;
  }
}

static Isa read_isa() {
  Isa best = best_isa();
  const char* env = std::getenv("DEEPKERN_ISA");
  if (env == nullptr || *env == '\0') return best;
  std::string want(env);
  Isa asked;
  if (want == "avx512") asked = Isa::avx512;
  else if (want == "avx2") asked = Isa::avx2;
  else if (want == "generic") asked = Isa::generic;
  else
    throw std::invalid_argument("DEEPKERN_ISA must be avx512, avx2 or generic, got '" + want + "'");
  // Forcing a path the CPU cannot run would crash: never go above the best. A
  // variant this build left out runs (and is reported as) the next lower one it has.
  if (static_cast<int>(asked) > static_cast<int>(best)) asked = best;
  while (!isa_compiled(asked)) asked = static_cast<Isa>(static_cast<int>(asked) - 1);
  return asked;
}

Isa active_isa() {
  static const Isa isa = read_isa();
  return isa;
}

// One process-wide count rather than OpenMP's per-thread setting, so a call
// from any Python thread sees what set_num_threads chose on another.
static std::atomic<int> num_threads{0};

int get_num_threads() {
  int n = num_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_max_threads();
}

void set_num_threads(int n) {
  // Far more threads than cores only costs, and past some count thread creation
  // fails inside OpenMP, which aborts: refuse before that.
  if (n < 1 || n > 1024)
    throw std::invalid_argument("[set_num_threads] n must be between 1 and 1024, got " + std::to_string(n));
  num_threads.store(n, std::memory_order_relaxed);
}

}  // namespace dk
