// Which instruction set the CPU kernels run with, and the OpenMP thread count.
#pragma once

namespace dk {

enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
// Whether this build compiled the variant (CMake's DEEPKERN_ISAS may leave some out;
// generic always is).
bool isa_compiled(Isa isa);
// The best instruction set this CPU supports and this build compiled.
Isa best_isa();
// The one the kernels use: best_isa(), lowered by DEEPKERN_ISA=avx2|generic (to
// the next lower compiled variant when the asked one was not compiled).
// Read once, on first use. Throws std::invalid_argument for an unknown name.
Isa active_isa();

// Kernels open their parallel regions with num_threads(get_num_threads()).
int get_num_threads();
void set_num_threads(int n);

}  // namespace dk
