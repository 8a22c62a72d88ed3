// Counter-based random numbers: number i of stream `seed` is a pure function of
// (seed, i). Any thread, on either device, computes any element's number without
// shared generator state, so a dropout mask is the same for every thread count,
// on the CPU and the GPU, and is reproduced from its seed alone.
#pragma once
#include <cstdint>

#include "core/dk.h"

namespace dk {

// SplitMix64 (Steele, Lea, Flood: "Fast splittable pseudorandom number
// generators", 2014): the finaliser of seed + (i + 1) * golden gamma. It passes
// BigCrush as a sequence; dropout needs far less than that.
DK_HOST_DEVICE uint64_t random_bits(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// round(p * 2^32): element i is kept when the top 32 bits of its number are at
// least this, i.e. with probability 1 - p (to 2^-32). p == 1 gives 2^32: none kept.
DK_HOST_DEVICE uint64_t dropout_threshold(double p) { return static_cast<uint64_t>(p * 4294967296.0 + 0.5); }

DK_HOST_DEVICE bool dropout_keep(uint64_t seed, uint64_t i, uint64_t threshold) {
  return (random_bits(seed, i) >> 32) >= threshold;
}

// The survivors' scale 1 / (1 - p); 0 when p == 1 (nothing survives), as torch.
DK_HOST_DEVICE double dropout_scale(double p) { return p < 1.0 ? 1.0 / (1.0 - p) : 0.0; }

// A kept element scaled, a dropped one times 0 (so a dropped NaN stays NaN, as torch).
template <class T>
DK_HOST_DEVICE T dropout_apply(T x, bool keep, T scale) {
  return x * (keep ? scale : T(0));
}

}  // namespace dk
