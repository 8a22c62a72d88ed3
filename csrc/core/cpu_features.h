// Which instruction set the CPU kernels run with, and the OpenMP thread count.
#pragma once

namespace dk {

enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
// The best instruction set this CPU supports and this build compiled.
Isa best_isa();
// The one the kernels use: best_isa(), lowered by DEEPKERN_ISA=avx2|generic.
// Read once, on first use. Throws std::invalid_argument for an unknown name.
Isa active_isa();

// Kernels open their parallel regions with num_threads(get_num_threads()).
int get_num_threads();
void set_num_threads(int n);

}  // namespace dk
