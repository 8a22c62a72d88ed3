// Dropout: x (n) -> y (n) and a byte mask (n), and the backward dy -> dx.
//
// The keep decision of element i is core/random.h's counter-based hash of
// (seed, i): no generator state, so threads split the elements freely and the
// mask depends only on the seed (same bits for any thread count, and on the GPU).
// The hash (three 64-bit multiplies) vectorises with AVX-512DQ's vpmullq; a
// stream of 4M float32 elements runs at memory speed either way.
#include "cpu/dropout.h"

#include "core/random.h"
#include "cpu/parallel.h"

namespace dk::cpu::DK_ISA_NS {

template <class T>
static void forward(const DropoutParams& p, const T* x, T* y, uint8_t* mask) {
  const uint64_t threshold = dropout_threshold(p.p);
  const T scale = T(dropout_scale(p.p));
  for_each_range(1, &p.n, 64, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const bool keep = dropout_keep(p.seed, static_cast<uint64_t>(i), threshold);
      mask[i] = keep;
      y[i] = dropout_apply(x[i], keep, scale);
    }
  });
}

template <class T>
static void backward(const DropoutParams& p, const T* dy, const uint8_t* mask, T* dx) {
  const T scale = T(dropout_scale(p.p));
  for_each_range(1, &p.n, 64, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = dropout_apply(dy[i], mask[i] != 0, scale);
  });
}

DK_DEFINE_TABLE(DropoutKernels, dropout, forward<T>, backward<T>)

}  // namespace dk::cpu::DK_ISA_NS
