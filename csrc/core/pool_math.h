// Pooling window geometry and rules written once for both devices: which taps
// of a window fall inside the input, torch's average-pool divisor, and torch's
// max-pool replacement rule. The CPU kernels and the CUDA kernels call these,
// so the CPU tests check the geometry the GPU runs.
#pragma once
#include <cstdint>

#include "core/dk.h"

namespace dk {

// The taps of one window along one axis that fall inside the input: `count`
// taps from input position `first`, `d` apart.
struct PoolTaps {
  int64_t first, count;
};

// Output position o of stride s, padding pad, kernel k, dilation d over an
// input of size `in`: its window starts at o * s - pad; taps in the padding
// (below 0 or at/after `in`) are dropped.
DK_HOST_DEVICE PoolTaps pool_taps(int64_t o, int64_t s, int64_t pad, int64_t k, int64_t d, int64_t in) {
  const int64_t start = o * s - pad;
  const int64_t skip = start < 0 ? (-start + d - 1) / d : 0;  // taps in the low padding
  int64_t end = 0;
  if (in - 1 - start >= 0) {
    end = (in - 1 - start) / d + 1;
    if (end > k) end = k;
  }
  const int64_t count = end - skip;
  return {start + skip * d, count > 0 ? count : 0};
}

// torch's avg_pool2d divisor of output o along one axis (the other axis' factor
// multiplies it): the window clipped to the padded input (count_include_pad),
// else the number of input elements it covers (taps.count).
DK_HOST_DEVICE int64_t pool_divisor(bool count_include_pad, int64_t o, int64_t s, int64_t pad, int64_t k,
                                    int64_t in, PoolTaps taps) {
  if (!count_include_pad) return taps.count;
  const int64_t start = o * s - pad, end = start + k < in + pad ? start + k : in + pad;
  return end - start;
}

// torch's max-pool rule: a later tap replaces the running maximum m when it is
// greater or NaN, so the result is the last NaN, else the first maximum.
template <class T>
DK_HOST_DEVICE bool pool_replaces(T v, T m) {
  return v > m || v != v;
}

}  // namespace dk
