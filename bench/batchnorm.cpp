// Google Benchmark: batch norm at the shape, (32, 64, 56, 56) float32,
// and an (N, C) batch; training forward, backward, and eval forward. Bytes per
// iteration count each array the kernel must touch once (x read and y written
// for the forward; dy and x read, dx written for the backward).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/params.h"
#include "cpu/batchnorm.h"

namespace {

struct Batch {
  dk::BatchNormParams p;
  std::vector<float> x, y, dy, dx, w, b, rm, rv, mean, invstd, dw, db;
  Batch(int64_t n, int64_t c, int64_t inner)
      : x(n * c * inner), y(x.size()), dy(x.size()), dx(x.size()), w(c, 1.f), b(c, 0.f), rm(c, 0.f),
        rv(c, 1.f), mean(c), invstd(c), dw(c), db(c) {
    p.n = n;
    p.c = c;
    p.inner = inner;
    std::mt19937 gen(0);
    std::normal_distribution<float> dist;
    for (auto& e : x) e = dist(gen);
    for (auto& e : dy) e = dist(gen);
  }
  void forward(bool training) {
    p.training = training;
    dk::cpu::batchnorm_kernels<float>().forward(p, x.data(), w.data(), b.data(), rm.data(), rv.data(), y.data(),
                                                mean.data(), invstd.data());
  }
  void backward() {
    dk::cpu::batchnorm_kernels<float>().backward(p, dy.data(), x.data(), w.data(), mean.data(), invstd.data(),
                                                 dx.data(), dw.data(), db.data());
  }
};

// Args: n, c, inner.
void BM_batch_norm_train(benchmark::State& st) {
  Batch bt(st.range(0), st.range(1), st.range(2));
  for (auto _ : st) {
    bt.forward(true);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * int64_t(bt.x.size() * 8));
}

void BM_batch_norm_backward(benchmark::State& st) {
  Batch bt(st.range(0), st.range(1), st.range(2));
  bt.forward(true);
  for (auto _ : st) {
    bt.backward();
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * int64_t(bt.x.size() * 12));
}

void BM_batch_norm_train_forward_backward(benchmark::State& st) {
  Batch bt(st.range(0), st.range(1), st.range(2));
  for (auto _ : st) {
    bt.forward(true);
    bt.backward();
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * int64_t(bt.x.size() * 20));
}

void BM_batch_norm_eval(benchmark::State& st) {
  Batch bt(st.range(0), st.range(1), st.range(2));
  for (auto _ : st) {
    bt.forward(false);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * int64_t(bt.x.size() * 8));
}

}  // namespace

#define DK_BN_SHAPES ->Args({32, 64, 3136})->Args({256, 512, 1})->UseRealTime()->Unit(benchmark::kMillisecond)
BENCHMARK(BM_batch_norm_train) DK_BN_SHAPES;
BENCHMARK(BM_batch_norm_backward) DK_BN_SHAPES;
BENCHMARK(BM_batch_norm_train_forward_backward) DK_BN_SHAPES;
BENCHMARK(BM_batch_norm_eval) DK_BN_SHAPES;
