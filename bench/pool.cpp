// Google Benchmark: the pooling kernels at the shape, (32, 64, 56, 56)
// float32, with the instruction set dispatch picks (DEEPKERN_ISA lowers it) and
// deepkern's thread count. Bytes per iteration = input read + outputs written
// (+ int64 indices for max), so bytes_per_second compares with a STREAM triad.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/params.h"
#include "cpu/pool.h"

namespace {

constexpr int64_t kN = 32, kC = 64, kH = 56, kW = 56;

dk::PoolParams window(int64_t k, int64_t s, int64_t pad) {
  dk::PoolParams p;
  p.planes = kN * kC;
  p.ih = kH;
  p.iw = kW;
  p.kh = p.kw = k;
  p.sh = p.sw = s;
  p.ph = p.pw = pad;
  p.oh = (kH + 2 * pad - k) / s + 1;
  p.ow = (kW + 2 * pad - k) / s + 1;
  return p;
}

std::vector<float> random_input(int64_t n) {
  std::vector<float> v(n);
  std::mt19937 gen(0);
  std::normal_distribution<float> dist;
  for (auto& e : v) e = dist(gen);
  return v;
}

// Args: kernel, stride, padding.
void BM_max_pool2d(benchmark::State& st) {
  dk::PoolParams p = window(st.range(0), st.range(1), st.range(2));
  std::vector<float> x = random_input(p.planes * p.ih * p.iw), y(p.planes * p.oh * p.ow);
  std::vector<int64_t> idx(y.size());
  for (auto _ : st) {
    dk::cpu::pool_kernels<float>().max_pool2d(p, x.data(), y.data(), idx.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * int64_t(x.size() * 4 + y.size() * 12));
}

void BM_max_pool2d_backward(benchmark::State& st) {
  dk::PoolParams p = window(st.range(0), st.range(1), st.range(2));
  std::vector<float> x = random_input(p.planes * p.ih * p.iw), y(p.planes * p.oh * p.ow), dx(x.size());
  std::vector<int64_t> idx(y.size());
  dk::cpu::pool_kernels<float>().max_pool2d(p, x.data(), y.data(), idx.data());
  for (auto _ : st) {
    benchmark::DoNotOptimize(dk::cpu::pool_kernels<float>().max_pool2d_backward(p, y.data(), idx.data(), dx.data()));
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * int64_t(dx.size() * 4 + y.size() * 12));
}

void BM_avg_pool2d(benchmark::State& st) {
  dk::PoolParams p = window(st.range(0), st.range(1), st.range(2));
  std::vector<float> x = random_input(p.planes * p.ih * p.iw), y(p.planes * p.oh * p.ow);
  for (auto _ : st) {
    dk::cpu::pool_kernels<float>().avg_pool2d(p, x.data(), y.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * int64_t((x.size() + y.size()) * 4));
}

void BM_avg_pool2d_backward(benchmark::State& st) {
  dk::PoolParams p = window(st.range(0), st.range(1), st.range(2));
  std::vector<float> dy = random_input(p.planes * p.oh * p.ow), dx(p.planes * p.ih * p.iw);
  for (auto _ : st) {
    dk::cpu::pool_kernels<float>().avg_pool2d_backward(p, dy.data(), dx.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * int64_t((dx.size() + dy.size()) * 4));
}

void BM_global_avg_pool2d(benchmark::State& st) {
  std::vector<float> x = random_input(kN * kC * kH * kW), y(kN * kC);
  for (auto _ : st) {
    dk::cpu::pool_kernels<float>().global_avg_pool2d(kN * kC, kH * kW, x.data(), y.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * int64_t((x.size() + y.size()) * 4));
}

}  // namespace

BENCHMARK(BM_max_pool2d)->Args({2, 2, 0})->Args({3, 2, 1})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_max_pool2d_backward)->Args({2, 2, 0})->Args({3, 2, 1})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_avg_pool2d)->Args({2, 2, 0})->Args({3, 2, 1})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_avg_pool2d_backward)->Args({2, 2, 0})->Args({3, 2, 1})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_global_avg_pool2d)->UseRealTime()->Unit(benchmark::kMillisecond);
