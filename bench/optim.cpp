// Google Benchmark: the fused optimizer steps and gradient utilities, float32,
// with the instruction set dispatch picks (DEEPKERN_ISA lowers it) and
// deepkern's thread count. Args: total elements, number of tensors (sizes drawn
// log-normal, like a model's mix of weight matrices and biases).
// bytes_per_second counts the bytes each algorithm must move (every array read
// once, every updated array written once), to compare with a STREAM triad
// (_C.triad_gbps; the step is in place, so no write-allocate traffic is hidden).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/params.h"
#include "cpu/optim.h"

namespace {

using dk::cpu::optim_kernels;

// `arrays` lists of `count` tensors holding `total` elements in all.
struct Lists {
  std::vector<int64_t> sizes;
  std::vector<std::vector<std::vector<float>>> data;  // [array][tensor][element]
  std::vector<std::vector<float*>> ptrs;

  Lists(int64_t total, int64_t count, int arrays) {
    std::mt19937 gen(0);
    std::lognormal_distribution<double> dist(0.0, 1.5);
    std::vector<double> w(count);
    for (auto& x : w) x = dist(gen);
    double sum = 0;
    for (double x : w) sum += x;
    int64_t used = 0;
    for (double x : w) used += sizes.emplace_back(std::max<int64_t>(1, int64_t(x / sum * double(total))));
    sizes[std::max_element(w.begin(), w.end()) - w.begin()] += total - used;
    std::normal_distribution<float> normal;
    data.resize(arrays);
    ptrs.resize(arrays);
    for (int a = 0; a < arrays; ++a)
      for (int64_t t = 0; t < count; ++t) {
        auto& v = data[a].emplace_back(sizes[t]);
        for (auto& e : v) e = a == 1 ? normal(gen) : std::fabs(normal(gen));  // array 1: grads
        ptrs[a].push_back(v.data());
      }
  }
  dk::cpu::TensorList<float> list() const {
    return {int64_t(sizes.size()), ptrs[0].data(), const_cast<const float* const*>(ptrs[1].data()), sizes.data()};
  }
  float* const* state(int a) const { return ptrs[a].data(); }
};

// Reads and writes, in arrays of elements: e.g. Adam reads 4 and writes 3.
void report(benchmark::State& st, int64_t total, int moved) {
  st.SetBytesProcessed(st.iterations() * total * moved * int64_t(sizeof(float)));
  st.counters["elements"] = double(total);
}

#define DK_STEP_BENCH(NAME, ARRAYS, MOVED, CALL)            \
  void BM_##NAME(benchmark::State& st) {                    \
    Lists l(st.range(0), st.range(1), ARRAYS);              \
    auto t = l.list();                                      \
    const auto& k = optim_kernels<float>();                 \
    for (auto _ : st) {                                     \
      CALL;                                                 \
      benchmark::ClobberMemory();                           \
    }                                                       \
    report(st, st.range(0), MOVED);                         \
  }

dk::SgdParams sgd_p() { return {0.01, 0.9, 0.0, 1e-4, false, false, false}; }
dk::AdagradParams adagrad_p() { return {0.01, 0.0, 0.0, 1e-10, 5, false}; }
dk::AdadeltaParams adadelta_p() { return {1.0, 0.9, 1e-6, 0.0, false}; }
dk::RmspropParams rmsprop_p(bool centered, double momentum) {
  return {0.01, 0.99, 1e-8, 0.0, momentum, centered, false};
}
dk::AdamParams adam_p(bool amsgrad, bool decoupled) {
  return {1e-3, 0.9, 0.999, 1e-8, 1e-2, 5, amsgrad, decoupled, false};
}
dk::AdamaxParams adamax_p() { return {2e-3, 0.9, 0.999, 1e-8, 0.0, 5, false}; }
dk::NadamParams nadam_p() { return {2e-3, 0.9, 0.999, 1e-8, 0.0, 4e-3, 0.05, 5, false, false}; }

DK_STEP_BENCH(sgd_momentum, 3, 5, k.sgd(sgd_p(), t, l.state(2)))
DK_STEP_BENCH(adagrad, 3, 5, k.adagrad(adagrad_p(), t, l.state(2)))
DK_STEP_BENCH(adadelta, 4, 7, k.adadelta(adadelta_p(), t, l.state(2), l.state(3)))
DK_STEP_BENCH(rmsprop, 3, 5, k.rmsprop(rmsprop_p(false, 0.0), t, l.state(2), nullptr, nullptr))
DK_STEP_BENCH(rmsprop_centered_momentum, 5, 9, k.rmsprop(rmsprop_p(true, 0.9), t, l.state(2), l.state(3), l.state(4)))
DK_STEP_BENCH(adam, 4, 7, k.adam(adam_p(false, false), t, l.state(2), l.state(3), nullptr))
DK_STEP_BENCH(adamw, 4, 7, k.adam(adam_p(false, true), t, l.state(2), l.state(3), nullptr))
DK_STEP_BENCH(adam_amsgrad, 5, 9, k.adam(adam_p(true, false), t, l.state(2), l.state(3), l.state(4)))
DK_STEP_BENCH(adamax, 4, 7, k.adamax(adamax_p(), t, l.state(2), l.state(3)))
DK_STEP_BENCH(nadam, 4, 7, k.nadam(nadam_p(), t, l.state(2), l.state(3)))
// The non-finite pre-pass reads the grads once; the norm reads them once (the
// scaling pass, when it runs, reads and writes them once more); clamping reads and writes.
DK_STEP_BENCH(all_finite, 2, 1, benchmark::DoNotOptimize(k.all_finite({t.count, t.grads, t.sizes})))
DK_STEP_BENCH(grad_norm, 2, 1,
              benchmark::DoNotOptimize(k.clip_grad_norm({2.0, -1.0, true}, {t.count, l.state(1), t.sizes})))
DK_STEP_BENCH(clip_grad_value, 2, 2, k.clip_grad_value(1e9f, {t.count, l.state(1), t.sizes}))

void sizes(benchmark::internal::Benchmark* b) {
  b->Args({50'000, 1})->Args({100'000, 1})->Args({100'000, 20})->Args({10'000'000, 1})->Args({10'000'000, 200});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK(BM_sgd_momentum)->Apply(sizes);
BENCHMARK(BM_adagrad)->Apply(sizes);
BENCHMARK(BM_adadelta)->Apply(sizes);
BENCHMARK(BM_rmsprop)->Apply(sizes);
BENCHMARK(BM_rmsprop_centered_momentum)->Apply(sizes);
BENCHMARK(BM_adam)->Apply(sizes);
BENCHMARK(BM_adamw)->Apply(sizes);
BENCHMARK(BM_adam_amsgrad)->Apply(sizes);
BENCHMARK(BM_adamax)->Apply(sizes);
BENCHMARK(BM_nadam)->Apply(sizes);
BENCHMARK(BM_all_finite)->Apply(sizes);
BENCHMARK(BM_grad_norm)->Apply(sizes);
BENCHMARK(BM_clip_grad_value)->Apply(sizes);

}  // namespace
