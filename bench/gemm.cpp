// Google Benchmark: the GEMM engine with the instruction set dispatch picks
// (DEEPKERN_ISA lowers it) and deepkern's thread count (OMP_NUM_THREADS).
// Args: M, N, K. Counters: GFLOP/s (2 M N K per call) and pct_peak, the share
// of the FMA throughput measured on this machine with the same thread count
// (GemmKernels::fma_peak_gflops), so a number reads against the machine's
// limit, not against another library. bench/compare.py times the same shapes
// against numpy and PyTorch.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "core/params.h"
#include "cpu/gemm.h"

namespace {

using dk::cpu::gemm_kernels;

template <class T>
std::vector<T> random_vector(int64_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<T> normal;
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal(gen);
  return v;
}

template <class T>
double peak_gflops() {
  static const double peak = gemm_kernels<T>().fma_peak_gflops(dk::get_num_threads(), 0.3);
  return peak;
}

// Times the loop itself, so the counters are plain numbers (a Google Benchmark
// rate counter would print the percentage "per second").
template <class T, class F>
void run(benchmark::State& st, double flops_per_call, F&& call) {
  double seconds = 0;
  for (auto _ : st) {
    auto t0 = std::chrono::steady_clock::now();
    call();
    benchmark::ClobberMemory();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  double gflops = flops_per_call * double(st.iterations()) / seconds / 1e9;
  st.counters["GFLOP/s"] = gflops;
  st.counters["pct_peak"] = 100.0 * gflops / peak_gflops<T>();
}

// C = op(A) op(B), row-major, the operands as Python hands them over.
template <class T>
void BM_gemm(benchmark::State& st, bool trans_a, bool trans_b) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  auto a = random_vector<T>(m * k, 1), b = random_vector<T>(k * n, 2);
  std::vector<T> c(static_cast<size_t>(m * n));
  dk::GemmParams p;
  p.m = m, p.n = n, p.k = k;
  p.lda = trans_a ? m : k, p.ldb = trans_b ? k : n, p.ldc = n;
  p.trans_a = trans_a, p.trans_b = trans_b;
  run<T>(st, 2.0 * double(m) * double(n) * double(k), [&] { dk::cpu::gemm(p, a.data(), b.data(), c.data()); });
}

void BM_gemm_f32(benchmark::State& st, bool trans_a, bool trans_b) { BM_gemm<float>(st, trans_a, trans_b); }
void BM_gemm_f64(benchmark::State& st, bool trans_a, bool trans_b) { BM_gemm<double>(st, trans_a, trans_b); }

// linear's forward (y = x W^T + b) with W packed once, as an inference loop would.
void BM_linear_prepacked(benchmark::State& st) {
  const int64_t batch = st.range(0), out = st.range(1), in = st.range(2);
  auto x = random_vector<float>(batch * in, 1), w = random_vector<float>(out * in, 2), bias = random_vector<float>(out, 3);
  std::vector<float> y(static_cast<size_t>(batch * out));
  auto packed = dk::cpu::pack_b(in, out, w.data(), in, true);
  dk::GemmParams p;
  p.m = batch, p.n = out, p.k = in, p.lda = in, p.ldc = out;
  run<float>(st, 2.0 * double(batch) * double(out) * double(in),
             [&] { dk::cpu::gemm<float>(p, x.data(), packed, y.data(), {bias.data(), nullptr}); });
}

// The bias gradient: column sums of an (m, n) matrix, a memory-bound stream.
void BM_sum_rows(benchmark::State& st) {
  const int64_t m = st.range(0), n = st.range(1);
  auto x = random_vector<float>(m * n, 1);
  std::vector<float> out(static_cast<size_t>(n));
  for (auto _ : st) {
    dk::cpu::sum_rows(m, n, x.data(), out.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * m * n * int64_t(sizeof(float)));
}

void square(benchmark::internal::Benchmark* b) {
  for (int64_t s : {256, 512, 1024, 2048}) b->Args({s, s, s});
}

void targets(benchmark::internal::Benchmark* b) {
  square(b);
  for (auto s : std::vector<std::vector<int64_t>>{
           {64, 32768, 576}, {128, 8192, 576}, {6, 50176, 25}, {64, 1024, 384}, {32, 2048, 1024}})
    b->Args(s);
}

}  // namespace

BENCHMARK_CAPTURE(BM_gemm_f32, nn, false, false)->Apply(targets)->ArgNames({"M", "N", "K"})->UseRealTime();
BENCHMARK_CAPTURE(BM_gemm_f32, nt, false, true)->Apply(square)->Args({64, 1024, 1024})->Args({1, 4096, 1024})
    ->ArgNames({"M", "N", "K"})->UseRealTime();
BENCHMARK_CAPTURE(BM_gemm_f32, tn, true, false)->Apply(square)->ArgNames({"M", "N", "K"})->UseRealTime();
BENCHMARK_CAPTURE(BM_gemm_f64, nn, false, false)->Apply(square)->ArgNames({"M", "N", "K"})->UseRealTime();
BENCHMARK(BM_linear_prepacked)->Args({64, 1024, 1024})->Args({1, 4096, 1024})->ArgNames({"batch", "out", "in"})
    ->UseRealTime();
BENCHMARK(BM_sum_rows)->Args({4096, 1024})->Args({100000, 10})->ArgNames({"m", "n"})->UseRealTime();
