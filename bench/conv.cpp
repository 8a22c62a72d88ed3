// Google Benchmark: the conv kernels at the seven shapes, float32, with
// the instruction set dispatch picks (DEEPKERN_ISA lowers it) and deepkern's
// thread count: forward, backward data and backward weight (with the bias
// gradient). The FLOPs counter is 2 * N * K * oH * oW * C/groups * R * S per
// pass whatever the algorithm (Winograd does fewer), so it reads as GFLOP/s
// against the FMA peak that bench/compare.py measures.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/params.h"
#include "cpu/conv.h"

namespace {

// (N, C, H, W), (K, R), stride, padding, groups: LeNet c1, c2, ResNet 3x3 and
// stride 2, VGG 3x3, 1x1, depthwise 3x3.
constexpr int64_t kShapes[7][9] = {
    {64, 1, 28, 28, 6, 5, 1, 2, 1},       {64, 6, 14, 14, 16, 5, 1, 0, 1},  {32, 64, 32, 32, 64, 3, 1, 1, 1},
    {32, 64, 32, 32, 128, 3, 2, 1, 1},    {8, 256, 28, 28, 256, 3, 1, 1, 1}, {32, 256, 14, 14, 64, 1, 1, 0, 1},
    {32, 128, 28, 28, 128, 3, 1, 1, 128},
};

dk::ConvParams shape(int64_t i) {
  const int64_t* s = kShapes[i];
  dk::ConvParams p;
  p.n = s[0], p.c = s[1], p.h = s[2], p.w = s[3], p.k = s[4], p.r = p.s = s[5], p.groups = s[8];
  p.sh = p.sw = s[6], p.ph = p.pw = s[7];
  p.oh = (p.h + 2 * p.ph - p.r) / p.sh + 1;
  p.ow = (p.w + 2 * p.pw - p.s) / p.sw + 1;
  return p;
}

std::vector<float> random_input(int64_t n) {
  std::vector<float> v(n);
  std::mt19937 gen(0);
  std::normal_distribution<float> dist;
  for (auto& e : v) e = dist(gen);
  return v;
}

struct Arrays {
  std::vector<float> x, w, b, y;
  explicit Arrays(const dk::ConvParams& p)
      : x(random_input(p.n * p.c * p.h * p.w)), w(random_input(p.k * p.c / p.groups * p.r * p.s)),
        b(random_input(p.k)), y(random_input(p.n * p.k * p.oh * p.ow)) {}
};

void count(benchmark::State& st, const dk::ConvParams& p) {
  const double flops = 2.0 * p.n * p.k * p.oh * p.ow * (p.c / p.groups) * p.r * p.s;
  st.counters["FLOPS"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

// Arg: the shape's index in kShapes.
void BM_conv2d_forward(benchmark::State& st) {
  const dk::ConvParams p = shape(st.range(0));
  Arrays a(p);
  for (auto _ : st) {
    dk::cpu::conv_kernels<float>().forward(p, a.x.data(), a.w.data(), a.b.data(), a.y.data());
    benchmark::ClobberMemory();
  }
  count(st, p);
}

void BM_conv2d_backward_data(benchmark::State& st) {
  const dk::ConvParams p = shape(st.range(0));
  Arrays a(p);
  std::vector<float> dx(a.x.size());
  for (auto _ : st) {
    dk::cpu::conv_kernels<float>().backward_data(p, a.y.data(), a.w.data(), dx.data());
    benchmark::ClobberMemory();
  }
  count(st, p);
}

void BM_conv2d_backward_weight(benchmark::State& st) {
  const dk::ConvParams p = shape(st.range(0));
  Arrays a(p);
  std::vector<float> dw(a.w.size()), db(p.k);
  for (auto _ : st) {
    dk::cpu::conv_kernels<float>().backward_weight(p, a.y.data(), a.x.data(), dw.data(), db.data());
    benchmark::ClobberMemory();
  }
  count(st, p);
}

}  // namespace

BENCHMARK(BM_conv2d_forward)->DenseRange(0, 6)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_conv2d_backward_data)->DenseRange(0, 6)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_conv2d_backward_weight)->DenseRange(0, 6)->UseRealTime()->Unit(benchmark::kMillisecond);
