// Compiled once, with baseline flags: picks each family's kernels for the CPU.
#include "core/cpu_features.h"
#include "cpu/activation.h"
#include "cpu/batchnorm.h"
#include "cpu/conv.h"
#include "cpu/dropout.h"
#include "cpu/gemm.h"
#include "cpu/loss.h"
#include "cpu/optim.h"
#include "cpu/pool.h"
#include "cpu/rnn.h"
#include "cpu/roofline.h"

namespace dk::cpu {

#if defined(DK_HAVE_AVX512)
#define DK_CASE_AVX512(name) case Isa::avx512: return avx512::name##_table<T>();
#else
#define DK_CASE_AVX512(name)
#endif
#if defined(DK_HAVE_AVX2)
#define DK_CASE_AVX2(name) case Isa::avx2: return avx2::name##_table<T>();
#else
#define DK_CASE_AVX2(name)
#endif

#define DK_DISPATCH(Table, name)                                         \
  template <class T>                                                     \
  static const Table<T>& name##_pick() {                                 \
    switch (active_isa()) {                                              \
      DK_CASE_AVX512(name)                                               \
      DK_CASE_AVX2(name)                                                 \
      default: return generic::name##_table<T>();                        \
    }                                                                    \
  }                                                                      \
  template <class T>                                                     \
  const Table<T>& name##_kernels() {                                     \
    static const Table<T>& table = name##_pick<T>();                     \
    return table;                                                        \
  }                                                                      \
  template const Table<float>& name##_kernels<float>();                  \
  template const Table<double>& name##_kernels<double>();

DK_DISPATCH(GemmKernels, gemm)
DK_DISPATCH(ActivationKernels, activation)
DK_DISPATCH(LossKernels, loss)
DK_DISPATCH(OptimKernels, optim)
DK_DISPATCH(PoolKernels, pool)
DK_DISPATCH(BatchNormKernels, batchnorm)
DK_DISPATCH(ConvKernels, conv)
DK_DISPATCH(DropoutKernels, dropout)
DK_DISPATCH(RnnKernels, rnn)
DK_DISPATCH(RooflineKernels, roofline)

}  // namespace dk::cpu
